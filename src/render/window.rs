//! Stored samples → 8-bit display values: rescale (modality LUT), VOI (window, VOI LUT,
//! min–max), MONOCHROME1 inversion, palette colour and YBR → RGB.
//!
//! Grey images go through one table lookup per pixel: the table covers only the stored values
//! the frame actually uses (min..=max), so a 12-bit CT builds a few thousand entries, not 65536,
//! and each entry pays for the floating-point rescale and window once.

use dicom_core::{PrimitiveValue, Tag, value::Value};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::decode::{DrawError, Frame, Samples};
use super::{Window, scale};

/// An 8-bit image, interleaved, 1 (grey) or 3 (RGB) channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image8 {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

/// The VOI transformation chosen for a grey frame.
#[derive(Debug, Clone)]
enum Voi {
    Linear(Window),
    LinearExact(Window),
    Sigmoid(Window),
    /// VOI LUT Sequence: entries for modality values first, first+1, ...; `bits` per entry.
    Lut {
        first: f64,
        bits: u32,
        data: Vec<u16>,
    },
    /// No window anywhere: stretch the frame's own value range.
    MinMax,
}

impl Voi {
    /// Modality value → display fraction 0..=1 (PS3.3 C.11.2.1.2 for the window functions).
    fn apply(&self, m: f64, lo: f64, hi: f64) -> f64 {
        match self {
            Voi::Linear(Window { center, width }) => {
                let (c, w) = (*center, width.max(1.0));
                if w <= 1.0 {
                    return if m <= c - 0.5 { 0.0 } else { 1.0 };
                }
                (m - (c - 0.5)) / (w - 1.0) + 0.5
            }
            Voi::LinearExact(Window { center, width }) => (m - center) / width.max(1e-9) + 0.5,
            Voi::Sigmoid(Window { center, width }) => {
                1.0 / (1.0 + (-4.0 * (m - center) / width.max(1e-9)).exp())
            }
            Voi::Lut { first, bits, data } => {
                let last = data.len().saturating_sub(1);
                let index = (m.round() - first).clamp(0.0, last as f64) as usize;
                let max = ((1u64 << (*bits).clamp(1, 16)) - 1) as f64;
                data.get(index).map_or(0.0, |&v| f64::from(v) / max)
            }
            Voi::MinMax => {
                if hi > lo {
                    (m - lo) / (hi - lo)
                } else {
                    0.0
                }
            }
        }
    }
}

/// Look an attribute up at the top level, else in the frame's functional group `group`
/// (Per-frame, then Shared): enhanced multi-frame objects keep rescale and window there.
fn attr(obj: &InMemDicomObject, frame: u32, group: Tag, tag: Tag) -> Option<&InMemElement> {
    if let Some(e) = obj.get(tag) {
        return Some(e);
    }
    fn in_group(fg: &InMemDicomObject, group: Tag, tag: Tag) -> Option<&InMemElement> {
        fg.get(group)?.items()?.first()?.get(tag)
    }
    let per_frame = obj
        .get(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .and_then(|s| s.items())
        .and_then(|items| items.get(frame as usize))
        .and_then(|fg| in_group(fg, group, tag));
    per_frame.or_else(|| {
        obj.get(tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)?
            .items()?
            .first()
            .and_then(|fg| in_group(fg, group, tag))
    })
}

fn first_float(e: Option<&InMemElement>) -> Option<f64> {
    e.and_then(|e| e.to_multi_float64().ok())
        .and_then(|v| v.first().copied())
        .filter(|v| v.is_finite())
}

/// Rescale slope and intercept of frame `frame` (1, 0 when absent).
fn rescale(obj: &InMemDicomObject, frame: u32) -> (f64, f64) {
    let group = tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE;
    let slope = first_float(attr(obj, frame, group, tags::RESCALE_SLOPE))
        .filter(|s| *s != 0.0)
        .unwrap_or(1.0);
    let intercept = first_float(attr(obj, frame, group, tags::RESCALE_INTERCEPT)).unwrap_or(0.0);
    (slope, intercept)
}

/// The object's VOI: the first Window Center/Width, else the first VOI LUT, else min–max.
fn object_voi(obj: &InMemDicomObject, frame: u32) -> Voi {
    let group = tags::FRAME_VOILUT_SEQUENCE;
    let center = first_float(attr(obj, frame, group, tags::WINDOW_CENTER));
    let width = first_float(attr(obj, frame, group, tags::WINDOW_WIDTH)).filter(|w| *w > 0.0);
    if let (Some(center), Some(width)) = (center, width) {
        let window = Window { center, width };
        let function = attr(obj, frame, group, tags::VOILUT_FUNCTION)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_ascii_uppercase());
        return match function.as_deref() {
            Some("LINEAR_EXACT") => Voi::LinearExact(window),
            Some("SIGMOID") => Voi::Sigmoid(window),
            _ => Voi::Linear(window),
        };
    }
    voi_lut(obj).unwrap_or(Voi::MinMax)
}

fn voi_lut(obj: &InMemDicomObject) -> Option<Voi> {
    let item = obj.get(tags::VOILUT_SEQUENCE)?.items()?.first()?;
    let descriptor: Vec<i64> = item.get(tags::LUT_DESCRIPTOR)?.to_multi_int().ok()?;
    let (first, bits) = (*descriptor.get(1)?, *descriptor.get(2)?);
    let data = words(item.get(tags::LUT_DATA)?);
    (!data.is_empty()).then_some(Voi::Lut {
        first: first as f64,
        bits: bits.clamp(1, 16) as u32,
        data,
    })
}

/// LUT data as 16-bit entries, whatever VR it was parsed with.
fn words(e: &InMemElement) -> Vec<u16> {
    match e.value() {
        Value::Primitive(PrimitiveValue::U16(w)) => w.to_vec(),
        Value::Primitive(PrimitiveValue::U8(b)) => b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect(),
        _ => e.to_multi_int::<u16>().unwrap_or_default(),
    }
}

/// Present one frame as 8 bits. `explicit` (from the request) replaces the object's VOI.
pub(crate) fn present(
    obj: &InMemDicomObject,
    frame_number: u32,
    frame: &Frame<'_>,
    explicit: Option<Window>,
    max_size: Option<u32>,
) -> Result<Image8, DrawError> {
    if frame.samples_per_pixel == 3 {
        return Ok(color(frame));
    }
    if frame.photometric == "PALETTE COLOR" {
        return palette(obj, frame);
    }
    let voi = match explicit {
        Some(window) => Voi::Linear(window),
        None => object_voi(obj, frame_number),
    };
    let invert = frame.photometric == "MONOCHROME1";
    let rescale = rescale(obj, frame_number);
    // Shrink the stored values first, then window the (smaller) result.
    if let Some(small) = shrunk(frame, max_size) {
        return Ok(grey(&small, rescale, &voi, invert));
    }
    Ok(grey(frame, rescale, &voi, invert))
}

/// A grey frame box-shrunk to fit `max_size`, as signed 32-bit values (`None`: it fits).
fn shrunk(frame: &Frame<'_>, max_size: Option<u32>) -> Option<Frame<'static>> {
    scale::fit(frame.cols, frame.rows, max_size)
        .ne(&(frame.cols, frame.rows))
        .then_some(())?;
    let shift = 32 - u32::from(frame.bits_stored.min(32));
    let values: Vec<i32> = match &frame.samples {
        Samples::U8(s) => s
            .iter()
            .map(|&v| normalize(u32::from(v), shift, frame.signed) as i32)
            .collect(),
        Samples::U16(s) => s
            .iter()
            .map(|&v| normalize(u32::from(v), shift, frame.signed) as i32)
            .collect(),
        Samples::U32(s) => s
            .iter()
            .map(|&v| normalize(v, shift, frame.signed) as i32)
            .collect(),
    };
    let (values, cols, rows) = scale::shrink_values(&values, frame.cols, frame.rows, max_size)?;
    Some(Frame {
        rows,
        cols,
        samples_per_pixel: 1,
        bits_stored: 32,
        signed: true,
        photometric: frame.photometric.clone(),
        planar: false,
        samples: Samples::U32(values.into_iter().map(|v| v as u32).collect()),
    })
}

/// Stored sample → signed value, keeping only `bits_stored` bits (sign-extended when signed).
#[inline(always)]
fn normalize(sample: u32, shift: u32, signed: bool) -> i64 {
    if signed {
        i64::from(((sample << shift) as i32) >> shift)
    } else {
        i64::from((sample << shift) >> shift)
    }
}

fn grey(frame: &Frame<'_>, (slope, intercept): (f64, f64), voi: &Voi, invert: bool) -> Image8 {
    let shift = 32 - u32::from(frame.bits_stored.min(32));
    let data = match &frame.samples {
        Samples::U8(s) => grey_samples(s, shift, frame.signed, slope, intercept, voi, invert),
        Samples::U16(s) => grey_samples(s, shift, frame.signed, slope, intercept, voi, invert),
        Samples::U32(s) => grey_samples(s, shift, frame.signed, slope, intercept, voi, invert),
    };
    Image8 {
        width: frame.cols,
        height: frame.rows,
        channels: 1,
        data,
    }
}

fn grey_samples<T: Copy + Into<u32>>(
    samples: &[T],
    shift: u32,
    signed: bool,
    slope: f64,
    intercept: f64,
    voi: &Voi,
    invert: bool,
) -> Vec<u8> {
    let (mut min, mut max) = (i64::MAX, i64::MIN);
    for &s in samples {
        let v = normalize(s.into(), shift, signed);
        min = min.min(v);
        max = max.max(v);
    }
    if samples.is_empty() {
        return Vec::new();
    }
    let m = |v: i64| v as f64 * slope + intercept;
    let (lo, hi) = (m(min).min(m(max)), m(min).max(m(max)));
    let display = |v: i64| {
        let y = (voi.apply(m(v), lo, hi).clamp(0.0, 1.0) * 255.0).round() as u8;
        if invert { 255 - y } else { y }
    };
    let span = (max - min) as usize;
    if span < samples.len().max(1 << 16) {
        let lut: Vec<u8> = (min..=max).map(display).collect();
        samples
            .iter()
            .map(|&s| lut[(normalize(s.into(), shift, signed) - min) as usize])
            .collect()
    } else {
        samples
            .iter()
            .map(|&s| display(normalize(s.into(), shift, signed)))
            .collect()
    }
}

/// Three samples per pixel → interleaved 8-bit RGB.
fn color(frame: &Frame<'_>) -> Image8 {
    let down = u32::from(frame.bits_stored.saturating_sub(8));
    let bytes: Vec<u8> = match &frame.samples {
        Samples::U8(s) => s.to_vec(),
        Samples::U16(s) => s.iter().map(|&v| (u32::from(v) >> down) as u8).collect(),
        Samples::U32(s) => s.iter().map(|&v| (v >> down) as u8).collect(),
    };
    let pixels = frame.rows as usize * frame.cols as usize;
    let mut data = if frame.planar {
        let mut out = Vec::with_capacity(pixels * 3);
        for i in 0..pixels {
            for plane in 0..3 {
                out.push(bytes.get(plane * pixels + i).copied().unwrap_or(0));
            }
        }
        out
    } else {
        bytes
    };
    data.resize(pixels * 3, 0);
    if frame.photometric == "YBR_FULL" {
        for px in data.chunks_exact_mut(3) {
            let (y, cb, cr) = (
                f32::from(px[0]),
                f32::from(px[1]) - 128.0,
                f32::from(px[2]) - 128.0,
            );
            px[0] = (y + 1.402 * cr).round().clamp(0.0, 255.0) as u8;
            px[1] = (y - 0.344_136 * cb - 0.714_136 * cr)
                .round()
                .clamp(0.0, 255.0) as u8;
            px[2] = (y + 1.772 * cb).round().clamp(0.0, 255.0) as u8;
        }
    }
    Image8 {
        width: frame.cols,
        height: frame.rows,
        channels: 3,
        data,
    }
}

/// One palette channel: first stored value mapped, entries scaled to 8 bits.
struct Channel {
    first: i64,
    entries: Vec<u8>,
}

fn channel(obj: &InMemDicomObject, descriptor: Tag, data: Tag) -> Option<Channel> {
    let d: Vec<i64> = obj.get(descriptor)?.to_multi_int().ok()?;
    let (count, first, bits) = (*d.first()?, *d.get(1)?, *d.get(2)?);
    let count = if count == 0 { 65536 } else { count as usize };
    let element = obj.get(data)?;
    let raw: Vec<u16> = match element.value() {
        // 8-bit entries stored one per byte.
        Value::Primitive(PrimitiveValue::U8(b)) if bits == 8 && b.len() >= count => {
            b.iter().map(|&v| u16::from(v)).collect()
        }
        _ => words(element),
    };
    let entries: Vec<u8> = raw
        .iter()
        .take(count)
        .map(|&v| {
            if bits > 8 || v > 255 {
                (v >> 8) as u8
            } else {
                v as u8
            }
        })
        .collect();
    (!entries.is_empty()).then_some(Channel { first, entries })
}

fn palette(obj: &InMemDicomObject, frame: &Frame<'_>) -> Result<Image8, DrawError> {
    let missing = || DrawError::Unsupported("PALETTE COLOR without usable palette tables".into());
    let red = channel(
        obj,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )
    .ok_or_else(missing)?;
    let green = channel(
        obj,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )
    .ok_or_else(missing)?;
    let blue = channel(
        obj,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
        tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    )
    .ok_or_else(missing)?;
    let shift = 32 - u32::from(frame.bits_stored.min(32));
    let look = |c: &Channel, v: i64| {
        let i = (v - c.first).clamp(0, c.entries.len() as i64 - 1) as usize;
        c.entries[i]
    };
    let mut data = Vec::with_capacity(frame.rows as usize * frame.cols as usize * 3);
    let mut push = |s: u32| {
        let v = normalize(s, shift, false);
        data.extend_from_slice(&[look(&red, v), look(&green, v), look(&blue, v)]);
    };
    match &frame.samples {
        Samples::U8(s) => s.iter().for_each(|&v| push(u32::from(v))),
        Samples::U16(s) => s.iter().for_each(|&v| push(u32::from(v))),
        Samples::U32(s) => s.iter().for_each(|&v| push(v)),
    }
    Ok(Image8 {
        width: frame.cols,
        height: frame.rows,
        channels: 3,
        data,
    })
}
