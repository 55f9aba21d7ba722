//! 8-bit image → JPEG (with the requested quality) or PNG (fast compression: previews are
//! sent once and cached, so a few percent of size is not worth the CPU).

use dicom_pixeldata::image::codecs::jpeg::JpegEncoder;
use dicom_pixeldata::image::codecs::png::{CompressionType, FilterType, PngEncoder};
use dicom_pixeldata::image::{ExtendedColorType, ImageEncoder};

use super::ImageFormat;
use super::window::Image8;

#[derive(Debug, thiserror::Error)]
#[error("encoding the image failed: {0}")]
pub(crate) struct EncodeError(String);

pub(crate) fn encode(
    image: &Image8,
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>, EncodeError> {
    let color = if image.channels == 3 {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    let mut out = Vec::with_capacity(image.data.len() / 4 + 1024);
    match format {
        ImageFormat::Jpeg => JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
            .encode(&image.data, image.width, image.height, color)
            .map_err(|e| EncodeError(e.to_string()))?,
        ImageFormat::Png => {
            PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
                .write_image(&image.data, image.width, image.height, color)
                .map_err(|e| EncodeError(e.to_string()))?
        }
    }
    Ok(out)
}
