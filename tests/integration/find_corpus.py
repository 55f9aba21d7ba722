"""C-FIND fixture corpus: generated patients/studies/series/instances (pydicom) plus some of
pydicom's shipped files, imported into a fresh data dir and served by one `mifas serve`.

The corpus is deliberately varied (several charsets, dates over months, modalities, empty and
multi-valued attributes, a RequestAttributesSequence with one or two items) so that every matching
kind of PS3.4 C.2.2.2 has cases that match and cases that do not. Its answers are computed by
`find_oracle.py` from the files, never from MIFAS.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

import dicom_fixtures as F
from mifas_helpers import MifasServer, parse_kv, run_mifas

ROOT = "1.2.826.0.1.3680043.8.498."

SOP = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "SR": "1.2.840.10008.5.1.4.1.1.88.11",
    "PR": "1.2.840.10008.5.1.4.1.1.11.1",
}


@dataclass
class SeriesSpec:
    modality: str
    description: str
    body_part: str
    instances: int
    manufacturer: str = "ACME"
    station: str = ""
    request_items: list = field(default_factory=list)  # [(RequestedProcedureID, ScheduledProcedureStepID)]
    image_type: tuple = ("ORIGINAL", "PRIMARY", "AXIAL")


@dataclass
class StudySpec:
    patient: str  # PatientID
    date: str
    time: str
    accession: str
    description: str
    series: list
    referring: str = ""
    institution: str = ""
    study_id: str = ""


# PatientID -> (SpecificCharacterSet or None, PatientName, sex, birth date, extra attributes)
PATIENTS = {
    "FIND-P1": ("ISO_IR 100", "MÜLLER^JÜRGEN", "M", "19600315", {"IssuerOfPatientID": "HOSP-A"}),
    "FIND-P2": ("ISO_IR 192", "郭政達", "F", "19751120", {"EthnicGroup": "客家"}),
    "FIND-P3": ("ISO_IR 192", "Kuo^Cheng-Ta=郭^政達", "M", "19821201", {}),
    "FIND-P4": ("GB18030", "Guo^XiaoMing=郭^小明", "M", "19900101", {}),
    "FIND-P5": (None, "SMITH^JOHN", "M", "19450704",
                {"OtherPatientIDs": ["OLD-5", "ALT-5"], "PatientComments": "allergic to contrast",
                 "EthnicGroup": "N/A"}),
    "FIND-P6": (None, "Smithers^Anna^Marie", "F", "", {}),
    "FIND-P7": ("ISO_IR 192", "Müller^Hans", "M", "19551010", {}),
    "FIND-P8": ("ISO_IR 100", "müller^jürgen", "M", "19600316", {"IssuerOfPatientID": "HOSP-B"}),
}

STUDIES = [
    StudySpec("FIND-P1", "20231115", "083000", "ACC1001", "CT THORAX", referring="WELBY^MARCUS",
              institution="St. Elsewhere", series=[
                  SeriesSpec("CT", "AXIAL 5mm", "CHEST", 3, station="CT01",
                             request_items=[("RP-1001", "SPS-1001A")]),
                  SeriesSpec("CT", "CORONAL", "CHEST", 2, station="CT01",
                             request_items=[("RP-1001", "SPS-1001B"), ("RP-1009", "SPS-1009A")],
                             image_type=("DERIVED", "SECONDARY", "REFORMATTED")),
              ]),
    StudySpec("FIND-P1", "20240305", "090000", "ACC1002", "MR HEAD", referring="GÜNTHER^KLAUS",
              institution="Klinikum Süd", series=[
                  SeriesSpec("MR", "T1 SAG", "HEAD", 2, manufacturer="Siemens"),
                  SeriesSpec("MR", "T2 AX", "HEAD", 2, manufacturer="Siemens"),
                  SeriesSpec("PR", "", "", 1, manufacturer="Siemens"),
              ]),
    StudySpec("FIND-P2", "20240306", "080000", "ACC2001", "US ABDOMEN", series=[
        SeriesSpec("US", "LIVER", "ABDOMEN", 3, manufacturer="GE"),
    ]),
    StudySpec("FIND-P2", "20240307", "170000", "", "CR CHEST", series=[
        SeriesSpec("CR", "PA", "CHEST", 1),
    ]),
    StudySpec("FIND-P3", "20240305", "200000", "ACC3001", "CT ABDOMEN", referring="Lee^Ann",
              institution="台北醫院", series=[
                  SeriesSpec("CT", "PORTAL", "ABDOMEN", 2),
                  SeriesSpec("SR", "REPORT", "", 1, image_type=()),
              ]),
    StudySpec("FIND-P3", "20240307", "190000", "ACC3002", "MR KNEE", series=[
        SeriesSpec("MR", "PD FS", "KNEE", 2),
    ]),
    StudySpec("FIND-P4", "20240401", "101010.123456", "ACC4001", "胸部CT", series=[
        SeriesSpec("CT", "平扫", "CHEST", 2),
    ]),
    StudySpec("FIND-P5", "20240115", "235959", "ACC5001", "CT HEAD", referring="house^gregory",
              institution="Princeton Plainsboro", series=[
                  SeriesSpec("CT", "BRAIN", "HEAD", 4, request_items=[("RP-5001", "SPS-5001A")]),
              ]),
    StudySpec("FIND-P5", "20240229", "000000", "ACC5002", "US NECK", series=[
        SeriesSpec("US", "THYROID", "NECK", 1),
    ]),
    StudySpec("FIND-P5", "20240601", "120000", "ACC5003", "MR SPINE", series=[
        SeriesSpec("MR", "T2 SAG", "LSPINE", 3),
        SeriesSpec("MR", "T1 SAG", "LSPINE", 1),
    ]),
    StudySpec("FIND-P6", "20231231", "113000", "ACC6001", "CR HAND", series=[
        SeriesSpec("CR", "LEFT", "HAND", 2),
    ]),
    StudySpec("FIND-P7", "20240510", "143000", "ACC7001", "CT CHEST", series=[
        SeriesSpec("CT", "LUNG", "CHEST", 2),
    ]),
    StudySpec("FIND-P8", "20240520", "093000", "ACC8001", "CT KNEE", series=[
        SeriesSpec("CT", "BONE", "KNEE", 1),
    ]),
]

# pydicom's shipped files added to the corpus (skipped when absent offline)
SHIPPED = ["CT_small.dcm", "MR_small.dcm", "chrX1.dcm", "chrX2.dcm", "chrFren.dcm", "chrGerm.dcm",
           "SC_rgb_small_odd.dcm"]


def _uid(tag: str, *parts) -> str:
    return generate_uid(ROOT, [tag, *map(str, parts)])


def st(i: int) -> str:
    """Study Instance UID of study `i` of the C-FIND corpus (tag "find")."""
    return _uid("find", "st", i)


def se(i: int, j: int) -> str:
    return _uid("find", "se", i, j)


def sop(i: int, j: int, k: int) -> str:
    return _uid("find", "i", i, j, k)


def _instance(tag: str, sti: int, st: StudySpec, sei: int, se: SeriesSpec, i: int) -> Dataset:
    cs, name, sex, birth, extra = PATIENTS[st.patient]
    ds = Dataset()
    if cs:
        ds.SpecificCharacterSet = cs
    if se.image_type:
        ds.ImageType = list(se.image_type)
    ds.SOPClassUID = SOP[se.modality]
    ds.SOPInstanceUID = _uid(tag, "i", sti, sei, i)
    ds.StudyDate = st.date
    ds.SeriesDate = st.date
    ds.ContentDate = st.date
    ds.StudyTime = st.time
    ds.SeriesTime = st.time
    ds.ContentTime = f"{st.time[:4]}{i:02d}"  # one second apart inside the study's minute
    ds.AccessionNumber = st.accession
    ds.Modality = se.modality
    ds.Manufacturer = se.manufacturer
    if st.institution:
        ds.InstitutionName = st.institution
    ds.ReferringPhysicianName = st.referring
    if se.station:
        ds.StationName = se.station
    ds.StudyDescription = st.description
    if se.description:
        ds.SeriesDescription = se.description
    ds.PatientName = name
    ds.PatientID = st.patient
    ds.PatientBirthDate = birth
    ds.PatientSex = sex
    for k, v in extra.items():
        setattr(ds, k, v)
    if se.body_part:
        ds.BodyPartExamined = se.body_part
    ds.StudyInstanceUID = _uid(tag, "st", sti)
    ds.SeriesInstanceUID = _uid(tag, "se", sti, sei)
    ds.StudyID = st.study_id or f"S{sti + 1}"
    ds.SeriesNumber = sei + 1
    ds.InstanceNumber = i + 1
    if se.request_items:
        items = []
        for rp, sps in se.request_items:
            it = Dataset()
            it.RequestedProcedureID = rp
            it.ScheduledProcedureStepID = sps
            items.append(it)
        ds.RequestAttributesSequence = Sequence(items)
    if se.modality not in ("SR", "PR"):
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = 4
        ds.Columns = 4 + sei  # differs per series
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        if se.modality == "US":
            ds.NumberOfFrames = 1
        ds.PixelData = bytes(2 * 4 * (4 + sei))
    return ds


def generate_find_corpus(outdir: Path, tag: str = "find") -> list[Path]:
    """Write the generated studies and copy the shipped files; returns every file path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for sti, st in enumerate(STUDIES):
        for sei, se in enumerate(st.series):
            for i in range(se.instances):
                ds = _instance(tag, sti, st, sei, se, i)
                paths.append(F.write_part10(ds, outdir / f"{tag}_st{sti}_se{sei}_i{i}.dcm"))
    for name in SHIPPED:
        p = F.pydicom_file(name)
        if p is not None:
            dst = outdir / f"shipped_{name}"
            shutil.copy(p, dst)
            paths.append(dst)
    return paths


def generate_bulk_series(outdir: Path, instances: int, tag: int = 1,
                         patient_id: str = "BULK-P1", series: int = 1) -> list[Path]:
    """One patient, one study, `series` series of `instances` tiny CT headers each (C-CANCEL and
    max_results tests need many matches of one query). Fast: one encoded template whose
    fixed-length UIDs are patched per file."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    base = f"{ROOT}77.{tag}"
    study = f"{base}.1"
    paths = []
    for se in range(series):
        series_uid = f"{base}.2.{se + 1}"
        ds = Dataset()
        ds.SOPClassUID = SOP["CT"]
        ds.SOPInstanceUID = f"{base}.3.{se + 1}.999999"
        ds.StudyDate = "20240102"
        ds.StudyTime = "120000"
        ds.AccessionNumber = f"BULK{tag}"
        ds.Modality = "CT"
        ds.PatientName = "BULK^PATIENT"
        ds.PatientID = patient_id
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = se + 1
        ds.InstanceNumber = 999999
        tmpl = outdir / "template.dcm"
        F.write_part10(ds, tmpl)
        raw = tmpl.read_bytes()
        tmpl.unlink()
        uid_ph = f"{base}.3.{se + 1}.999999".encode()
        num_ph = b"999999"
        for i in range(instances):
            uid = f"{base}.3.{se + 1}.{100001 + i}".encode()
            data = raw.replace(uid_ph, uid)  # meta group and data set
            # InstanceNumber is the last element: IS, 6 bytes, value "999999"
            assert data.endswith(num_ph)
            data = data[:-6] + f"{i + 1:<6d}".encode()
            p = outdir / f"bulk{tag}_{se}_{i:05d}.dcm"
            p.write_bytes(data)
            paths.append(p)
    return paths


# --- one served archive per module ----------------------------------------------------------


def import_files(data_dir: Path, *paths) -> dict:
    r = run_mifas("import", "--data-dir", data_dir, *paths, timeout=300)
    kv = parse_kv(r.stdout)
    assert r.returncode == 0 and kv.get("rejected") == "0", (
        f"mifas import failed rc={r.returncode}\nstdout={r.stdout}\nstderr={r.stderr[-3000:]}")
    return kv


class ServedArchive:
    """A `mifas serve` over a data dir filled by `mifas import`; `close()` checks that the server
    is still alive and exits 0 on SIGTERM (as conftest's factory does)."""

    def __init__(self, workdir: Path, files: list[Path], config: dict | None = None, name="find"):
        self.files = list(files)
        workdir = Path(workdir)
        data = workdir / "data"
        import_files(data, *sorted({p.parent for p in self.files}))
        self.server = MifasServer(workdir, config=config, data_dir=data, name=name).start()

    def close(self):
        s = self.server
        if s.proc is None:
            return
        if s.proc.poll() is not None:
            raise AssertionError(f"{s.name}: server died during the tests (exit code {s.proc.returncode})\n"
                                 f"{s.log_tail()}")
        rc = s.stop()
        assert rc == 0, f"{s.name}: exit code {rc} after SIGTERM\n{s.log_tail()}"
