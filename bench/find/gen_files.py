#!/usr/bin/env python3
"""Write the DICOM files of a catalog (bench/find/catalog.py) for the Orthanc / `mifas import` part.

Usage: gen_files.py CATALOG_DIR OUT_DIR [--parts 4] [--jobs 2]

One Part-10 file per instance (Explicit VR Little Endian), the same attributes as the bulk
loader's headers (bulk_index.rs) with tiny 8x8 16-bit pixel data (Rows/Columns 8), text in the
patient's character set. Series are spread round-robin over OUT_DIR/part0..part{P-1} (one folder
per storescu process). Writes OUT_DIR.complete (a sibling) when done.
"""
import argparse
import multiprocessing as mp
import os
import sys

from pydicom import config
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import catalog as cat  # noqa: E402

PIXELS = bytes(range(128))  # 8 x 8 x 16-bit
# value validation on every assignment costs more than the writing itself; values here are valid
config.settings.reading_validation_mode = config.IGNORE
config.settings.writing_validation_mode = config.IGNORE


def age(birth, date):
    a = int(date[:4]) - int(birth[:4])
    if int(date[4:]) < int(birth[4:]):
        a -= 1
    return f"{max(a, 0):03d}Y"


def build(p, st, se, n, sop):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = se["sop_class"]
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    if p["charset"]:
        ds.SpecificCharacterSet = p["charset"]
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceCreationDate = st["date"]
    ds.InstanceCreationTime = st["time"]
    ds.SOPClassUID = se["sop_class"]
    ds.SOPInstanceUID = sop
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = st["date"]
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = st["time"]
    ds.AccessionNumber = st["accession"]
    ds.Modality = se["modality"]
    ds.Manufacturer = "MIFAS Bench Imaging"
    ds.InstitutionName = "Hopital Universitaire de Bench"
    ds.InstitutionAddress = "1 Rue de la Radiologie, 4000 Liege"
    ds.ReferringPhysicianName = st["referring"]
    ds.StationName = se["modality"] + "01"
    ds.StudyDescription = st["description"]
    ds.SeriesDescription = se["description"]
    ds.InstitutionalDepartmentName = "Radiology"
    ds.OperatorsName = "TECH^ALEX"
    ds.ManufacturerModelName = "Benchmark 3000"
    ds.PatientName = p["name"]
    ds.PatientID = p["patient_id"]
    ds.IssuerOfPatientID = "BENCH-HOSP"
    ds.PatientBirthDate = p["birth_date"]
    ds.PatientSex = p["sex"]
    ds.PatientAge = age(p["birth_date"], st["date"])
    ds.PatientSize = "1.72"
    ds.PatientWeight = "74"
    ds.BodyPartExamined = se["body_part"]
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.DeviceSerialNumber = "SN-0042"
    ds.SoftwareVersions = "VB20A"
    ds.ProtocolName = st["description"]
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = st["study_uid"]
    ds.SeriesInstanceUID = se["series_uid"]
    ds.StudyID = st["study_id"]
    ds.SeriesNumber = se["number"]
    ds.AcquisitionNumber = "1"
    ds.InstanceNumber = str(n)
    z = f"{-100.0 + 2.5 * n:.1f}"
    ds.ImagePositionPatient = ["-250.0", "-250.0", z]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.FrameOfReferenceUID = cat.uid_from(f"{st['study_uid']}/for")
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = z
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 8
    ds.Columns = 8
    ds.PixelSpacing = ["0.7", "0.7"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    item = Dataset()
    item.RequestedProcedureID = "RP" + st["accession"]
    item.ScheduledProcedureStepID = "SPS" + st["accession"]
    item.RequestedProcedureDescription = st["description"]
    ds.RequestAttributesSequence = Sequence([item])
    ds.PixelData = PIXELS
    ds["PixelData"].VR = "OW"
    return ds


def work(args):
    catalog_dir, out, parts, job, jobs = args
    patients, studies, series = cat.load(catalog_dir)
    study = {s["study_uid"]: s for s in studies}
    n_written = 0
    for k, se in enumerate(series):
        if k % jobs != job:
            continue
        st = study[se["study_uid"]]
        p = patients[st["patient_idx"]]
        d = os.path.join(out, f"part{k % parts}")
        ds = None
        for n in range(1, cat.INSTANCES + 1):
            sop = cat.instance_uid(se["series_uid"], n)
            path = os.path.join(d, sop + ".dcm")
            if os.path.exists(path):
                continue
            if ds is None:
                ds = build(p, st, se, n, sop)
            else:  # same series: only the per-instance attributes change
                z = f"{-100.0 + 2.5 * n:.1f}"
                ds.file_meta.MediaStorageSOPInstanceUID = sop
                ds.SOPInstanceUID = sop
                ds.InstanceNumber = str(n)
                ds.ImagePositionPatient = ["-250.0", "-250.0", z]
                ds.SliceLocation = z
            ds.save_as(path + ".tmp", enforce_file_format=True)
            os.replace(path + ".tmp", path)
            n_written += 1
    return n_written


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("catalog")
    ap.add_argument("out")
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    for k in range(a.parts):
        os.makedirs(os.path.join(a.out, f"part{k}"), exist_ok=True)
    with mp.Pool(a.jobs) as pool:
        written = sum(pool.map(work, [(a.catalog, a.out, a.parts, j, a.jobs) for j in range(a.jobs)]))
    with open(a.out.rstrip("/") + ".complete", "w") as f:
        f.write("ok\n")
    print(f"gen_files: wrote {written} files under {a.out}")


if __name__ == "__main__":
    main()
