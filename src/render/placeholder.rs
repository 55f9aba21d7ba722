//! The image shown for stored objects that have no picture (SR, KOS, a PDF) or whose codec we
//! cannot decode: a mid-grey square with a darker frame and a diagonal, drawn once per format.

use std::sync::OnceLock;

use bytes::Bytes;

use super::ImageFormat;
use super::encode::encode;
use super::window::Image8;

/// Side of the placeholder in pixels (one size for thumbnails and previews: the browser scales).
pub(crate) const SIDE: u32 = 128;

fn draw() -> Image8 {
    let side = SIDE as usize;
    let mut data = vec![160u8; side * side];
    for y in 0..side {
        for x in 0..side {
            let edge = x < 4 || y < 4 || x >= side - 4 || y >= side - 4;
            let diagonal = x.abs_diff(y) < 3 || (x + y).abs_diff(side - 1) < 3;
            if edge || diagonal {
                data[y * side + x] = 96;
            }
        }
    }
    Image8 {
        width: SIDE,
        height: SIDE,
        channels: 1,
        data,
    }
}

/// The encoded placeholder (JPEG at quality 90, or PNG); built on first use.
pub(crate) fn placeholder(format: ImageFormat) -> Bytes {
    static JPEG: OnceLock<Bytes> = OnceLock::new();
    static PNG: OnceLock<Bytes> = OnceLock::new();
    let cell = match format {
        ImageFormat::Jpeg => &JPEG,
        ImageFormat::Png => &PNG,
    };
    cell.get_or_init(|| {
        // Encoding a fixed 128² grey image cannot fail; an empty body would still be no 500.
        encode(&draw(), format, 90)
            .map(Bytes::from)
            .unwrap_or_default()
    })
    .clone()
}
