"""The imagecodecs plugin on the real 12-bit JPEG Extended files: pylibjpeg-libjpeg's pixels, up to IDCT rounding."""

from __future__ import annotations

import threading

import numpy as np
import pydicom
import pytest
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGExtended12Bit

from ctexplore._imagecodecs_plugin import PLUGIN_LABEL, register


def _twelve_bit_files(ct_data):
    files = sorted((ct_data / "single-files" / "transfer-syntaxes").glob("*.51.dcm"))
    assert len(files) == 2  # the CTImage slice and CT0012's two fragmented frames
    return files


def _decode(path, plugin: str) -> np.ndarray:
    register()
    dataset = pydicom.dcmread(path)
    array, _ = get_decoder(JPEGExtended12Bit).as_array(dataset, decoding_plugin=plugin)
    return array.astype(np.int32)


def test_frames_match_the_gpl_decoder_up_to_one_stored_value(ct_data):
    pytest.importorskip("libjpeg", reason="pylibjpeg-libjpeg (extra 'libjpeg') is the reference here")
    for path in _twelve_bit_files(ct_data):
        ours, reference = _decode(path, PLUGIN_LABEL), _decode(path, "pylibjpeg")
        assert ours.shape == reference.shape, path.name
        difference = np.abs(ours - reference)
        # ISO/IEC 10918-2 allows conforming inverse DCTs to differ by one; more would be a decoding error
        assert difference.max() <= 1, path.name
        assert np.mean(difference == 0) > 0.9, path.name


def test_hounsfield_error_against_the_uncompressed_slice_is_no_worse_than_the_gpl_decoders(ct_data):
    pytest.importorskip("libjpeg", reason="pylibjpeg-libjpeg (extra 'libjpeg') is the reference here")
    folder = ct_data / "single-files" / "transfer-syntaxes"
    original = pydicom.dcmread(folder / "CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm")
    truth = original.pixel_array * float(original.RescaleSlope) + float(original.RescaleIntercept)
    path = next(folder.glob("CTImage.dcm_*1.2.840.10008.1.2.4.51.dcm"))
    header = pydicom.dcmread(path, stop_before_pixels=True)
    slope, intercept = float(header.RescaleSlope), float(header.RescaleIntercept)
    ours = np.abs(_decode(path, PLUGIN_LABEL) * slope + intercept - truth).mean()
    reference = np.abs(_decode(path, "pylibjpeg") * slope + intercept - truth).mean()
    assert ours < 10  # lossy, but a few HU: the slice, not noise
    assert ours <= reference * 1.01


def test_registering_from_many_threads_adds_the_plugin_once():
    decoder = get_decoder(JPEGExtended12Bit)
    if PLUGIN_LABEL in decoder._available:
        decoder.remove_plugin(PLUGIN_LABEL)
    errors: list[BaseException] = []

    def register_recording_errors() -> None:
        try:
            register()
        except BaseException as error:  # a thread's exception would otherwise vanish
            errors.append(error)

    threads = [threading.Thread(target=register_recording_errors) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert PLUGIN_LABEL in decoder._available
    assert list(decoder._available)[-1] == PLUGIN_LABEL  # after pydicom's own plugins
