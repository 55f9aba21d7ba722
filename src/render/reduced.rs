//! Decoding a compressed frame at reduced resolution when only a thumbnail is wanted: JPEG 2000
//! decodes only the wavelet levels it needs (openjpeg's `reduce`), JPEG baseline scales in the
//! IDCT (1/2, 1/4, 1/8). The frame then has the reduced size; the box filter does the rest.
//! Anything unusual (other codecs, 16-bit JPEG, a decoder error) answers `None`, and the caller
//! decodes the full frame through dicom-pixeldata as before.

use std::borrow::Cow;
use std::io::Cursor;

use dicom_encoding::adapters::PixelDataObject;
use dicom_object::DefaultDicomObject;
use jpeg_decoder::{Decoder, PixelFormat};

use super::decode::{Frame, Samples};
use super::scale::fit;

const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
const JPEG_2000_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
const JPEG_2000: &str = "1.2.840.10008.1.2.4.91";

/// The attributes of the stored frame the reduced decoders need.
pub(crate) struct Stored<'a> {
    pub obj: &'a DefaultDicomObject,
    pub frame: u32,
    pub rows: u32,
    pub cols: u32,
    pub samples_per_pixel: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: &'a str,
}

/// The frame decoded at a resolution still at least `max_size` on its longest side, if the
/// transfer syntax allows it and it is worth it (at least half the stored size).
pub(crate) fn frame(stored: &Stored<'_>, max_size: Option<u32>) -> Option<Frame<'static>> {
    let max = max_size?;
    if stored.rows.max(stored.cols) < 2 * max {
        return None;
    }
    let ts = stored.obj.meta().transfer_syntax();
    let ts = ts.trim_end_matches('\0');
    let data = stored.obj.frame_pixel_data(stored.frame)?;
    match ts {
        JPEG_2000 | JPEG_2000_LOSSLESS => jpeg2000(stored, &data, max),
        JPEG_BASELINE => jpeg(stored, &data, max),
        _ => None,
    }
}

fn jpeg2000(stored: &Stored<'_>, data: &[u8], max: u32) -> Option<Frame<'static>> {
    // Each level halves the size; keep the longest side at or above twice `max`, so the box
    // filter still averages 2x2 of the low-pass band (one level further saves half the time
    // but leaves visibly more noise and ringing than a box average).
    let mut reduce = 0;
    while (stored.rows.max(stored.cols) >> (reduce + 1)) >= 2 * max {
        reduce += 1;
    }
    let params = jpeg2k::DecodeParameters::new().reduce(reduce);
    let image = jpeg2k::Image::from_bytes_with(data, params).ok()?;
    let components = image.components();
    let first = components.first()?;
    let (width, height) = (first.width(), first.height());
    let pixels = width as usize * height as usize;
    let wanted = usize::from(stored.samples_per_pixel);
    if components.len() < wanted
        || components[..wanted]
            .iter()
            .any(|c| c.width() != width || c.height() != height || c.data().len() < pixels)
    {
        return None;
    }
    // The codec gives signed values as i32; keeping the low bits lets `normalize` sign-extend.
    let samples: Vec<u16> = if wanted == 1 {
        first.data()[..pixels].iter().map(|&v| v as u16).collect()
    } else {
        let planes: Vec<&[i32]> = components[..3].iter().map(|c| c.data()).collect();
        (0..pixels)
            .flat_map(|i| planes.iter().map(move |p| p[i] as u16))
            .collect()
    };
    let bits_stored = stored.bits_stored.min(16);
    Some(Frame {
        rows: height,
        cols: width,
        samples_per_pixel: stored.samples_per_pixel,
        bits_stored: if wanted == 3 {
            bits_stored.min(8)
        } else {
            bits_stored
        },
        signed: stored.signed,
        // openjpeg undoes the component transform (YBR_RCT / YBR_ICT): the samples are RGB.
        photometric: if wanted == 3 {
            "RGB".into()
        } else {
            stored.photometric.into()
        },
        planar: false,
        samples: Samples::U16(Cow::Owned(samples)),
    })
}

fn jpeg(stored: &Stored<'_>, data: &[u8], max: u32) -> Option<Frame<'static>> {
    let mut decoder = Decoder::new(Cursor::new(data));
    decoder.read_info().ok()?;
    let (w, h) = fit(stored.cols, stored.rows, Some(max));
    let (w, h) = (u16::try_from(w).ok()?, u16::try_from(h).ok()?);
    decoder.scale(w, h).ok()?;
    let pixels = decoder.decode().ok()?;
    let info = decoder.info()?;
    let (samples_per_pixel, photometric) = match info.pixel_format {
        PixelFormat::L8 => (1, stored.photometric.to_string()),
        // The decoder converts YCbCr to RGB, as dicom-pixeldata's own path does.
        PixelFormat::RGB24 => (3, "RGB".to_string()),
        PixelFormat::L16 | PixelFormat::CMYK32 => return None,
    };
    if samples_per_pixel != stored.samples_per_pixel
        || pixels.len()
            < usize::from(info.width) * usize::from(info.height) * usize::from(samples_per_pixel)
    {
        return None;
    }
    Some(Frame {
        rows: u32::from(info.height),
        cols: u32::from(info.width),
        samples_per_pixel,
        bits_stored: 8,
        signed: false,
        photometric,
        planar: false,
        samples: Samples::U8(Cow::Owned(pixels)),
    })
}
