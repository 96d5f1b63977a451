"""A realistic analytic head: tissue and lesion labels and Hounsfield units at any patient point.

The model follows the spirit of the FORBILD head phantom [1]_ (nested analytic
shapes, exact at every point) and adds what a CT reader must learn to see:
skin over subcutaneous fat, a skull of outer table, diploe and inner table of
varying thickness, paranasal sinuses and mastoid air cells, orbits with globes
and lenses, a nasal cavity, grey and white matter with a cortical ribbon cut by
sulci, deep grey nuclei, four ventricles, the falx, a calcified pineal gland and
choroid plexus, dural venous sinuses, and switchable lesions (intraparenchymal,
subdural, epidural, subarachnoid and intraventricular haemorrhage, a skull
fracture) whose label masks are the ground truth.

`head_labels` classifies points; `TISSUE_HU` maps labels to the noise-free
values; `form_image` turns a slice grid into CT-like pixels (supersampled
partial volume, slice-sensitivity averaging along the normal, correlated
noise). `phantom_hu` is the older, simpler head (nested ellipsoids of a few
exact values, optional marker beads) that exact-value tests sample at pixel
centres. `ImageFormation` and `EllipsoidHead` say which head a series images
and how; `ctexplore.phantom.write_series` writes either as DICOM.
Coordinates are patient LPS millimetres (x to the patient's left, y posterior,
z towards the head) with the head centred at the origin.

References
----------
.. [1] Z. Yu, F. Noo, F. Dennerlein, A. Wunderlich, G. Lauritsch, J. Hornegger,
   "Simulation tools for two-dimensional experiments in x-ray computed
   tomography using the FORBILD head phantom", Phys. Med. Biol. 57 (2012) N237.
.. [2] W. A. Kalender, *Computed Tomography*, 3rd ed., Publicis, 2011: tissue
   ranges (fat -100..-80, CSF 0..15, white matter 20..30, grey matter 35..45,
   blood 40..55, bone from several hundred to 2000 HU).
.. [3] P. M. Parizel et al., "Intracranial hemorrhage: principles of CT and MRI
   interpretation", Eur. Radiol. 11 (2001) 1770-1783: acute clot 50..80 HU,
   rising with clot retraction.
.. [4] E. M. Lillie et al., "Evaluation of skull cortical thickness changes with
   age and sex from computed tomography scans", J. Bone Miner. Res. 31 (2016)
   299-307; N. Lynnerup et al., "Thickness of the human cranial diploe in relation
   to age, sex and general body build", Head Face Med. 1 (2005) 13: the calvarium
   is mostly 5-8 mm thick, thickest at the occiput, and thinnest over the
   temporal squama, where the diploe vanishes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .volume import AIR_HU

__all__ = [
    "HEAD_SEMI_AXES_MM",
    "LABELS",
    "LESIONS",
    "TISSUE_HU",
    "EllipsoidHead",
    "ImageFormation",
    "correlated_noise",
    "form_image",
    "head_hu",
    "head_labels",
    "lesion_volumes_ml",
    "phantom_hu",
]

# label -> (name, noise-free HU). Sources: [2] for tissues, [3] for blood.
_TABLE: tuple[tuple[str, float], ...] = (
    ("air", AIR_HU),
    ("skin", 45.0),
    ("subcutaneous fat", -90.0),
    ("cortical bone", 1600.0),  # outer and inner tables
    ("diploe", 700.0),  # cancellous bone between the tables
    ("csf", 8.0),
    ("grey matter", 40.0),
    ("white matter", 28.0),
    ("deep grey nuclei", 36.0),
    ("falx", 60.0),  # dura: dense collagen, slightly brighter than blood
    ("venous sinus", 48.0),  # flowing blood, haematocrit about 0.45
    ("calcification", 250.0),  # pineal gland, choroid plexus
    ("orbital fat", -95.0),
    ("globe", 12.0),  # vitreous
    ("lens", 115.0),
    ("sinus air", AIR_HU),  # paranasal sinuses, nasal cavity, mastoid cells
    ("intraparenchymal haemorrhage", 65.0),
    ("subdural haemorrhage", 62.0),
    ("epidural haemorrhage", 70.0),
    ("subarachnoid haemorrhage", 55.0),  # blood diluted by CSF in the sulci
    ("intraventricular haemorrhage", 60.0),
    ("fracture", 30.0),  # the gap through the skull fills with soft tissue and blood
)
LABELS: dict[str, int] = {name: label for label, (name, _) in enumerate(_TABLE)}
TISSUE_HU = np.array([hu for _, hu in _TABLE], dtype=np.float32)
"""Noise-free HU of each label: ``TISSUE_HU[labels]`` is the exact image."""

LESIONS: tuple[str, ...] = (
    "intraparenchymal haemorrhage",
    "subdural haemorrhage",
    "epidural haemorrhage",
    "subarachnoid haemorrhage",
    "intraventricular haemorrhage",
    "fracture",
)

HEAD_SEMI_AXES_MM = (72.0, 92.0, 85.0)
"""Semi-axes (x, y, z mm) of the head's outline, an ellipsoid centred at the patient origin."""
_SKIN_MM = 2.0
_FAT_MM = 2.5
_TABLE_MM = 1.8
_SUBARACHNOID_MM = 1.2
_CORTEX_MM = 3.0

# (centre xyz mm, semi-axes xyz mm); right is -x, anterior is -y.
_LATERAL_VENTRICLES = (((-10.0, 2.0, 16.0), (5.5, 24.0, 10.0)), ((10.0, 2.0, 16.0), (5.5, 24.0, 10.0)))
_THIRD_VENTRICLE = ((0.0, 5.0, 2.0), (1.5, 10.0, 6.0))
_FOURTH_VENTRICLE = ((0.0, 32.0, -30.0), (5.0, 3.5, 6.0))
_DEEP_NUCLEI = (
    ((-20.0, -2.0, 4.0), (6.0, 12.0, 8.0)),  # right lentiform nucleus
    ((20.0, -2.0, 4.0), (6.0, 12.0, 8.0)),
    ((-7.0, 12.0, 4.0), (5.0, 8.0, 6.0)),  # right thalamus
    ((7.0, 12.0, 4.0), (5.0, 8.0, 6.0)),
)
_CALCIFICATIONS = (
    ((0.0, 22.0, 8.0), (2.5, 3.0, 2.5)),  # pineal gland
    ((-12.0, 20.0, 14.0), (2.0, 3.0, 2.0)),  # choroid plexus in the atria
    ((12.0, 20.0, 14.0), (2.0, 3.0, 2.0)),
)
_ORBITS = (((-32.0, -66.0, -34.0), (15.0, 17.0, 13.0)), ((32.0, -66.0, -34.0), (15.0, 17.0, 13.0)))
_GLOBES = (((-32.0, -70.0, -34.0), (11.0, 11.0, 11.0)), ((32.0, -70.0, -34.0), (11.0, 11.0, 11.0)))
_LENSES = (((-32.0, -80.3, -34.0), (4.5, 1.8, 4.5)), ((32.0, -80.3, -34.0), (4.5, 1.8, 4.5)))
_AIR_SPACES = (
    ((-24.0, -58.0, -60.0), (12.0, 14.0, 13.0)),  # right maxillary sinus
    ((24.0, -58.0, -60.0), (12.0, 14.0, 13.0)),
    ((0.0, -80.0, 8.0), (10.0, 4.0, 7.0)),  # frontal sinus
    ((0.0, -32.0, -42.0), (9.0, 8.0, 7.0)),  # sphenoid sinus
    ((0.0, -72.0, -55.0), (7.0, 20.0, 18.0)),  # nasal cavity
)
_MASTOIDS = (((-58.0, 28.0, -46.0), (12.0, 12.0, 12.0)), ((58.0, 28.0, -46.0), (12.0, 12.0, 12.0)))
_IPH = ((-30.0, -40.0, 30.0), (10.0, 13.0, 9.0))  # right frontal lobe


@dataclass(frozen=True)
class ImageFormation:
    """How the scanner turns the model into pixels.

    Attributes
    ----------
    supersample : int, default 3
        Sub-samples per pixel side; their mean gives the partial-volume value at
        every edge. 1 samples the pixel centre only (exact labels, no blur).
    slice_samples : int, default 5
        Sub-samples across the slice thickness along the normal, weighted by a
        triangular slice-sensitivity profile whose full width at half maximum
        is the slice thickness. 1: an ideal thin slice.
    noise_sd : float, default 6.0
        Standard deviation of the noise in HU (4-8 HU in brain at a routine head
        dose); 0 gives the exact noise-free image.
    noise_correlation_mm : float, default 0.7
        Gaussian width of the in-plane noise correlation, as the reconstruction
        kernel imposes on real CT noise (grain rather than salt and pepper).
    resolution_mm : float, default 1.0
        Full width at half maximum of the in-plane point spread (a Gaussian), as
        the reconstruction kernel blurs every edge; never less than
        `min_resolution_px` pixels. 0: no blur.
    min_resolution_px : float, default 1.0
        The finest point spread the reconstruction matrix allows, in pixels: a
        soft kernel on a coarse matrix is never sharper than about one pixel,
        while a sharp (bone) kernel keeps edges down to about half a pixel.
    lesions : tuple of str
        Which of `LESIONS` are present.

    Examples
    --------
    >>> ImageFormation(noise_sd=0).noise_sd
    0
    """

    supersample: int = 3
    slice_samples: int = 5
    noise_sd: float = 6.0
    noise_correlation_mm: float = 0.7
    resolution_mm: float = 1.0
    min_resolution_px: float = 1.0
    lesions: tuple[str, ...] = LESIONS

    def __post_init__(self) -> None:
        unknown = set(self.lesions) - set(LESIONS)
        if unknown:
            raise ValueError(f"unknown lesions {sorted(unknown)}; choose from {LESIONS}")
        if self.supersample < 1 or self.slice_samples < 1 or self.noise_sd < 0 or self.min_resolution_px < 0:
            raise ValueError("supersample and slice_samples must be >= 1, noise_sd and min_resolution_px >= 0")

    def image(
        self,
        centres: np.ndarray,
        row_step: np.ndarray,
        col_step: np.ndarray,
        normal_step: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """HU of one slice: `form_image`, plus correlated noise of `noise_sd` drawn from `rng` (None: noise-free).

        Parameters are those of `form_image`; the noise correlation is converted
        from mm to pixels of the smaller in-plane step.
        """
        hu = form_image(centres, row_step, col_step, normal_step, self)
        if rng is not None and self.noise_sd > 0:
            pixel_mm = float(min(np.linalg.norm(row_step), np.linalg.norm(col_step)))
            hu += correlated_noise(hu.shape, self.noise_sd, self.noise_correlation_mm / pixel_mm, rng)
        return hu


def _ellipsoid(x, y, z, centre, semi_axes) -> np.ndarray:
    (cx, cy, cz), (a, b, c) = centre, semi_axes
    return ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 + ((z - cz) / c) ** 2 <= 1.0


def _skull_thickness_mm(ux: np.ndarray, uy: np.ndarray, uz: np.ndarray) -> np.ndarray:
    """Skull thickness (mm, outer to inner table) in the direction of the unit vector (ux, uy, uz) from the centre.

    Adult calvarium (see [4] in the module notes): about 5.5 mm at the vertex and
    parietal bones, 7 mm at the frontal bone, 8 mm at the occiput, down to 2.5-3 mm
    over the temporal squama.
    """
    frontal = np.clip(-uy, 0.0, None) ** 2
    occipital = np.clip(uy, 0.0, None) ** 2
    temporal = np.abs(ux) ** 4 * np.exp(-(((uz - 0.05) / 0.3) ** 2))  # the temples, just above the ear
    return 5.5 + 1.5 * frontal + 2.5 * occipital - 3.0 * temporal


def head_labels(points: np.ndarray, lesions: Iterable[str] = LESIONS) -> np.ndarray:
    """Label (an index into `TISSUE_HU`, names in `LABELS`) of every patient point.

    Parameters
    ----------
    points : (..., 3) array-like
        Patient LPS coordinates, mm.
    lesions : iterable of str, default all of `LESIONS`

    Returns
    -------
    labels : (...) uint8 ndarray

    See Also
    --------
    head_hu : the noise-free HU of these labels.
    form_image : the labels imaged with partial volume and noise.

    Examples
    --------
    >>> import numpy as np
    >>> names = {v: k for k, v in LABELS.items()}
    >>> labels = head_labels(np.array([[0.0, 0.0, 200.0], [0.0, 0.0, 84.0],
    ...                                [-30.0, -40.0, 30.0], [-25.0, 0.0, 30.0]]))
    >>> [names[int(v)] for v in labels]
    ['air', 'skin', 'intraparenchymal haemorrhage', 'white matter']

    Switch a lesion off and the brain behind it returns:

    >>> names[int(head_labels(np.array([-30.0, -40.0, 30.0]), lesions=()))]
    'white matter'
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    lesions = set(lesions)
    unknown = lesions - set(LESIONS)
    if unknown:
        raise ValueError(f"unknown lesions {sorted(unknown)}; choose from {LESIONS}")
    shape = points.shape[:-1]
    x, y, z = (np.ascontiguousarray(points[..., i]).ravel() for i in range(3))
    a, b, c = HEAD_SEMI_AXES_MM
    r = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    labels = np.full(x.shape, LABELS["air"], dtype=np.uint8)
    inside = r <= 1.0  # only points inside the head's outline are classified further
    if inside.any():
        labels[inside] = _tissue_labels(x[inside], y[inside], z[inside], r[inside], lesions)
    return labels.reshape(shape)


def _tissue_labels(x: np.ndarray, y: np.ndarray, z: np.ndarray, r: np.ndarray, lesions: set[str]) -> np.ndarray:
    """`head_labels` of points inside the head's outline (``r <= 1``), given flat coordinates."""
    distance = np.sqrt(x * x + y * y + z * z)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = distance * (1.0 / r - 1.0)  # below the skin along the ray from the centre
        ux, uy, uz = x / distance, y / distance, z / distance
    depth[r == 0] = np.inf
    ux, uy, uz = (np.nan_to_num(u) for u in (ux, uy, uz))

    skull_mm = _skull_thickness_mm(ux, uy, uz)
    fat_end = _SKIN_MM + _FAT_MM
    table_mm = np.minimum(_TABLE_MM, 0.5 * skull_mm)  # thin temporal squama: compact bone, no diploe
    outer_end = fat_end + table_mm
    inner_start = fat_end + skull_mm - table_mm
    skull_end = fat_end + skull_mm
    cortex_start = skull_end + _SUBARACHNOID_MM
    cortex_end = cortex_start + _CORTEX_MM

    L = LABELS
    low, high = np.array([x.min(), y.min(), z.min()]), np.array([x.max(), y.max(), z.max()])

    def within(centre: tuple[float, ...], axes: tuple[float, ...]) -> np.ndarray | None:
        """Points inside the ellipsoid; None when their bounding box misses it (most shapes, most slices)."""
        return _ellipsoid(x, y, z, centre, axes) if _box_overlaps(low, high, centre, axes) else None

    def paint(where: np.ndarray | None, name: str) -> None:
        if where is not None:
            labels[where] = L[name]

    labels = np.full(x.shape, L["white matter"], dtype=np.uint8)
    # Sulci: CSF clefts that cut the cortical ribbon in a folded pattern.
    folds = np.sin(9.0 * np.arctan2(uy, ux)) * np.sin(11.0 * np.arccos(np.clip(uz, -1, 1)))
    sulcus = folds > 0.55
    ribbon = depth < cortex_end
    labels[ribbon] = L["grey matter"]
    labels[ribbon & sulcus & (depth < cortex_end - 0.8)] = L["csf"]
    labels[depth < cortex_start] = L["csf"]  # subarachnoid space
    labels[depth < skull_end] = L["cortical bone"]
    labels[(depth >= outer_end) & (depth < inner_start)] = L["diploe"]
    labels[depth < fat_end] = L["subcutaneous fat"]
    labels[depth < _SKIN_MM] = L["skin"]

    brain = depth >= cortex_start
    falx = (np.abs(x) < 1.0) & brain & (z > 8.0) & (depth < 45.0)
    labels[falx] = L["falx"]
    # Superior sagittal sinus at the vertex and the transverse sinuses at the occiput.
    sss = (np.abs(x) < 3.5) & (depth >= skull_end) & (depth < skull_end + 4.0) & (uz > 0.3)
    transverse = (depth >= skull_end) & (depth < skull_end + 3.5) & (np.abs(uz + 0.1) < 0.07) & (uy > 0.6)
    labels[sss | transverse] = L["venous sinus"]

    for centre, axes in _DEEP_NUCLEI:
        paint(within(centre, axes), "deep grey nuclei")
    for centre, axes in (*_LATERAL_VENTRICLES, _THIRD_VENTRICLE, _FOURTH_VENTRICLE):
        paint(within(centre, axes), "csf")
    for centre, axes in _CALCIFICATIONS:
        paint(within(centre, axes), "calcification")

    for centre, axes in _ORBITS:
        orbit = within(centre, axes)
        paint(None if orbit is None else orbit & (depth > 0), "orbital fat")
    for centre, axes in _GLOBES:
        paint(within(centre, axes), "globe")
    for centre, axes in _LENSES:
        paint(within(centre, axes), "lens")
    for centre, axes in _AIR_SPACES:
        paint(within(centre, axes), "sinus air")
    for centre, axes in _MASTOIDS:
        inside = within(centre, axes)
        if inside is None:
            continue
        # honeycomb of air cells separated by thin bony septa
        cells = np.cos(x[inside] * 1.1) * np.cos(y[inside] * 1.1) * np.cos(z[inside] * 1.1) > -0.2
        labels[inside] = np.where(cells, L["sinus air"], L["cortical bone"]).astype(np.uint8)

    if "subarachnoid haemorrhage" in lesions:  # blood in the left parietal sulci
        region = (ux > 0.35) & (uz > 0.2) & (uy > -0.2) & (uy < 0.6)
        labels[region & (labels == L["csf"]) & (depth < cortex_end)] = L["subarachnoid haemorrhage"]
    if "intraventricular haemorrhage" in lesions:  # layering in the left occipital horn
        ventricle = within(*_LATERAL_VENTRICLES[1])
        paint(None if ventricle is None else ventricle & (y > 14.0) & (z < 14.0), "intraventricular haemorrhage")
    if "intraparenchymal haemorrhage" in lesions:
        paint(within(*_IPH), "intraparenchymal haemorrhage")
    if "subdural haemorrhage" in lesions:  # a thin crescent over the right convexity
        angle = np.arccos(np.clip(-ux * 0.80 + uy * 0.20 + uz * 0.56, -1, 1))
        thickness = 6.0 * np.sqrt(np.clip(1 - (angle / 0.75) ** 2, 0, None))
        labels[(depth >= skull_end) & (depth < skull_end + thickness)] = L["subdural haemorrhage"]
    if "epidural haemorrhage" in lesions:  # a short biconvex lens, left temporal
        angle = np.arccos(np.clip(ux * 0.94 - uy * 0.17 + uz * 0.30, -1, 1))
        thickness = 11.0 * np.clip(1 - (angle / 0.32) ** 2, 0, None)
        labels[(depth >= skull_end) & (depth < skull_end + thickness)] = L["epidural haemorrhage"]
    if "fracture" in lesions:  # a 1.2 mm line through the left parietal skull
        plane = np.abs(0.2 * ux - 0.98 * uy)  # near the coronal plane through the centre
        in_patch = (ux > 0.45) & (uz > 0.35) & (plane < 0.6 / np.maximum(distance, 1.0))
        labels[in_patch & (depth >= _SKIN_MM + _FAT_MM) & (depth < skull_end)] = L["fracture"]

    return labels


def head_hu(points: np.ndarray, lesions: Iterable[str] = LESIONS) -> np.ndarray:
    """Noise-free HU of the model at patient points: ``TISSUE_HU[head_labels(points)]``.

    See Also
    --------
    head_labels : the labels behind the values.

    Examples
    --------
    >>> import numpy as np
    >>> head_hu(np.array([[-25.0, 0.0, 30.0], [0.0, 0.0, 200.0]]))
    array([   28., -1000.], dtype=float32)
    """
    return TISSUE_HU[head_labels(points, lesions)]


def correlated_noise(shape: tuple[int, ...], sd: float, correlation_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with standard deviation `sd`, correlated in-plane over `correlation_px` pixels.

    White noise is blurred over the last two axes and rescaled by the kernel's
    root sum of squares, so the expected SD stays `sd` whatever the correlation.

    See Also
    --------
    ImageFormation : where the noise SD and correlation are set.

    Examples
    --------
    >>> import numpy as np
    >>> noise = correlated_noise((256, 256), 6.0, 1.5, np.random.default_rng(0))
    >>> noise.dtype, round(float(noise.std()), 0)
    (dtype('float32'), 6.0)
    """
    from scipy.ndimage import gaussian_filter

    white = rng.standard_normal(shape, dtype=np.float32)
    if correlation_px <= 0:
        return white * np.float32(sd)
    sigma = (0,) * (len(shape) - 2) + (correlation_px, correlation_px)
    impulse = np.zeros((int(8 * correlation_px) * 2 + 1,) * 2)
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1.0
    gain = np.sqrt((gaussian_filter(impulse, correlation_px, mode="constant") ** 2).sum())
    return gaussian_filter(white, sigma, mode="wrap") * np.float32(sd / gain)


def form_image(
    centres: np.ndarray,
    row_step: np.ndarray,
    col_step: np.ndarray,
    normal_step: np.ndarray,
    formation: ImageFormation,
) -> np.ndarray:
    """Noise-free partial-volume HU of one slice: the mean of the model over each voxel's footprint.

    Parameters
    ----------
    centres : (rows, cols, 3) ndarray
        Pixel centres, patient mm.
    row_step, col_step : (3,) ndarray
        Vectors from one pixel to the next down a column and along a row, mm.
    normal_step : (3,) ndarray
        The slice normal scaled to the slice thickness (full width at half maximum), mm.
    formation : ImageFormation

    Returns
    -------
    (rows, cols) float32 ndarray

    See Also
    --------
    ImageFormation.image : this plus noise, as the writer calls it.

    Examples
    --------
    >>> import numpy as np
    >>> centre = np.array([[[-25.0, 0.0, 30.0]]])
    >>> exact = ImageFormation(supersample=1, slice_samples=1, noise_sd=0, resolution_mm=0)
    >>> form_image(centre, np.eye(3)[1], np.eye(3)[0], np.eye(3)[2] * 5, exact)
    array([[28.]], dtype=float32)
    """
    s, n = formation.supersample, formation.slice_samples
    offsets = (np.arange(s) + 0.5) / s - 0.5
    # triangular profile of FWHM 1 spans [-1, 1]: samples at its quantile midpoints weigh equally
    quantiles = (np.arange(n) + 0.5) / n
    along = (
        np.where(quantiles < 0.5, np.sqrt(2 * quantiles) - 1, 1 - np.sqrt(2 * (1 - quantiles)))
        if n > 1
        else np.zeros(1)
    )
    subs = (
        offsets[:, None, None, None] * row_step
        + offsets[None, :, None, None] * col_step
        + along[None, None, :, None] * normal_step
    ).reshape(-1, 3)
    rows, cols = centres.shape[:2]
    total = np.zeros((rows, cols), dtype=np.float64)
    chunk = max(1, 2_000_000 // max(1, cols * len(subs)))
    for start in range(0, rows, chunk):  # bounded memory for 512 x 512 slices
        block = centres[start : start + chunk]
        points = block[:, :, None, :] + subs
        total[start : start + chunk] = head_hu(points, formation.lesions).mean(axis=-1, dtype=np.float64)
    if formation.resolution_mm > 0:
        from scipy.ndimage import gaussian_filter

        pixel_mm = np.array([np.linalg.norm(row_step), np.linalg.norm(col_step)])
        # a reconstruction on a coarse matrix is never sharper than about one pixel (half of one, sharp kernel)
        sigma_px = np.maximum(formation.resolution_mm, formation.min_resolution_px * pixel_mm) / 2.3548 / pixel_mm
        total = gaussian_filter(total, sigma_px, mode="nearest")
    return total.astype(np.float32)


def lesion_volumes_ml(labels: np.ndarray, voxel_volume_mm3: float) -> dict[str, float]:
    """Volume in mL of each lesion label: voxel count x voxel volume / 1000.

    See Also
    --------
    ctexplore.phantom.WrittenSeries.lesion_volumes_ml : the same for a written series.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.full((2, 10, 10), LABELS["intraparenchymal haemorrhage"], np.uint8)
    >>> lesion_volumes_ml(labels, 5.0)["intraparenchymal haemorrhage"]
    1.0
    """
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(_TABLE))
    return {name: float(counts[LABELS[name]] * voxel_volume_mm3 / 1000.0) for name in LESIONS}


# --- the simple head: a few exact values, for tests that compare voxel by voxel ------------

MARKER_PEAK_HU = 3000.0
MARKER_EDGE_HU = 2000.0
_SIMPLE_SCALP_MM = 4.0
_SIMPLE_SKULL_MM = 7.0
_SIMPLE_CORTEX_MM = 3.0
_SIMPLE_SCALP_HU = 40.0
_SIMPLE_GREY_HU = 38.0
_SIMPLE_WHITE_HU = 26.0
_SIMPLE_CSF_HU = 5.0
_SIMPLE_TABLE_HU = 1500.0  # dense outer and inner tables
_SIMPLE_DIPLOE_HU = 1000.0  # spongy middle layer

# (centre xyz mm, semi-axes xyz mm, HU), painted in this order over the layered head.
# Right is -x in LPS, anterior is -y: the bleed is right frontal.
_SIMPLE_INCLUSIONS: tuple[tuple[tuple[float, float, float], tuple[float, float, float], float], ...] = (
    ((-11.0, 2.0, 18.0), (6.0, 26.0, 11.0), _SIMPLE_CSF_HU),  # right lateral ventricle
    ((11.0, 2.0, 18.0), (6.0, 26.0, 11.0), _SIMPLE_CSF_HU),  # left lateral ventricle
    ((-33.0, -66.0, -34.0), (11.0, 11.0, 11.0), 12.0),  # right eye
    ((33.0, -66.0, -34.0), (11.0, 11.0, 11.0), 12.0),  # left eye
    ((-30.0, -42.0, 32.0), (10.0, 13.0, 9.0), 70.0),  # right frontal haemorrhage
    ((0.0, 22.0, 10.0), (2.5, 2.5, 2.5), 150.0),  # calcified pineal gland
)


def phantom_hu(
    points: np.ndarray,
    *,
    markers: Iterable[Sequence[float]] = (),
    marker_radius: float = 3.0,
) -> np.ndarray:
    """Hounsfield units of the simple analytic head phantom at patient points.

    The head is an ellipsoid (`HEAD_SEMI_AXES_MM`: 72, 92, 85 mm along x, y, z)
    centred at the origin of patient LPS coordinates, made of shells of constant
    thickness measured along rays from the centre: scalp 40 HU (4 mm), skull
    1000-1500 HU (7 mm: dense tables, lighter diploe), cortical grey matter 38 HU
    (3 mm), and white matter 26 HU inside. Two CSF ventricles (5 HU), two eyes, a
    calcified pineal gland (150 HU) and a right frontal haemorrhage (70 HU) sit
    inside. Outside the head is air, -1000 HU. This is the noise-free truth.

    Parameters
    ----------
    points : (..., 3) array-like
        Patient LPS coordinates in millimetres.
    markers : iterable of (x, y, z), optional
        Centres of very dense beads (2000 HU at the rim rising to 3000 HU at the
        centre), so that the brightest voxel of a sampled volume is the one
        closest to the marker.
    marker_radius : float, default 3.0
        Radius of each bead in millimetres.

    Returns
    -------
    hu : (...) float32 ndarray

    See Also
    --------
    head_hu : the realistic head, with labels and lesions.
    EllipsoidHead : how `ctexplore.phantom.write_series` images this head.

    Examples
    --------
    >>> import numpy as np
    >>> phantom_hu(np.array([[0.0, 0.0, 200.0],  # above the head: air
    ...                      [0.0, 0.0, 84.0],   # scalp at the vertex
    ...                      [0.0, 0.0, 0.0],    # deep white matter
    ...                      [-30.0, -42.0, 32.0]]))  # inside the bleed
    array([-1000.,    40.,    26.,    70.], dtype=float32)

    A marker bead is brightest at its centre:

    >>> phantom_hu(np.array([[10.0, 0.0, 0.0], [11.5, 0.0, 0.0]]), markers=[(10, 0, 0)])
    array([3000., 2750.], dtype=float32)
    """
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,):
        raise ValueError(f"points must have shape (..., 3), got {points.shape}")
    shape = points.shape[:-1]
    x, y, z = (np.ascontiguousarray(points[..., axis]).ravel() for axis in range(3))
    a, b, c = HEAD_SEMI_AXES_MM
    normalised_radius = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
    distance = np.sqrt(x * x + y * y + z * z)
    # Depth below the skin along the ray from the head centre: the surface point on that
    # ray is p / normalised_radius, so depth = |p| (1 / r - 1); infinite at the centre.
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = distance * (1.0 / normalised_radius - 1.0)
    depth[normalised_radius == 0] = np.inf

    scalp_end = _SIMPLE_SCALP_MM
    skull_end = scalp_end + _SIMPLE_SKULL_MM
    cortex_end = skull_end + _SIMPLE_CORTEX_MM
    hu = np.full(x.shape, _SIMPLE_WHITE_HU)
    hu[depth < cortex_end] = _SIMPLE_GREY_HU
    skull = (depth >= scalp_end) & (depth < skull_end)
    skull_fraction = (depth[skull] - scalp_end) / _SIMPLE_SKULL_MM
    hu[skull] = _SIMPLE_TABLE_HU - (_SIMPLE_TABLE_HU - _SIMPLE_DIPLOE_HU) * np.sin(np.pi * skull_fraction)
    hu[depth < scalp_end] = _SIMPLE_SCALP_HU
    hu[normalised_radius > 1.0] = AIR_HU

    if x.size:
        low = np.array([x.min(), y.min(), z.min()])
        high = np.array([x.max(), y.max(), z.max()])
        for centre, semi_axes, value in _SIMPLE_INCLUSIONS:
            if _box_overlaps(low, high, centre, semi_axes):
                hu[_ellipsoid(x, y, z, centre, semi_axes)] = value
        radius = float(marker_radius)
        for marker in markers:
            if not _box_overlaps(low, high, marker, (radius, radius, radius)):
                continue
            squared = (x - marker[0]) ** 2 + (y - marker[1]) ** 2 + (z - marker[2]) ** 2
            bead = squared <= radius * radius
            hu[bead] = MARKER_PEAK_HU - (MARKER_PEAK_HU - MARKER_EDGE_HU) * squared[bead] / (radius * radius)
    return hu.astype(np.float32).reshape(shape)


def _box_overlaps(low: np.ndarray, high: np.ndarray, centre: Sequence[float], semi_axes: Sequence[float]) -> bool:
    """Whether the bounding box of the points can meet the ellipsoid's bounding box."""
    middle, half = np.asarray(centre, dtype=np.float64), np.asarray(semi_axes, dtype=np.float64)
    return bool(np.all(low <= middle + half) and np.all(high >= middle - half))


@dataclass(frozen=True)
class EllipsoidHead:
    """Image the simple head of `phantom_hu` at pixel centres: exact values, optional white noise and beads.

    Attributes
    ----------
    noise_sd : float, default 0.0
        Standard deviation (HU) of uncorrelated Gaussian noise; 0: exact values.
    markers : tuple of (x, y, z)
        Dense beads placed at these LPS points (see `phantom_hu`).
    marker_radius : float, optional
        Bead radius in mm; `ctexplore.phantom.write_series` picks one large
        enough that a slice and a few pixels always hit the bead.

    See Also
    --------
    ImageFormation : the realistic head instead.

    Examples
    --------
    >>> EllipsoidHead(markers=[[1, 2, 3]]).markers
    ((1.0, 2.0, 3.0),)
    """

    noise_sd: float = 0.0
    markers: tuple[tuple[float, float, float], ...] = ()
    marker_radius: float | None = None

    def __post_init__(self) -> None:
        points = tuple((float(m[0]), float(m[1]), float(m[2])) for m in self.markers)
        object.__setattr__(self, "markers", points)  # frozen: normalise lists to hashable tuples once
        if self.noise_sd < 0:
            raise ValueError(f"noise_sd must be >= 0, got {self.noise_sd}")

    def image(
        self,
        centres: np.ndarray,
        row_step: np.ndarray,
        col_step: np.ndarray,
        normal_step: np.ndarray,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """HU at the pixel `centres` (the steps are unused: no partial volume), plus noise from `rng` (None: none)."""
        radius = 3.0 if self.marker_radius is None else self.marker_radius
        hu = phantom_hu(centres, markers=self.markers, marker_radius=radius)
        if rng is not None and self.noise_sd > 0:
            hu = hu + rng.normal(0.0, self.noise_sd, hu.shape).astype(np.float32)
        return hu
