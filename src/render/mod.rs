//! Rendering stored images for the web: DICOM pixel data → JPEG/PNG with window/level, frame
//! choice and scaling, on a bounded blocking pool, with a byte-bounded cache. A stored object
//! always gets an image (a placeholder for non-image objects and codecs we cannot decode).
//! SKELETON: the interface the portal codes against; the implementation follows.

use std::future::Future;

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl ImageFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
        }
    }
}

/// A window (VOI) in the modality's output units (after rescale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
}

/// CT window presets of the preview page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowPreset {
    Brain,
    Lung,
    Bone,
    Abdomen,
}

impl WindowPreset {
    pub const ALL: [WindowPreset; 4] = [
        WindowPreset::Brain,
        WindowPreset::Lung,
        WindowPreset::Bone,
        WindowPreset::Abdomen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WindowPreset::Brain => "brain",
            WindowPreset::Lung => "lung",
            WindowPreset::Bone => "bone",
            WindowPreset::Abdomen => "abdomen",
        }
    }

    pub fn window(self) -> Window {
        let (center, width) = match self {
            WindowPreset::Brain => (40.0, 80.0),
            WindowPreset::Lung => (-600.0, 1500.0),
            WindowPreset::Bone => (400.0, 1800.0),
            WindowPreset::Abdomen => (50.0, 400.0),
        };
        Window { center, width }
    }
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderParams {
    /// 0-based frame number.
    pub frame: u32,
    /// Longest side of the output in pixels; `None` keeps the stored size.
    pub max_size: Option<u32>,
    /// `None`: the object's own window (VOI LUT / Window Center & Width), else min–max.
    pub window: Option<Window>,
    pub format: ImageFormat,
    /// JPEG quality 1..=100.
    pub quality: u8,
}

impl RenderParams {
    /// The portal's thumbnails: 128 px JPEG, the object's own window.
    pub fn thumbnail() -> RenderParams {
        RenderParams {
            frame: 0,
            max_size: Some(128),
            window: None,
            format: ImageFormat::Jpeg,
            quality: 85,
        }
    }
}

/// A rendered image.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// Frames in the object (1 for a single frame, 0 when not an image).
    pub frames: u32,
    /// True when this is the placeholder (not an image, or a codec we cannot decode).
    pub placeholder: bool,
}

/// The renderer with its pool and cache. Shared by every request (`Arc`).
#[derive(Debug)]
pub struct Renderer {}

impl Renderer {
    /// `threads` blocking renderers at most; `cache_bytes` of rendered images kept.
    pub fn new(_threads: usize, _cache_bytes: u64) -> Renderer {
        Renderer {}
    }

    /// Render instance `uid` with `params`. `load` reads the whole Part-10 file and is called
    /// only on a cache miss; when it fails, or the object cannot be drawn, the answer is the
    /// placeholder (a stored object never makes an HTTP 500).
    pub async fn render<F, Fut>(&self, _uid: &str, params: &RenderParams, _load: F) -> Rendered
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, String>>,
    {
        Rendered {
            bytes: Bytes::new(),
            content_type: params.format.content_type(),
            frames: 0,
            placeholder: true,
        }
    }
}
