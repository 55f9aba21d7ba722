"""Regenerate the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) from the test
fixtures: pydicom's small test files (tests/integration/dicom_fixtures.py), the hand-built PDUs of
tests/integration/raw_dul.py and mifas.example.toml. Seeds stay small (pixel data cut off) so AFL++
mutates structure, not pixels.

    /work/venv/bin/python tests/fuzz/make_corpus.py
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))

import pydicom  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

import dicom_fixtures as fx  # noqa: E402
import raw_dul as dul  # noqa: E402

MAX_SEED = 4096
CORPUS = HERE / "corpus"


def write(target: str, name: str, data: bytes) -> None:
    out = CORPUS / target
    out.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data[:MAX_SEED])


def header_only(ds: Dataset) -> Dataset:
    """The data set without Pixel Data and with long values dropped."""
    small = Dataset()
    for elem in ds:
        if elem.tag >= 0x7FE00000 or elem.tag.group == 0x0002:
            continue
        if elem.VR in ("OB", "OW", "OF", "OD", "UN") and len(elem.value or b"") > 64:
            continue
        small.add(elem)
    return small


def fixture_headers(target: str, encodings, name) -> None:
    """One seed per fixture (headers only), its encoding taken in turn from `encodings`
    ((selector byte, implicit VR, little endian)...), so the corpus stays under ~30 files."""
    fixtures = [f for f in fx.available_fixtures() if f.name != "deflated" and f.path]
    for i, f in enumerate(fixtures):
        ds = header_only(pydicom.dcmread(f.path))
        selector, implicit, little = encodings[i % len(encodings)]
        try:
            raw = fx.encode_dataset(ds, implicit=implicit, little=little)
        except Exception:  # noqa: BLE001 - a fixture pydicom cannot re-encode is no seed
            continue
        write(target, name(f.name, selector), bytes([selector]) + raw)


def element_structure() -> None:
    # First byte: bit 0 explicit VR, bit 1 big endian (src/fuzzing.rs).
    fixture_headers("element_structure", ((0, True, True), (1, False, True), (3, False, False)),
                    lambda fixture, selector: f"{fixture}_{selector}")
    # Sequences of undefined length, nested.
    inner = Dataset()
    inner.CodeValue = "121327"
    inner.CodeMeaning = "Full fidelity image"
    outer = Dataset()
    outer.ConceptNameCodeSequence = Sequence([inner])
    ds = Dataset()
    ds.PatientName = "NEST^ED"
    ds.ContentSequence = Sequence([outer, outer])
    ds["ContentSequence"].is_undefined_length = True
    write("element_structure", "nested_sq_1", b"\x01" + fx.encode_dataset(ds))
    write("element_structure", "nested_sq_0", b"\x00" + fx.encode_dataset(ds, implicit=True))


def store_dataset() -> None:
    # First byte: mod 3 picks implicit LE, explicit LE, explicit BE; 0x10 the ISO_IR 192 default
    # character set (src/fuzzing.rs).
    fixture_headers("store_dataset",
                    ((0x00, True, True), (0x01, False, True), (0x12, False, False), (0x11, False, True)),
                    lambda fixture, selector: f"{fixture}_{selector:02x}")


def identifiers() -> list[tuple[str, Dataset]]:
    out = []
    study = Dataset()
    study.QueryRetrieveLevel = "STUDY"
    study.PatientName = "WIL*"
    study.PatientID = ""
    study.StudyDate = "20200101-20201231"
    study.StudyTime = "0800-"
    study.StudyInstanceUID = ""
    study.ModalitiesInStudy = "CT\\MR"
    study.AccessionNumber = "A?C*"
    out.append(("study", study))
    patient = Dataset()
    patient.QueryRetrieveLevel = "PATIENT"
    patient.PatientName = "郭^政達=Guo^Zhengda"
    patient.SpecificCharacterSet = "ISO_IR 192"
    patient.PatientBirthDate = ""
    out.append(("patient_utf8", patient))
    series = Dataset()
    series.QueryRetrieveLevel = "SERIES"
    series.StudyInstanceUID = "1.2.3"
    series.SeriesInstanceUID = "1.2.3.4\\1.2.3.5"
    series.Modality = "CT"
    code = Dataset()
    code.CodeValue = ""
    series.RequestAttributesSequence = Sequence([code])
    out.append(("series_seq", series))
    image = Dataset()
    image.QueryRetrieveLevel = "IMAGE"
    image.StudyInstanceUID = "1.2.3"
    image.SeriesInstanceUID = "1.2.3.4"
    image.SOPInstanceUID = ""
    image.InstanceNumber = "1"
    image.AcquisitionDateTime = "20200101120000-"
    out.append(("image", image))
    latin = Dataset()
    latin.QueryRetrieveLevel = "STUDY"
    latin.SpecificCharacterSet = "ISO_IR 100"
    latin.PatientName = "Buc^Jérôme"
    out.append(("study_latin1", latin))
    return out


def cfind_identifier() -> None:
    # First byte: transfer syntax index (0 implicit LE, 1 explicit LE, 2 explicit BE) and options.
    for name, ds in identifiers():
        write("cfind_identifier", f"{name}_ile", b"\x00" + fx.encode_dataset(ds, implicit=True))
        write("cfind_identifier", f"{name}_ele", b"\x31" + fx.encode_dataset(ds))
    _, ds = identifiers()[0]
    write("cfind_identifier", "study_ebe", b"\x42" + fx.encode_dataset(ds, little=False))


def pdu_stream() -> None:
    rq = dul.build_associate_rq("MIFAS", "FUZZ", [
        (1, dul.VERIFICATION, [dul.IMPLICIT_LE]),
        (3, "1.2.840.10008.5.1.4.1.2.2.1", [dul.EXPLICIT_LE, dul.IMPLICIT_LE]),
    ], scp_roles=("1.2.840.10008.5.1.4.1.1.2",))
    write("pdu_stream", "associate_rq", rq)
    echo = dul.pdata_stream(1, dul.c_echo_rq(1), True, 16384)
    write("pdu_stream", "c_echo", echo + dul.build_release_rq())
    _, ident = identifiers()[0]
    find = dul.pdata_stream(3, dul.c_find_rq(2, "1.2.840.10008.5.1.4.1.2.2.1"), True, 16384)
    find += dul.pdata_stream(3, fx.encode_dataset(ident), False, 16384)
    write("pdu_stream", "c_find", find + dul.pdata_stream(3, dul.c_cancel_rq(2), True, 16384))
    store = dul.c_store_rq(3, fx.CT_IMAGE_STORAGE, "1.2.3.4.5")
    # The command in one-byte fragments, several PDVs in one PDU.
    write("pdu_stream", "c_store_fragments", dul.build_pdata(
        [(1, 0x01, store[i:i + 8]) for i in range(0, len(store) - 8, 8)]
        + [(1, 0x03, store[len(store) - len(store) % 8 or len(store) - 8:])]))
    write("pdu_stream", "abort", dul.build_abort(2, 1))
    write("pdu_stream", "release", dul.build_release_rq())


def stow_multipart() -> None:
    ct = header_only(pydicom.dcmread(fx.pydicom_file("CT_small.dcm")))
    part = fx.encode_dataset(ct)[:1024]
    boundary = "MIFAS-fuzz-boundary"
    head = f'multipart/related; type="application/dicom"; boundary={boundary}\n'.encode()
    one = (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode() + part
    one += f"\r\n--{boundary}--\r\n".encode()
    write("stow_multipart", "one_part", head + one)
    two = (f"preamble\r\n--{boundary}  \r\nContent-Type: application/dicom\r\n"
           f"Content-Length: 5\r\n\r\nABCDE\r\n--{boundary}\r\n"
           f"Content-Type: application/dicom+json\r\nContent-Location: /x\r\n\r\n"
           f"[]\r\n--{boundary}--epilogue").encode()
    write("stow_multipart", "two_parts", head + two)
    quoted = b'Multipart/Related; boundary="a b\\"c"; type=application/dicom\n'
    write("stow_multipart", "quoted_boundary",
          quoted + b'--a b"c\r\n\r\n\r\n--a b"c\r\n\r\nx\r\n--a b"c--')
    write("stow_multipart", "crlf_in_body",
          head + (f"--{boundary}\r\n\r\n\r\n--{boundary[:-1]}\r\r\n--{boundary}--").encode())


def config_text() -> None:
    example = (ROOT / "mifas.example.toml").read_text()
    write("config_text", "example_head", example[:MAX_SEED].encode())
    # Each [section] of the example on its own, uncommented keys only.
    section, lines = "top", []
    for line in example.splitlines() + ["[end]"]:
        if line.startswith("[") and lines:
            text = "\n".join(lines) + "\n"
            name = section.strip("[]").replace(".", "_")
            write("config_text", f"section_{name}", text.encode())
            lines = []
        if line.startswith("["):
            section = line
        if not line.lstrip().startswith("#") and line.strip():
            lines.append(line)
    write("config_text", "remote_ae", b'[dicom]\naet = "MIFAS"\nport = 11112\n\n'
          b'[[remote_ae]]\naet = "PEER"\nhost = "127.0.0.1"\nport = 104\n'
          b'hosts = ["127.0.0.1"]\nservices = ["echo", "find"]\n')


if __name__ == "__main__":
    element_structure()
    store_dataset()
    cfind_identifier()
    pdu_stream()
    stow_multipart()
    config_text()
    for d in sorted(CORPUS.iterdir()):
        print(d.name, len(list(d.iterdir())))
