"""DICOM test data: pydicom's shipped files (only those present offline) and a generated CT corpus."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import zlib

import numpy as np
import pydicom
import pydicom.config
import pydicom.data
import pydicom.filebase
import pydicom.filewriter
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PYDICOM_DATA = Path(pydicom.data.__file__).resolve().parent
SEARCH_DIRS = [PYDICOM_DATA / "test_files", PYDICOM_DATA / "charset_files"]

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def pydicom_file(name: str) -> Path | None:
    """Path of a test file shipped with pydicom; never downloads (the network is closed)."""
    for d in SEARCH_DIRS:
        p = d / name
        if p.is_file():
            return p
    try:
        p = pydicom.data.get_testdata_file(name, download=False)
    except Exception:
        p = None
    return Path(p) if p else None


@dataclass(frozen=True)
class Fixture:
    id: str            # short id for test names
    name: str          # file name in pydicom's data
    what: str          # what it exercises

    @property
    def path(self) -> Path | None:
        return pydicom_file(self.name)


# One entry per feature the issue lists. Several share a SOP Instance UID (pydicom ships the
# same MR slice in many encodings): tests that store many into one archive account for that.
FIXTURES = [
    Fixture("ct", "CT_small.dcm", "CT, explicit VR LE, ISO_IR 100"),
    Fixture("mr", "MR_small.dcm", "MR, explicit VR LE"),
    Fixture("mr_implicit", "MR_small_implicit.dcm", "implicit VR LE"),
    Fixture("rgb", "SC_rgb_small_odd.dcm", "RGB, odd size, ISO_IR 192"),
    Fixture("multiframe_jpeg", "examples_ybr_color.dcm", "US multi-frame (30 frames), JPEG baseline"),
    Fixture("multiframe_rle", "SC_rgb_rle_2frame.dcm", "multi-frame RLE"),
    Fixture("jpeg_baseline", "SC_rgb_jpeg_dcmtk.dcm", "JPEG baseline 1.2.840.10008.1.2.4.50"),
    Fixture("jpeg_extended", "JPGExtended.dcm", "JPEG extended 1.2.840.10008.1.2.4.51"),
    Fixture("jpeg_lossless", "SC_rgb_jpeg_gdcm.dcm", "JPEG lossless SV1 1.2.840.10008.1.2.4.70"),
    Fixture("jpeg_ls", "MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless 1.2.840.10008.1.2.4.80"),
    Fixture("j2k_lossless", "MR_small_jp2klossless.dcm", "JPEG 2000 lossless 1.2.840.10008.1.2.4.90"),
    Fixture("j2k", "JPEG2000.dcm", "JPEG 2000 1.2.840.10008.1.2.4.91"),
    Fixture("rle", "MR_small_RLE.dcm", "RLE lossless 1.2.840.10008.1.2.5"),
    Fixture("big_endian", "MR_small_bigendian.dcm", "explicit VR big endian 1.2.840.10008.1.2.2"),
    Fixture("deflated", "image_dfl.dcm", "deflated explicit VR LE 1.2.840.10008.1.2.1.99"),
    Fixture("utf8", "chrX1.dcm", "ISO_IR 192 (UTF-8) names"),
    Fixture("latin1", "chrFren.dcm", "ISO_IR 100 (Latin-1) names"),
    Fixture("gb18030", "chrX2.dcm", "GB18030 names"),
]


def available_fixtures() -> list[Fixture]:
    return [f for f in FIXTURES if f.path is not None]


@dataclass
class FileInfo:
    path: Path
    ts: str
    sop_class: str
    sop_instance: str
    study: str | None
    series: str | None
    patient_id: str | None


def file_info(path: Path) -> FileInfo:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return FileInfo(
        path=Path(path),
        ts=str(ds.file_meta.TransferSyntaxUID),
        sop_class=str(ds.file_meta.MediaStorageSOPClassUID),
        sop_instance=str(ds.file_meta.MediaStorageSOPInstanceUID),
        study=str(ds.StudyInstanceUID) if "StudyInstanceUID" in ds else None,
        series=str(ds.SeriesInstanceUID) if "SeriesInstanceUID" in ds else None,
        patient_id=str(ds.get("PatientID", "")),
    )


def expected_counts(infos: list[FileInfo]) -> dict[str, int]:
    """Counts an archive must report after storing these files with duplicate policy `ignore`:
    the first file of each SOP Instance UID wins, later ones are duplicates."""
    first: dict[str, FileInfo] = {}
    for i in infos:
        first.setdefault(i.sop_instance, i)
    kept = list(first.values())
    return {
        "patients": len({i.patient_id for i in kept}),
        "studies": len({i.study for i in kept}),
        "series": len({i.series for i in kept}),
        "instances": len(kept),
    }


# --- encoding helpers ---------------------------------------------------------------------


def encode_dataset(ds: Dataset, implicit: bool = False, little: bool = True) -> bytes:
    """Encode a data set (no file meta) exactly as a C-STORE sender would put it on the wire."""
    buf = pydicom.filebase.DicomBytesIO()
    buf.is_little_endian = little
    buf.is_implicit_VR = implicit
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        pydicom.filewriter.write_dataset(buf, ds)
    finally:
        pydicom.config.settings.writing_validation_mode = old
    return buf.getvalue()


def load(name: str) -> Dataset:
    return pydicom.dcmread(pydicom_file(name))


def with_uids(ds: Dataset, **uids) -> Dataset:
    """Copy of `ds` with e.g. SOPInstanceUID=..., StudyInstanceUID=... replaced (no validation)."""
    ds = copy.deepcopy(ds)
    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        for k, v in uids.items():
            ds[k].value = v
    finally:
        pydicom.config.settings.writing_validation_mode = old
    return ds


def write_part10(ds: Dataset, path: Path, ts: str = ExplicitVRLittleEndian,
                 media_sop_instance: str | None = None, media_sop_class: str | None = None) -> Path:
    """Write `ds` as a Part-10 file, byte by byte under our control (pydicom's save_as would
    "fix" the meta group); `media_sop_*` let the meta group lie (for 0xA900 tests), and
    pynetdicom takes the C-STORE command's UIDs from the meta group."""
    ts = str(ts)
    if ts == "1.2.840.10008.1.2.1.99":
        raise ValueError("write_part10 does not deflate")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = media_sop_class or ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = media_sop_instance or ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.9.7777.2"
    meta.ImplementationVersionName = "MIFAS_TESTS"
    buf = pydicom.filebase.DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = False
    buf.write(b"\x00" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(buf, meta, enforce_standard=True)
    body = encode_dataset(ds, implicit=(ts == "1.2.840.10008.1.2"), little=(ts != "1.2.840.10008.1.2.2"))
    Path(path).write_bytes(buf.getvalue() + body)
    return Path(path)


# --- generated CT corpus ------------------------------------------------------------------

NAMES = [
    ("ISO_IR 192", "郭政達"),
    ("ISO_IR 100", "MÜLLER^JÜRGEN"),
    ("ISO_IR 192", "Ångström^Zoë=アングストローム"),  # multi-script UTF-8
    ("ISO_IR 100", "Dœuf^Renée"),
]


@dataclass
class CorpusItem:
    path: Path
    sop_instance: str
    study: str
    series: str
    patient_id: str


def make_ct(patient_idx: int, study_idx: int, series_idx: int, inst_idx: int, tag: str,
            pixels: bytes, rows: int = 512, cols: int = 512) -> Dataset:
    charset, name = NAMES[patient_idx % len(NAMES)]
    root = "1.2.826.0.1.3680043.8.498."

    def uid(*parts):
        return generate_uid(root, [tag, *map(str, parts)])

    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = uid("i", patient_idx, study_idx, series_idx, inst_idx)
    ds.StudyDate = f"2024{(study_idx % 12) + 1:02d}{(patient_idx % 28) + 1:02d}"
    ds.StudyTime = "101010"
    ds.AccessionNumber = f"ACC{patient_idx:03d}{study_idx:03d}"
    ds.Modality = "CT"
    ds.Manufacturer = "MIFAS-TESTS"
    ds.PatientName = name if patient_idx < len(NAMES) else f"{name}^{patient_idx}"
    ds.PatientID = f"{tag}-P{patient_idx:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = uid("st", patient_idx, study_idx)
    ds.SeriesInstanceUID = uid("se", patient_idx, study_idx, series_idx)
    ds.StudyID = str(study_idx + 1)
    ds.SeriesNumber = series_idx + 1
    ds.InstanceNumber = inst_idx + 1
    ds.ImagePositionPatient = [0, 0, inst_idx * 2.5]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 2.5
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = pixels
    return ds


def ct_pixels(seed: int, rows: int = 512, cols: int = 512) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4096, size=(rows, cols), dtype=np.uint16).tobytes()


def generate_corpus(outdir: Path, patients=2, studies=2, series=2, instances=3, tag="corpus",
                    rows=512, cols=512) -> list[CorpusItem]:
    """patients x studies x series x instances CT files (512x512 16-bit) with non-ASCII names."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    items = []
    base = bytearray(ct_pixels(zlib.crc32(tag.encode()), rows, cols))
    n = 0
    for p in range(patients):
        for st in range(studies):
            for se in range(series):
                for i in range(instances):
                    n += 1
                    base[0:4] = n.to_bytes(4, "little")  # every image differs
                    ds = make_ct(p, st, se, i, tag, bytes(base), rows, cols)
                    path = outdir / f"p{p}_st{st}_se{se}_i{i}.dcm"
                    write_part10(ds, path)
                    items.append(CorpusItem(path, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID),
                                            str(ds.SeriesInstanceUID), str(ds.PatientID)))
    return items


# --- web portal corpus --------------------------------------------------------------------


@dataclass(frozen=True)
class PortalStudy:
    key: str           # short name used by the tests
    patient_id: str
    charset: str
    name: str          # PatientName as stored (Unicode)
    date: str          # StudyDate YYYYMMDD
    modality: str
    images: int = 2


# Names in several character sets (the ISO 2022 Japanese and Korean ones come from pydicom's
# chrH31 / chrI2, stored as they are), a name that tries to inject a script, and two studies of
# one patient.
PORTAL_STUDIES = [
    PortalStudy("kuo1", "PORTAL-KUO", "ISO_IR 192", "Kuo^Cheng-Ta=郭^政達", "20240115", "CT", 3),
    PortalStudy("kuo2", "PORTAL-KUO", "ISO_IR 192", "Kuo^Cheng-Ta=郭^政達", "20230301", "MR"),
    PortalStudy("mueller", "PORTAL-MUE", "ISO_IR 100", "Müller^Jürgen", "20240201", "CT"),
    PortalStudy("greek", "PORTAL-GRC", "ISO_IR 126", "Ελληνικά^Όνομα", "20210710", "CR"),
    PortalStudy("xss", "PORTAL-XSS", "ISO_IR 192", "<script>document.title='pwned'</script>^Eve", "20220505", "US"),
]


def portal_corpus(outdir: Path, tag: str = "portal") -> dict[str, list[CorpusItem]]:
    """Small 64x64 CT-like studies for PORTAL_STUDIES (study key -> its instances)."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[CorpusItem]] = {}
    for s_idx, s in enumerate(PORTAL_STUDIES):
        items = []
        for i in range(s.images):
            ds = make_ct(0, s_idx, 0, i, tag, ct_pixels(s_idx * 100 + i, 64, 64), 64, 64)
            ds.SpecificCharacterSet = s.charset
            ds.PatientName = s.name
            ds.PatientID = s.patient_id
            ds.StudyDate = s.date
            ds.Modality = s.modality
            ds.AccessionNumber = f"ACC-{s.key}"
            ds.StudyDescription = f"{s.key} study"
            ds.WindowCenter = 40
            ds.WindowWidth = 400
            path = outdir / f"{s.key}_{i}.dcm"
            write_part10(ds, path)
            items.append(CorpusItem(path, str(ds.SOPInstanceUID), str(ds.StudyInstanceUID),
                                    str(ds.SeriesInstanceUID), s.patient_id))
        out[s.key] = items
    return out
