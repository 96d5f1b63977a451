"""VolumeDataset over real `ctexplore preprocess` outputs (and a real torch DataLoader when installed)."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

import ctexplore as ct
from ctexplore.phantom import write_series


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory):
    """Two patients preprocessed by the real CLI: windows as channels, uncompressed (memmap-able)."""
    source = tmp_path_factory.mktemp("source")
    for n, patient in enumerate(["P1", "P2"]):
        write_series(source / patient, n_slices=10, matrix=48, patient_id=patient, seed=n)
    out = tmp_path_factory.mktemp("out")
    args = [
        sys.executable,
        "-m",
        "ctexplore",
        "preprocess",
        str(source),
        str(out),
        "--spacing",
        "3",
        "--window",
        "brain",
        "subdural",
        "--no-compress",
        "--workers",
        "1",
    ]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.fail(f"preprocess failed: {result.stderr[-2000:]}")
    return out


def test_items_are_channels_first_float32_with_manifest_row_and_labels(preprocessed, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("patient_id,ich\nP1,1\nP2,0\n")
    ds = ct.VolumeDataset(preprocessed, labels=labels)
    assert len(ds) == 2
    for i in range(len(ds)):
        array, record = ds[i]
        volume, _ = ct.load_npz(record["path"])
        assert array.dtype == np.float32 and array.shape == (2,) + volume.shape
        assert record["labels"] == {"ich": "1" if record["patient_id"] == "P1" else "0"}
        assert record["status"] == "ok"
        with np.load(record["path"]) as data:
            np.testing.assert_array_equal(array, data["processed"].astype(np.float32))
    with pytest.raises(IndexError):
        ds[2]


def test_uncompressed_outputs_are_memory_mapped_and_the_dataset_pickles(preprocessed):
    from ctexplore.training import load_npz_array

    ds = ct.VolumeDataset(preprocessed, transform=lambda a: a[:1])
    assert isinstance(load_npz_array(ds[0][1]["path"], "processed"), np.memmap)
    assert ds[0][0].shape[0] == 1
    clone = pickle.loads(pickle.dumps(ct.VolumeDataset(preprocessed)))
    np.testing.assert_array_equal(clone[1][0], ct.VolumeDataset(preprocessed)[1][0])


def test_not_an_output_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        ct.VolumeDataset(tmp_path)


def test_torch_dataloader_with_workers(preprocessed):
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(
        ct.VolumeDataset(preprocessed), batch_size=2, num_workers=2, collate_fn=lambda batch: batch
    )
    batch = next(iter(loader))
    assert len(batch) == 2 and all(a.shape[0] == 2 for a, _ in batch)
    # same-shape items stack with the default collate
    tensors = torch.utils.data.DataLoader(
        ct.VolumeDataset(preprocessed, transform=lambda a: a[:, :2, :8, :8]), batch_size=2
    )
    images, records = next(iter(tensors))
    assert tuple(images.shape) == (2, 2, 2, 8, 8) and images.dtype == torch.float32


def test_the_core_does_not_import_torch(preprocessed):
    code = "import sys, ctexplore as ct; ds = ct.VolumeDataset(sys.argv[1]); ds[0]; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code, str(preprocessed)], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_per_slice_items_follow_the_processed_layout(preprocessed):
    series = ct.VolumeDataset(preprocessed)
    slices = ct.VolumeDataset(preprocessed, slices=True)
    assert len(slices) == sum(array.shape[1] for array, _ in (series[i] for i in range(len(series))))
    image, record = slices[3]
    volume_array, _ = series[0]
    assert record["slice_index"] == 3 and image.shape == (2,) + volume_array.shape[2:]
    np.testing.assert_array_equal(image, volume_array[:, 3])
    volume, _ = ct.load_npz(record["path"])
    assert record["sop_instance_uids"].split("\\") == volume.meta["slice_sources"][3]


def test_image_level_labels_need_slices_and_nifti_outputs_are_refused(preprocessed, tmp_path):
    labels = tmp_path / "images.csv"
    labels.write_text("sop_instance_uid,bleed\n1.2.3,1\n")
    with pytest.raises(ValueError, match="slices=True"):
        ct.VolumeDataset(preprocessed, labels=labels)
    out = tmp_path / "nifti"
    source = tmp_path / "source"
    write_series(source, n_slices=4, matrix=16)
    ct.preprocess(source, out, options=ct.PreprocessOptions(spacing=4.0, format="nifti"), workers=1, progress=False)
    with pytest.raises(ValueError, match="--format npz"):
        ct.VolumeDataset(out)
