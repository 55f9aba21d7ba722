#!/usr/bin/env python3
"""The one generator of benchmark data (pydicom; Explicit VR Little Endian, 512x512x16-bit).

  generate.py ct OUT [--count 1000] [--parts 4]
      the ingest corpus: single-frame CT Image Storage instances (~0.5 MB) of 10 patients x 1
      study x 2 series, written round-robin into OUT/part0 .. OUT/part{P-1} (one part per
      storescu of the 4-association run; OUT/ recursively for 1 association)
  generate.py study OUT [--count 500] [--series 2]
      the retrieve study: the same instances in ONE patient / study, split into series, flat in
      OUT/; also writes OUT.study (the Study Instance UID)
  generate.py multiframe OUT.dcm [--frames 1000]
      one Enhanced CT instance for the peak-RSS measurements; the frames are streamed to the file
      (memory stays at about one frame; 1000 frames = 524 MB of pixel data)
The C-FIND / ingest-scale data come from one catalog (bench/find/catalog.py, also the query
driver's oracle); its Part-10 files are written by the cargo example gen_part10 and its index
entries by bulk_index, from the same header code (bench/find/bench_catalog.rs).

ct and study write OUT.complete (a sibling, so storescu +sd never sees it) when done: the runners
regenerate when it is missing.
"""
import argparse
import datetime
import os
import struct
import sys

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, EnhancedCTImageStorage, ExplicitVRLittleEndian,
                         PYDICOM_IMPLEMENTATION_UID, generate_uid)

ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's UID root, fine for test data
ROWS = COLS = 512


def base_dataset(sop_class, charset, patient_name, patient_id, accession, study_uid, series_uid, series_no,
                 inst_no):
    sop_uid = generate_uid(prefix=ROOT)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = charset
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] + (["NONE"] if sop_class == EnhancedCTImageStorage else [])
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = datetime.date.today().strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = accession
    ds.Modality = "CT"
    ds.Manufacturer = "MIFAS bench"
    ds.ReferringPhysicianName = ""
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_no
    ds.InstanceNumber = inst_no
    ds.FrameOfReferenceUID = generate_uid(prefix=ROOT, entropy_srcs=[study_uid, "for"])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def ct_instance(rng, patient, study_uid, series_uid, series_no, inst_no):
    ds = base_dataset(CTImageStorage, "ISO_IR 192", f"Bench^Patient{patient:03d}^Zoë", f"BENCH{patient:04d}",
                      f"ACC{patient:04d}", study_uid, series_uid, series_no, inst_no)
    ds.StudyDescription = "Bench study"
    ds.SeriesDescription = f"Bench series {series_no}"
    ds.SliceThickness = "1.0"
    ds.KVP = "120"
    ds.StudyID = f"{patient}"
    ds.ImagePositionPatient = [-250.0, -250.0, float(inst_no)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceLocation = float(inst_no)
    ds.PixelSpacing = [0.5, 0.5]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.PixelData = rng.integers(0, 4096, size=(ROWS, COLS), dtype=np.uint16).tobytes()
    return ds


def done(out, line):
    with open(out.rstrip("/") + ".complete", "w") as f:
        f.write(line + "\n")


def gen_ct(a):
    for p in range(a.parts):
        os.makedirs(os.path.join(a.out, f"part{p}"), exist_ok=True)
    rng = np.random.default_rng(20240601)
    series = []  # (patient, study_uid, series_uid, series_no): 10 patients x 1 study x 2 series
    for pat in range(10):
        study = generate_uid(prefix=ROOT)
        series += [(pat, study, generate_uid(prefix=ROOT), s + 1) for s in range(2)]
    per_series = -(-a.count // len(series))
    written = 0
    for pat, study, ser, ser_no in series:
        for i in range(min(per_series, a.count - written)):
            path = os.path.join(a.out, f"part{written % a.parts}", f"ct{written:05d}.dcm")
            ct_instance(rng, pat, study, ser, ser_no, i + 1).save_as(path, enforce_file_format=True)
            written += 1
    done(a.out, str(written))
    print(f"corpus: {written} instances in {a.out}", file=sys.stderr)


def gen_study(a):
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(20261126)
    study = generate_uid(prefix=ROOT)
    series = [generate_uid(prefix=ROOT) for _ in range(a.series)]
    per_series = -(-a.count // a.series)
    for i in range(a.count):
        s = i // per_series
        ds = ct_instance(rng, 900, study, series[s], s + 1, i % per_series + 1)
        ds.PatientID = "RETRIEVE0001"
        ds.PatientName = "Bench^Retrieve"
        ds.AccessionNumber = "RETR0001"
        ds.StudyDescription = "Retrieve bench study"
        ds.save_as(os.path.join(a.out, f"ct{i:05d}.dcm"), enforce_file_format=True)
    with open(a.out.rstrip("/") + ".study", "w") as f:
        f.write(study + "\n")
    done(a.out, f"{a.count} {study}")
    print(f"study {study}: {a.count} instances in {a.out}", file=sys.stderr)


def gen_multiframe(a):
    ds = base_dataset(EnhancedCTImageStorage, "ISO_IR 100", "Bench^Multiframe", "BENCHBIG", "ACCBIG",
                      generate_uid(prefix=ROOT), generate_uid(prefix=ROOT), 1, 1)
    ds.StudyID = "1"
    ds.NumberOfFrames = a.frames
    total = ROWS * COLS * 2 * a.frames
    if total >= 0xFFFFFFFF:
        raise SystemExit("pixel data too large for a defined-length OW element")
    base = np.random.default_rng(7).integers(0, 4096, size=(ROWS, COLS), dtype=np.uint16)
    tmp = a.out + ".part"
    with open(tmp, "wb") as f:
        dcmwrite(f, ds, enforce_file_format=True)
        # (7FE0,0010) OW, explicit VR LE long form: tag, VR, 2 reserved bytes, 32-bit length
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, total))
        for i in range(a.frames):
            f.write(((base + i) & 0x0FFF).astype("<u2").tobytes())
    os.replace(tmp, a.out)
    print(f"multiframe: {a.frames} frames, {os.path.getsize(a.out)} bytes in {a.out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ct")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--parts", type=int, default=4)
    p = sub.add_parser("study")
    p.add_argument("out")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--series", type=int, default=2)
    p = sub.add_parser("multiframe")
    p.add_argument("out")
    p.add_argument("--frames", type=int, default=1000)
    a = ap.parse_args()
    {"ct": gen_ct, "study": gen_study, "multiframe": gen_multiframe}[a.cmd](a)


if __name__ == "__main__":
    main()
