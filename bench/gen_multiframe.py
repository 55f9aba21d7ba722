#!/usr/bin/env python3
"""Generate one large multi-frame instance for the peak-RSS measurement.

Enhanced CT Image Storage, FRAMES x 512 x 512 x 16-bit, Explicit VR Little
Endian. The header is written with pydicom; the Pixel Data element header and
the frames are then streamed to the file one frame at a time, so memory use
stays at about one frame whatever the size (default 1000 frames = 524 MB of
pixel data).

Usage: gen_multiframe.py OUT.dcm [--frames 1000]
"""
import argparse
import datetime
import os
import struct

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

ROOT = "1.2.826.0.1.3680043.8.498."
ROWS = COLS = 512


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--frames", type=int, default=1000)
    args = ap.parse_args()

    sop_uid = generate_uid(prefix=ROOT)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.SOPClassUID = EnhancedCTImageStorage
    ds.SOPInstanceUID = sop_uid
    today = datetime.date.today().strftime("%Y%m%d")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
    ds.AccessionNumber = "ACCBIG"
    ds.Modality = "CT"
    ds.Manufacturer = "MIFAS bench"
    ds.ReferringPhysicianName = ""
    ds.PatientName = "Bench^Multiframe"
    ds.PatientID = "BENCHBIG"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid(prefix=ROOT)
    ds.SeriesInstanceUID = generate_uid(prefix=ROOT)
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.FrameOfReferenceUID = generate_uid(prefix=ROOT)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = args.frames
    ds.Rows = ROWS
    ds.Columns = COLS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0

    frame_bytes = ROWS * COLS * 2
    total = frame_bytes * args.frames
    if total >= 0xFFFFFFFF:
        raise SystemExit("pixel data too large for a defined-length OW element")

    rng = np.random.default_rng(7)
    base = rng.integers(0, 4096, size=(ROWS, COLS), dtype=np.uint16)
    tmp = args.out + ".part"
    with open(tmp, "wb") as f:
        dcmwrite(f, ds, enforce_file_format=True)
        # (7FE0,0010) OW, explicit VR LE long form: tag, VR, 2 reserved bytes, 32-bit length
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, total))
        for i in range(args.frames):
            f.write(((base + i) & 0x0FFF).astype("<u2").tobytes())
    os.replace(tmp, args.out)
    print(f"multiframe: {args.frames} frames, {os.path.getsize(args.out)} bytes in {args.out}")


if __name__ == "__main__":
    main()
