"""Tests for ctexplore.headmodel and the realistic series the writer makes from it, read back as DICOM."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

import ctexplore as ct
from ctexplore.headmodel import (
    HEAD_SEMI_AXES_MM,
    LABELS,
    LESIONS,
    TISSUE_HU,
    ImageFormation,
    correlated_noise,
    head_labels,
)
from ctexplore.phantom import SliceGeometry, write_series, write_study

# 2 mm slices over the brain at 1.8 mm pixels: every lesion is hit by several voxels.
GRID = SliceGeometry(n_slices=48, matrix=128, slice_spacing=2.0)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("noisy")
    written = write_series(folder, geometry=GRID, head=ImageFormation(noise_sd=6.0))
    return written, ct.load_series(folder)


@pytest.fixture(scope="module")
def exact(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exact")
    written = write_series(folder, geometry=GRID, head=ImageFormation(noise_sd=0.0))
    return written, ct.load_series(folder)


class TestHeadLabels:
    def test_every_lesion_can_be_switched_off(self):
        grid = np.stack(np.meshgrid(*(np.arange(-90.0, 90.0, 3.0),) * 3, indexing="ij"), axis=-1)
        everything = head_labels(grid)
        for lesion in LESIONS:
            assert (everything == LABELS[lesion]).any(), lesion
            without = head_labels(grid, lesions=[name for name in LESIONS if name != lesion])
            assert not (without == LABELS[lesion]).any(), lesion

    @pytest.mark.parametrize(
        ("place", "direction", "low_mm", "high_mm"),
        [
            ("vertex", (0.0, 0.0, 1.0), 5.0, 7.0),
            ("parietal", (0.7, 0.0, 0.7), 5.0, 7.0),
            ("frontal", (0.0, -1.0, 0.2), 6.0, 8.0),
            ("occipital", (0.0, 1.0, 0.1), 7.0, 9.0),
            ("temporal squama", (1.0, 0.0, 0.1), 2.0, 3.5),
        ],
    )
    def test_skull_thickness_along_the_surface_normal_is_anatomical(self, place, direction, low_mm, high_mm):
        semi_axes = np.array(HEAD_SEMI_AXES_MM)
        ray = np.array(direction) / np.linalg.norm(direction)
        surface = ray / np.sqrt(((ray / semi_axes) ** 2).sum())
        inward = -(surface / semi_axes**2) / np.linalg.norm(surface / semi_axes**2)
        step_mm = 0.01
        labels = head_labels(surface + np.arange(0.0, 25.0, step_mm)[:, None] * inward, lesions=())
        bone = np.isin(labels, [LABELS["cortical bone"], LABELS["diploe"]])
        assert low_mm <= bone.sum() * step_mm <= high_mm, place

    def test_a_block_of_points_gets_the_labels_each_point_gets_alone(self):
        # head_labels skips the shapes a block's bounding box misses: alone, a point's box is the point
        rng = np.random.default_rng(3)
        points = np.concatenate([rng.uniform(-80, 80, (1500, 3)), rng.normal(0, 25, (1500, 3))])
        one_by_one = np.array([head_labels(point[None])[0] for point in points])
        assert np.array_equal(head_labels(points), one_by_one)
        assert len(np.unique(one_by_one)) > 10  # the points meet many tissues, not just air and brain

    def test_rejects_unknown_lesion_names(self):
        with pytest.raises(ValueError, match="unknown lesions"):
            head_labels(np.zeros(3), lesions=["stroke"])

    def test_brain_range_holds_many_distinct_values_when_imaged(self, noisy):
        _, volume = noisy
        brain = (volume.hu > 0) & (volume.hu < 80)
        assert len(np.unique(volume.hu[brain])) > 50


class TestImageFormation:
    def test_noise_free_mode_is_exact(self, exact):
        written, volume = exact
        inside = ~written.expected_padding()
        np.testing.assert_array_equal(volume.hu[inside], written.expected_hu(quantized=True)[inside])

    def test_partial_volume_gives_values_between_tissues_at_edges(self, exact):
        _, volume = exact
        values = set(np.unique(np.rint(volume.hu)).tolist())
        pure = set(TISSUE_HU.tolist())
        assert len(values - pure) > 100  # mixtures at every edge, not only the tissue table

    def test_noise_sd_is_what_was_asked(self, noisy):
        written, volume = noisy
        white = ndimage.binary_erosion(written.labels() == LABELS["white matter"], iterations=2)
        residual = volume.hu[white] - written.expected_hu()[white]
        # rounding to stored integers adds a uniform error of variance 1/12
        assert np.sqrt(residual.var() - 1 / 12) == pytest.approx(6.0, rel=0.05)

    def test_a_sharp_kernel_keeps_edges_below_one_pixel(self, tmp_path):
        # 2.4 mm pixels: a soft reconstruction is held to one pixel, a sharp one to half a pixel
        geometry = SliceGeometry(n_slices=1, matrix=96, slice_spacing=2.5, first_position_z=30.0)
        steepest = {}
        for name, floor_px in (("soft", 1.0), ("sharp", 0.5)):
            formation = ImageFormation(noise_sd=0, resolution_mm=0.5, min_resolution_px=floor_px)
            hu = write_series(tmp_path / name, geometry=geometry, head=formation).expected_hu()[0]
            steepest[name] = float(np.abs(np.diff(hu, axis=1)).max())  # the skull's edges, HU per pixel
        assert steepest["sharp"] > 1.1 * steepest["soft"]  # 1.17 measured; 1.0 if the floor were ignored

    @pytest.mark.parametrize("width_px", [1.0, 2.0])  # sampled finely enough for the continuous law
    def test_noise_correlation_follows_the_kernel_width(self, width_px):
        noise = correlated_noise((4, 256, 256), 6.0, width_px, np.random.default_rng(3))
        neighbour = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
        # white noise blurred by a Gaussian of width s: correlation exp(-d^2 / (4 s^2)) at distance d
        assert neighbour == pytest.approx(np.exp(-1 / (4 * width_px**2)), abs=0.03)
        assert noise.std() == pytest.approx(6.0, rel=0.03)


class TestLesionTruth:
    def test_volumes_are_voxel_counts_times_voxel_volume(self, exact):
        written, _ = exact
        labels = written.labels()
        voxel_mm3 = written.pixel_spacing.prod() * GRID.slice_spacing
        volumes = written.lesion_volumes_ml()
        for lesion in LESIONS:
            count = int((labels == LABELS[lesion]).sum())
            assert count > 0, lesion
            assert volumes[lesion] == pytest.approx(count * voxel_mm3 / 1000.0)

    @pytest.mark.parametrize("lesion", [name for name in LESIONS if name != "fracture"])
    def test_each_bleed_is_brighter_than_the_brain_around_it(self, noisy, lesion):
        written, volume = noisy
        mask = written.labels() == LABELS[lesion]
        around = ndimage.binary_dilation(mask, iterations=2) & ~mask
        # brain window (40/80): compare with the soft tissue around, not the skull or CSF
        around &= (volume.hu > 15) & (volume.hu < 50)
        assert volume.hu[mask].mean() - volume.hu[around].mean() > 8.0, lesion
        for preset, least in (("brain", 0.1), ("subdural", 0.04)):  # brighter on screen, in both windows
            shown = ct.window(volume.hu, preset=preset)
            assert shown[mask].mean() - shown[around].mean() > least, (lesion, preset)

    def test_fracture_is_a_gap_in_the_bone_window(self, noisy):
        written, volume = noisy
        mask = written.labels() == LABELS["fracture"]
        bone = np.isin(written.labels(), [LABELS["cortical bone"], LABELS["diploe"]])
        around = ndimage.binary_dilation(mask, iterations=2) & bone
        assert volume.hu[around].mean() - volume.hu[mask].mean() > 300

    def test_lesions_sit_on_their_side(self, exact):
        written, _ = exact
        labels = written.labels()
        x = written.pixel_centres()[..., 0]
        side = {name: np.sign(x[labels == LABELS[name]].mean()) for name in LESIONS}
        # right is -x in patient LPS
        assert side["intraparenchymal haemorrhage"] < 0 and side["subdural haemorrhage"] < 0
        assert side["epidural haemorrhage"] > 0 and side["subarachnoid haemorrhage"] > 0


def test_study_truth_is_saved_beside_the_dicom(tmp_path):
    series = [dict(geometry=SliceGeometry(n_slices=12, matrix=48, slice_spacing=5.0), head=ImageFormation(noise_sd=0))]
    written = write_study(tmp_path / "study", series=series, truth_folder=tmp_path / "truth")
    npz = next((tmp_path / "truth").glob("*_labels.npz"))
    report = json.loads(next((tmp_path / "truth").glob("*_lesions.json")).read_text())
    saved = np.load(npz)
    np.testing.assert_array_equal(saved["labels"], written[0].labels())
    np.testing.assert_allclose(saved["affine"], written[0].affine)
    assert report["volumes_ml"] == pytest.approx(written[0].lesion_volumes_ml())
    assert not any(p.name.startswith(".") for p in (tmp_path / "truth").iterdir())
