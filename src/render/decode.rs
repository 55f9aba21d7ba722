//! Part-10 bytes → the samples of one frame and what is needed to present them.
//!
//! Native (uncompressed) pixel data is sliced straight out of the parsed element: only the
//! requested frame is touched, and 16-bit samples parsed as OW words are used in place. Only
//! encapsulated pixel data goes through dicom-pixeldata's `decode_pixel_data_frame`, which
//! decodes that one frame's fragments.

use std::borrow::Cow;

use dicom_core::{PrimitiveValue, Tag, value::Value};
use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;

/// Why a stored object is drawn as the placeholder.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DrawError {
    #[error("not a DICOM file: {0}")]
    NotDicom(String),
    #[error("no pixel data")]
    NoPixelData,
    #[error("unsupported image: {0}")]
    Unsupported(String),
    #[error("cannot decode the pixel data: {0}")]
    Decode(String),
}

/// The samples of one frame, as stored (before rescale).
#[derive(Debug)]
pub(crate) enum Samples<'a> {
    U8(Cow<'a, [u8]>),
    U16(Cow<'a, [u16]>),
    U32(Vec<u32>),
}

/// One frame ready for presentation.
#[derive(Debug)]
pub(crate) struct Frame<'a> {
    pub rows: u32,
    pub cols: u32,
    pub samples_per_pixel: u16,
    pub bits_stored: u16,
    pub signed: bool,
    /// Photometric Interpretation after decoding (a codec that converts colour says RGB).
    pub photometric: String,
    /// Colour planes stored one after the other (Planar Configuration 1).
    pub planar: bool,
    pub samples: Samples<'a>,
}

/// Parse a whole Part-10 file (with or without its 128-byte preamble).
pub(crate) fn parse(file: &[u8]) -> Result<DefaultDicomObject, DrawError> {
    let body = if file.get(128..132) == Some(b"DICM") {
        &file[128..]
    } else {
        file
    };
    OpenFileOptions::new()
        .from_reader(body)
        .map_err(|e| DrawError::NotDicom(e.to_string()))
}

pub(crate) fn uint(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

pub(crate) fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_matches(['\0', ' ']).to_string())
}

/// Number of frames in the object: 0 when it has no pixel data.
pub(crate) fn frame_count(obj: &InMemDicomObject) -> u32 {
    if obj.get(tags::PIXEL_DATA).is_none() {
        return 0;
    }
    uint(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1)
}

/// The samples of frame `frame` (already clamped to the object's frames).
/// `max_size` lets a compressed frame decode at a reduced resolution (see [`super::reduced`]).
pub(crate) fn frame<'a>(
    obj: &'a DefaultDicomObject,
    frame: u32,
    max_size: Option<u32>,
) -> Result<Frame<'a>, DrawError> {
    let pixel_data = obj.get(tags::PIXEL_DATA).ok_or(DrawError::NoPixelData)?;
    let required = |tag: Tag, name: &str| {
        uint(obj, tag).ok_or_else(|| DrawError::Unsupported(format!("no {name}")))
    };
    let rows = required(tags::ROWS, "Rows")?;
    let cols = required(tags::COLUMNS, "Columns")?;
    let bits_allocated = required(tags::BITS_ALLOCATED, "Bits Allocated")? as u16;
    let samples_per_pixel = uint(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16;
    let bits_stored = uint(obj, tags::BITS_STORED).map_or(bits_allocated, |b| b as u16);
    let signed = uint(obj, tags::PIXEL_REPRESENTATION) == Some(1);
    let photometric =
        string(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".to_string());
    let planar = uint(obj, tags::PLANAR_CONFIGURATION) == Some(1);
    if rows == 0 || cols == 0 || !matches!(samples_per_pixel, 1 | 3) {
        return Err(DrawError::Unsupported(format!(
            "{rows}x{cols}, {samples_per_pixel} samples per pixel"
        )));
    }
    if bits_stored == 0 || bits_stored > bits_allocated || bits_stored > 32 {
        return Err(DrawError::Unsupported(format!(
            "{bits_stored} bits stored of {bits_allocated}"
        )));
    }
    let pixels = rows as usize * cols as usize;

    match pixel_data.value() {
        Value::PixelSequence(_) => {
            let stored = super::reduced::Stored {
                obj,
                frame,
                rows,
                cols,
                samples_per_pixel,
                bits_stored,
                signed,
                photometric: &photometric,
            };
            match super::reduced::frame(&stored, max_size) {
                Some(reduced) => Ok(reduced),
                None => encapsulated(obj, frame, bits_stored, signed),
            }
        }
        Value::Primitive(value) => {
            // YBR_FULL_422 native: two luma samples share one chroma pair (4 bytes / 2 pixels).
            if photometric == "YBR_FULL_422" && bits_allocated == 8 {
                let bytes = value.to_bytes();
                let len = pixels * 2;
                let start = frame as usize * len;
                let data = bytes
                    .get(start..start + len)
                    .ok_or_else(|| DrawError::Decode(format!("frame {frame} past the data")))?;
                return Ok(Frame {
                    rows,
                    cols,
                    samples_per_pixel: 3,
                    bits_stored: 8,
                    signed: false,
                    photometric: "YBR_FULL".into(),
                    planar: false,
                    samples: Samples::U8(Cow::Owned(upsample_422(data, cols as usize))),
                });
            }
            let count = pixels * samples_per_pixel as usize;
            let samples = native_samples(value, bits_allocated, frame as usize, count)?;
            Ok(Frame {
                rows,
                cols,
                samples_per_pixel,
                bits_stored,
                signed,
                photometric,
                planar,
                samples,
            })
        }
        Value::Sequence(_) => Err(DrawError::Decode("pixel data is a sequence".into())),
    }
}

/// Slice `count` samples of frame `frame` out of native pixel data.
fn native_samples<'a>(
    value: &'a PrimitiveValue,
    bits_allocated: u16,
    frame: usize,
    count: usize,
) -> Result<Samples<'a>, DrawError> {
    let past = || DrawError::Decode(format!("frame {frame} past the end of the pixel data"));
    match (bits_allocated, value) {
        (16, PrimitiveValue::U16(words)) => words
            .get(frame * count..(frame + 1) * count)
            .map(|s| Samples::U16(Cow::Borrowed(s)))
            .ok_or_else(past),
        (8, PrimitiveValue::U8(bytes)) => bytes
            .get(frame * count..(frame + 1) * count)
            .map(|s| Samples::U8(Cow::Borrowed(s)))
            .ok_or_else(past),
        (1, _) => {
            // Bit-packed frames start at bit frame*count, not necessarily on a byte.
            let bytes = value.to_bytes();
            let first = frame * count;
            if bytes.len() * 8 < first + count {
                return Err(past());
            }
            let bits = (first..first + count)
                .map(|i| ((bytes[i / 8] >> (i % 8)) & 1) * 255)
                .collect();
            Ok(Samples::U8(Cow::Owned(bits)))
        }
        (8 | 16 | 32, _) => {
            let width = bits_allocated as usize / 8;
            let bytes = value.to_bytes();
            let data = bytes
                .get(frame * count * width..(frame + 1) * count * width)
                .ok_or_else(past)?;
            Ok(from_le_bytes(data, bits_allocated))
        }
        _ => Err(DrawError::Unsupported(format!(
            "{bits_allocated} bits allocated"
        ))),
    }
}

fn from_le_bytes(data: &[u8], bits_allocated: u16) -> Samples<'static> {
    match bits_allocated {
        8 => Samples::U8(Cow::Owned(data.to_vec())),
        16 => Samples::U16(Cow::Owned(
            data.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )),
        _ => Samples::U32(
            data.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
    }
}

/// Decode one frame of encapsulated pixel data with the registered codec.
fn encapsulated(
    obj: &DefaultDicomObject,
    frame: u32,
    bits_stored: u16,
    signed: bool,
) -> Result<Frame<'static>, DrawError> {
    let decoded = obj
        .decode_pixel_data_frame(frame)
        .map_err(|e| DrawError::Decode(e.to_string()))?;
    let bits_allocated = decoded.bits_allocated();
    if !matches!(bits_allocated, 8 | 16 | 32) {
        return Err(DrawError::Unsupported(format!(
            "{bits_allocated} bits allocated after decoding"
        )));
    }
    let samples_per_pixel = decoded.samples_per_pixel();
    let (rows, cols) = (decoded.rows(), decoded.columns());
    let expected =
        rows as usize * cols as usize * samples_per_pixel as usize * (bits_allocated as usize / 8);
    let data = decoded.data();
    if data.len() < expected {
        return Err(DrawError::Decode(format!(
            "codec gave {} bytes, the frame needs {expected}",
            data.len()
        )));
    }
    Ok(Frame {
        rows,
        cols,
        samples_per_pixel,
        bits_stored: bits_stored.min(bits_allocated),
        signed,
        photometric: decoded.photometric_interpretation().as_str().to_string(),
        planar: decoded.planar_configuration() == dicom_pixeldata::PlanarConfiguration::PixelFirst
            && samples_per_pixel > 1,
        samples: from_le_bytes(&data[..expected], bits_allocated),
    })
}

/// YBR_FULL_422 (Y1 Y2 Cb Cr per pixel pair) to YBR_FULL (Y Cb Cr per pixel).
fn upsample_422(data: &[u8], cols: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 * 3);
    let mut x = 0;
    for quad in data.chunks_exact(4) {
        let [y1, y2, cb, cr] = [quad[0], quad[1], quad[2], quad[3]];
        out.extend_from_slice(&[y1, cb, cr]);
        x += 1;
        // An odd row width leaves the second luma of a pair unused at the row's end.
        if x < cols {
            out.extend_from_slice(&[y2, cb, cr]);
            x += 1;
        }
        if x >= cols {
            x = 0;
        }
    }
    out
}
