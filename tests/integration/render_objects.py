"""Images for the renderer's tests and benchmark (issue 10): smooth phantoms (a scaled thumbnail
is compared with DCMTK's, and random noise would measure the two scaling filters, not the
rendering), written as Part-10 files in the modalities and codecs the portal meets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, generate_uid

from dicom_fixtures import write_part10

ROOT = "1.2.826.0.1.3680043.8.498."
CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
US = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

# label -> (description, dcmj2pnm VOI options giving the same window as MIFAS' default)
OBJECTS = {
    "ct": ("CT 512x512 16-bit (12 stored), rescale -1024, window 40/400", ["+Wi", "1"]),
    "mr": ("MR 256x256 16-bit, no window (min-max)", ["+Wm"]),
    "us_rgb": ("US 640x480 RGB 8-bit", []),
    "ct_j2k": ("the CT, JPEG 2000 lossless", ["+Wi", "1"]),
    "us_jpeg_mf": ("US 640x480 RGB, 20 frames, JPEG baseline (dcmcjpeg)", []),
}


def _base(tag: str, label: str, sop_class: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(ROOT, [tag, label, "i"])
    ds.StudyInstanceUID = generate_uid(ROOT, [tag, "st"])
    ds.SeriesInstanceUID = generate_uid(ROOT, [tag, label, "se"])
    ds.PatientID = f"{tag}-RENDER"
    ds.PatientName = "RENDER^PHANTOM"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    return ds


def ct_hu(rows: int = 512, cols: int = 512, seed: int = 1) -> np.ndarray:
    """A body disc of soft tissue with a bone ring, two lungs and gentle noise, in HU."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = rows / 2, cols / 2
    r = np.hypot((y - cy) / (rows * 0.42), (x - cx) / (cols * 0.45))
    hu = np.full((rows, cols), -1000.0)
    hu[r < 1.0] = 40.0 + 30.0 * (x[r < 1.0] - cx) / cols
    hu[(r > 0.86) & (r < 0.93)] = 900.0
    for side in (-1, 1):
        lung = np.hypot((y - cy) / (rows * 0.22), (x - cx - side * cols * 0.18) / (cols * 0.12)) < 1.0
        hu[lung] = -750.0
    hu += np.random.default_rng(seed).normal(0.0, 8.0, size=hu.shape)
    return hu


def make_ct(tag: str) -> Dataset:
    ds = _base(tag, "ct", CT, "CT")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = 512, 512
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.WindowCenter, ds.WindowWidth = 40, 400
    stored = np.clip(np.round(ct_hu() + 1024), 0, 4095).astype(np.uint16)
    ds.PixelData = stored.tobytes()
    return ds


def make_mr(tag: str) -> Dataset:
    ds = _base(tag, "mr", MR, "MR")
    rows = cols = 256
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    r = np.hypot(y - rows / 2, x - cols / 2) / (rows * 0.45)
    img = np.where(r < 1.0, 1800.0 * (1.0 - 0.5 * r**2) + 400.0 * np.sin(x / 9.0), 20.0)
    img += np.random.default_rng(2).normal(0.0, 10.0, size=img.shape)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelSpacing = [1.0, 1.0]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.clip(np.round(img), 0, 65535).astype(np.uint16).tobytes()
    return ds


def us_frames(frames: int, rows: int = 480, cols: int = 640) -> np.ndarray:
    """Smooth colour fields (a sector fan in warm tones), one shift per frame."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    out = np.empty((frames, rows, cols, 3), dtype=np.uint8)
    for f in range(frames):
        fan = np.clip(180.0 - np.hypot(y - 20, x - cols / 2) / 3.0 + 40.0 * np.sin((x + 8 * f) / 40.0), 0, 255)
        out[f, ..., 0] = fan
        out[f, ..., 1] = np.clip(fan * 0.8 + y / 8.0, 0, 255)
        out[f, ..., 2] = np.clip(255.0 * x / cols, 0, 255)
    return out


def _rgb(ds: Dataset, pixels: np.ndarray) -> Dataset:
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[-3], pixels.shape[-2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    return ds


def make_objects(outdir: Path, tag: str = "render") -> dict[str, Path]:
    """Write every object of OBJECTS into `outdir`; label -> path."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    ct = make_ct(tag)
    paths["ct"] = write_part10(ct, outdir / "ct.dcm")
    paths["mr"] = write_part10(make_mr(tag), outdir / "mr.dcm")
    paths["us_rgb"] = write_part10(_rgb(_base(tag, "us", US, "US"), us_frames(1)[0]), outdir / "us_rgb.dcm")

    j2k = pydicom.dcmread(paths["ct"])
    j2k.SOPInstanceUID = generate_uid(ROOT, [tag, "ct_j2k", "i"])
    j2k.file_meta.MediaStorageSOPInstanceUID = j2k.SOPInstanceUID
    j2k.compress(JPEG2000Lossless)
    paths["ct_j2k"] = outdir / "ct_j2k.dcm"
    j2k.save_as(paths["ct_j2k"], enforce_file_format=True)

    mf = _rgb(_base(tag, "us_mf", US_MULTIFRAME, "US"), us_frames(20))
    mf.NumberOfFrames = 20
    mf.FrameIncrementPointer = 0x00181063
    mf.FrameTime = 33.3
    native = write_part10(mf, outdir / "us_mf_native.dcm")
    paths["us_jpeg_mf"] = outdir / "us_jpeg_mf.dcm"
    # DCMTK's encoder: JPEG baseline (process 1), YCbCr 4:2:2 (YBR_FULL_422).
    subprocess.run(["dcmcjpeg", "+eb", str(native), str(paths["us_jpeg_mf"])],
                   check=True, capture_output=True, timeout=120)
    return paths


def read_pnm(data: bytes) -> np.ndarray:
    """A binary PGM (P5) or PPM (P6) as written by dcmj2pnm: rows x cols [x 3], 8-bit."""
    parts = data.split(maxsplit=4)
    magic, cols, rows, maxval, body = parts[0], int(parts[1]), int(parts[2]), int(parts[3]), parts[4]
    assert maxval == 255, maxval
    channels = 3 if magic == b"P6" else 1
    return np.frombuffer(body[: rows * cols * channels], dtype=np.uint8).reshape(
        (rows, cols, channels) if channels == 3 else (rows, cols))


def read_png(data: bytes) -> np.ndarray:
    """An 8-bit grey or RGB, non-interlaced PNG (what MIFAS writes), without Pillow."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and interlace == 0 and colour in (0, 2), header
    bpp = 3 if colour == 2 else 1
    raw = zlib.decompress(idat)
    stride = width * bpp
    out = np.zeros((height, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for row in range(height):
        start = row * (stride + 1)
        kind, line = raw[start], np.frombuffer(raw[start + 1:start + 1 + stride], dtype=np.uint8).astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 0:
                p = 0
            elif kind == 1:
                p = a
            elif kind == 2:
                p = b
            elif kind == 3:
                p = (a + b) // 2
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + p) & 0xFF
        out[row] = cur
        prev = cur
    img = out.astype(np.uint8)
    return img.reshape(height, width, 3) if bpp == 3 else img
