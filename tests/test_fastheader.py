"""Tests for ctexplore._fastheader: the fast header reader gives pydicom's headers, or steps aside."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ctexplore import headers
from ctexplore._fastheader import read_fast_header
from ctexplore.errors import DicomError
from ctexplore.phantom import SUPPORTED_TRANSFER_SYNTAXES, write_enhanced_series, write_series, write_study

SMALL = dict(n_slices=2, matrix=16)
PYDICOM_ONLY_SYNTAXES = {ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
DELETE = object()


def outcome(read: Callable[[Path], Any], path: Path) -> Any:
    """Headers, or the DicomError message; any other exception fails the test."""
    try:
        return read(path)
    except DicomError as error:
        return ("DicomError", str(error))


def fast_is_used_and_agrees(path: Path) -> bool:
    """Assert `read_header` (fast path first) equals the pydicom-only path; return whether the fast path took it."""
    assert outcome(headers.read_header, path) == outcome(headers._read_header_pydicom, path), path
    return read_fast_header(path) is not None


def one_file(tmp_path: Path, **kwargs: Any) -> Path:
    return write_series(tmp_path / "series", **{**SMALL, "n_slices": 1, **kwargs}).files[0]


def rewrite(source: Path, dest: Path, change: Callable[[Dataset], None], syntax: str | None = None) -> Path:
    """Copy `source` through pydicom with `change` applied to its dataset."""
    dataset = pydicom.dcmread(source)
    change(dataset)
    if syntax is not None:
        dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(dest, enforce_file_format=True)
    return dest


class TestSameHeadersAsPydicom:
    @pytest.mark.realdata
    def test_every_real_file_gives_the_pydicom_headers(self, ct_data: Path) -> None:
        taken = {path: fast_is_used_and_agrees(path) for path in sorted(ct_data.rglob("*")) if path.is_file()}
        implicit_vr_philips = [p for p in taken if "lung-pet-ct-dx" in p.parts and p.suffix == ".dcm"]
        assert implicit_vr_philips and all(taken[p] for p in implicit_vr_philips)
        assert sum(taken.values()) >= 200  # the fast path is the common path, not the exception

    @pytest.mark.parametrize("syntax", SUPPORTED_TRANSFER_SYNTAXES)
    def test_phantom_series_in_each_transfer_syntax(self, tmp_path: Path, syntax: str) -> None:
        # 64 pixels: the JPEG 2000 encoder needs that many for its default resolution levels.
        written = write_series(tmp_path, n_slices=2, matrix=64, transfer_syntax=syntax, shuffle=True)
        taken = [fast_is_used_and_agrees(path) for path in written.files]
        assert all(taken) == (syntax not in PYDICOM_ONLY_SYNTAXES)

    @pytest.mark.parametrize(
        "variant",
        [
            dict(signed=False, padding_value=None),
            dict(signed=True, padding_value=-2000, padding_vr="US"),  # stored 63536
            dict(signed=False, padding_value=0, padding_range_limit=100),
            dict(signed=True, padding_value=-2000, transfer_syntax=ImplicitVRLittleEndian),
            dict(signed=False, padding_value=65535, transfer_syntax=ImplicitVRLittleEndian),
            dict(gantry_tilt=24.0, rescale_slope=0.5, rescale_intercept=-1000.0, bits_stored=12),
        ],
        ids=["unsigned", "us-padding-in-signed", "range-limit", "implicit-signed", "implicit-unsigned", "tilt"],
    )
    def test_padding_signedness_and_geometry_variants(self, tmp_path: Path, variant: dict[str, Any]) -> None:
        written = write_series(tmp_path, **SMALL, **variant)
        assert all(fast_is_used_and_agrees(path) for path in written.files)

    def test_study_folder_with_localizer_and_non_images(self, tmp_path: Path) -> None:
        write_study(tmp_path, series=[dict(n_slices=2, matrix=16)])
        taken = {path.name: fast_is_used_and_agrees(path) for path in sorted(tmp_path.iterdir())}
        assert taken["DICOMDIR"] is False and taken["EMPTY.dcm"] is False and taken["README.txt"] is False
        assert taken["SCOUT0001.dcm"] is True

    def test_native_pixel_offset_points_at_the_pixel_bytes(self, tmp_path: Path) -> None:
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            path = one_file(tmp_path / syntax, transfer_syntax=syntax)
            header = read_fast_header(path)
            pixels = pydicom.dcmread(path).PixelData
            assert header.pixel_length == len(pixels)
            assert path.read_bytes()[header.pixel_offset : header.pixel_offset + header.pixel_length] == pixels

    def test_a_long_private_element_makes_it_read_past_the_first_chunk(self, tmp_path: Path) -> None:
        def add_private_blob(dataset: Dataset) -> None:
            block = dataset.private_block(0x0029, "CTEXPLORE TEST", create=True)
            block.add_new(0x10, "OB", bytes(range(256)) * 400)  # 100 KiB before the pixel data

        path = rewrite(one_file(tmp_path), tmp_path / "blob.dcm", add_private_blob)
        assert fast_is_used_and_agrees(path)
        assert read_fast_header(path).pixel_offset > 100_000


class TestSequences:
    @staticmethod
    def add_references(dataset: Dataset, undefined: bool) -> None:
        """(0008,1140) two items, each with a nested (0040,A170) code sequence."""
        items = []
        for number in range(2):
            code = Dataset()
            code.CodeValue = "121311"
            code.CodingSchemeDesignator = "DCM"
            code.CodeMeaning = "Localizer"
            nested = Sequence([code])
            nested.is_undefined_length = undefined
            item = Dataset()
            item.ReferencedSOPClassUID = headers.CT_IMAGE_STORAGE
            item.ReferencedSOPInstanceUID = f"1.2.3.{number}"
            item.PurposeOfReferenceCodeSequence = nested
            item.is_undefined_length_sequence_item = undefined
            code.is_undefined_length_sequence_item = undefined
            items.append(item)
        dataset.ReferencedImageSequence = Sequence(items)
        dataset["ReferencedImageSequence"].is_undefined_length = undefined

    @pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    @pytest.mark.parametrize("undefined", [True, False], ids=["undefined-length", "defined-length"])
    def test_nested_sequences_are_skipped(self, tmp_path: Path, syntax: str, undefined: bool) -> None:
        source = one_file(tmp_path, transfer_syntax=syntax)
        path = rewrite(source, tmp_path / "seq.dcm", lambda ds: self.add_references(ds, undefined), syntax)
        raw = path.read_bytes()
        assert (b"\xfe\xff\xdd\xe0" in raw) == undefined  # sequence delimitation item written
        assert (b"\xfe\xff\x0d\xe0" in raw) == undefined  # item delimitation item written
        assert fast_is_used_and_agrees(path)

    def test_enhanced_ct_functional_groups_are_left_to_pydicom(self, tmp_path: Path) -> None:
        written = write_enhanced_series(tmp_path, **SMALL)
        assert not fast_is_used_and_agrees(written.files[0])
        assert len(headers.read_header(written.files[0])) == 2


class TestValues:
    # pydicom warns while writing the quirks
    @pytest.mark.filterwarnings("ignore:Invalid value for VR:UserWarning")
    @pytest.mark.filterwarnings("ignore:Value .* is not valid:UserWarning")
    @pytest.mark.parametrize(
        ("changes", "fast"),
        [
            pytest.param({"ImageType": ["ORIGINAL ", "primary", " AXIAL"]}, True, id="cs-inner-spaces"),
            pytest.param({"SeriesDescription": "  leading spaces stay"}, True, id="lo-leading-spaces"),
            pytest.param({"ConvolutionKernel": ["FC64", "AIDR 3D"]}, True, id="sh-multi"),
            pytest.param({"PixelSpacing": [" 0.5", "4.5e-1 "]}, True, id="ds-spaces"),
            pytest.param({"ImagePositionPatient": ["-1e2", "+3", ".5"]}, True, id="ds-forms"),
            pytest.param({"RescaleSlope": "1.000000000000"}, True, id="ds-long"),
            pytest.param({"SeriesNumber": None}, True, id="is-empty"),
            pytest.param({"SliceThickness": None}, True, id="ds-empty"),
            pytest.param({"PixelPaddingValue": None}, True, id="padding-empty"),
            pytest.param({"NumberOfFrames": 1}, True, id="one-frame"),
            pytest.param({"SpecificCharacterSet": DELETE}, True, id="no-charset"),
            pytest.param({"SpecificCharacterSet": "ISO_IR 192", "SeriesDescription": "Schädel "}, True, id="utf8"),
            pytest.param({"SpecificCharacterSet": "ISO_IR 100", "PatientID": "Müller"}, True, id="latin1"),
            pytest.param({"SpecificCharacterSet": "ISO_IR 144", "SeriesDescription": "Голова"}, False, id="iso-ir-144"),
            pytest.param({"PatientID": ["A", "B"]}, False, id="patient-id-two-values"),
            pytest.param({"InstanceNumber": "12.0"}, False, id="is-float"),
            pytest.param({"InstanceNumber": "12.5"}, False, id="is-fraction"),
            pytest.param({"NumberOfFrames": 2}, False, id="two-frames"),
            pytest.param({"Rows": [16, 16]}, False, id="rows-two-values"),
        ],
    )
    def test_value_quirks_give_the_pydicom_headers(self, tmp_path: Path, changes: dict[str, Any], fast: bool) -> None:
        def apply(dataset: Dataset) -> None:
            for keyword, value in changes.items():
                if value is DELETE:
                    delattr(dataset, keyword)
                else:
                    setattr(dataset, keyword, value)

        path = rewrite(one_file(tmp_path), tmp_path / "quirk.dcm", apply)
        assert fast_is_used_and_agrees(path) == fast

    def test_implicit_vr_padding_is_signed_when_pixel_representation_says_so(self, tmp_path: Path) -> None:
        def thirty_two_bits(ds: Dataset) -> None:
            # At 32 bits, _padding no longer folds 63536 into -2000: the sign must come from the reader.
            ds.Rows = ds.Columns = 8
            ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
            ds.PixelData = ds.PixelData[: 8 * 8 * 4]

        source = one_file(tmp_path, transfer_syntax=ImplicitVRLittleEndian, signed=True, padding_value=-2000)
        path = rewrite(source, tmp_path / "bits32.dcm", thirty_two_bits, ImplicitVRLittleEndian)
        assert fast_is_used_and_agrees(path)
        assert headers.read_header(path)[0].padding_value == -2000

    def test_utf8_description_is_decoded(self, tmp_path: Path) -> None:
        def utf8(ds: Dataset) -> None:
            ds.SpecificCharacterSet = "ISO_IR 192"
            ds.SeriesDescription = "Kopf/Schädel 头部"

        path = rewrite(one_file(tmp_path), tmp_path / "utf8.dcm", utf8)
        assert read_fast_header(path).values["SeriesDescription"] == "Kopf/Schädel 头部"


class TestBadInput:
    @pytest.mark.filterwarnings("ignore::UserWarning")
    @pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    def test_truncated_headers_give_pydicoms_answer_and_no_stray_exception(self, tmp_path: Path, syntax: str) -> None:
        source = one_file(tmp_path, transfer_syntax=syntax)
        source = rewrite(source, tmp_path / "seq.dcm", lambda ds: TestSequences.add_references(ds, True), syntax)
        data = source.read_bytes()
        header_end = read_fast_header(source).pixel_offset
        cuts = sorted(set(range(1, header_end + 16, 7)) | {128, 132, 133, header_end - 1, header_end})
        declined = 0
        for cut in cuts:
            path = tmp_path / f"cut{cut}.dcm"
            path.write_bytes(data[:cut])
            declined += read_fast_header(path) is None
            assert fast_is_used_and_agrees(path) or outcome(headers.read_header, path)[0] == "DicomError"
        assert declined >= len(cuts) - 3  # only cuts inside the pixel data leave a usable header

    def test_zero_byte_and_text_files(self, tmp_path: Path) -> None:
        empty = tmp_path / "EMPTY.dcm"
        empty.write_bytes(b"")
        text = tmp_path / "README.txt"
        text.write_text("Exported by a scanner.\n" * 20)
        for path in (empty, text):
            assert read_fast_header(path) is None
            with pytest.raises(DicomError, match=path.name):
                headers.read_header(path)

    def test_random_bytes_after_a_dicm_preamble(self, tmp_path: Path) -> None:
        rng = random.Random(7)
        for number in range(100):
            path = tmp_path / f"noise{number}.dcm"
            path.write_bytes(bytes(128) + b"DICM" + rng.randbytes(rng.randrange(0, 3000)))
            assert read_fast_header(path) is None
            with pytest.raises(DicomError):
                headers.read_header(path)

    @pytest.mark.filterwarnings("ignore::UserWarning")
    def test_corrupted_header_bytes_give_pydicoms_answer(self, tmp_path: Path) -> None:
        """Flip a few header bytes at random: fast or not, the result is pydicom's."""
        rng = random.Random(3)
        for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
            data = one_file(tmp_path / syntax, transfer_syntax=syntax).read_bytes()
            header_end = 1100
            for number in range(60):
                corrupt = bytearray(data)
                for _ in range(rng.randint(1, 3)):
                    corrupt[rng.randrange(132, header_end)] = rng.choice([rng.randrange(256), 0x20, 0x5C, 0x00, 0xFF])
                path = tmp_path / f"corrupt{number}.dcm"
                path.write_bytes(corrupt)
                fast_is_used_and_agrees(path)
