#!/usr/bin/env python3
"""Generate the ingest benchmark corpus.

N single-frame CT Image Storage instances, 512x512, 16-bit, Explicit VR Little
Endian (~0.5 MB each), spread over patients/studies/series, written round-robin
into OUT/part0 .. OUT/part{P-1} so that the 4-association run can send one part
per storescu process and the 1-association run sends OUT/ recursively.

Usage: gen_corpus.py OUT [--count 1000] [--parts 4]
Writes OUT.complete (a sibling file, so storescu +sd never sees it) when done (the runner regenerates if it is missing).
"""
import argparse
import datetime
import os
import sys

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root, fine for test data

ROWS = COLS = 512
PATIENTS = 10
STUDIES_PER_PATIENT = 1
SERIES_PER_STUDY = 2


def make_instance(rng, patient, study_uid, series_uid, series_no, inst_no):
    sop_uid = generate_uid(prefix=ROOT)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    today = datetime.date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = f"ACC{patient:04d}"
    ds.Modality = "CT"
    ds.Manufacturer = "MIFAS bench"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Bench study"
    ds.SeriesDescription = f"Bench series {series_no}"
    ds.PatientName = f"Bench^Patient{patient:03d}^Zoë"
    ds.PatientID = f"BENCH{patient:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{patient}"
    ds.SeriesNumber = series_no
    ds.InstanceNumber = inst_no
    ds.ImagePositionPatient = [-250.0, -250.0, float(inst_no)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = generate_uid(prefix=ROOT, entropy_srcs=[study_uid, "for"])
    ds.SliceLocation = float(inst_no)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.PixelSpacing = [0.5, 0.5]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.PixelData = rng.integers(0, 4096, size=(ROWS, COLS), dtype=np.uint16).tobytes()
    return ds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--parts", type=int, default=4)
    args = ap.parse_args()

    os.makedirs(args.out, exist_ok=True)
    for p in range(args.parts):
        os.makedirs(os.path.join(args.out, f"part{p}"), exist_ok=True)
    rng = np.random.default_rng(20240601)

    series = []  # (patient, study_uid, series_uid, series_no)
    for pat in range(PATIENTS):
        for _ in range(STUDIES_PER_PATIENT):
            study = generate_uid(prefix=ROOT)
            for s in range(SERIES_PER_STUDY):
                series.append((pat, study, generate_uid(prefix=ROOT), s + 1))
    per_series = -(-args.count // len(series))

    written = 0
    for pat, study, ser, ser_no in series:
        for i in range(per_series):
            if written >= args.count:
                break
            ds = make_instance(rng, pat, study, ser, ser_no, i + 1)
            part = written % args.parts
            path = os.path.join(args.out, f"part{part}", f"ct{written:05d}.dcm")
            ds.save_as(path, enforce_file_format=True)
            written += 1
    with open(args.out.rstrip("/") + ".complete", "w") as f:
        f.write(f"{written}\n")
    print(f"corpus: {written} instances in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
