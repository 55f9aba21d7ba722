//! Rendering stored images for the web: DICOM pixel data → JPEG/PNG with window/level, frame
//! choice and scaling, on a bounded blocking pool, with a byte-bounded cache. A stored object
//! always gets an image (a placeholder for non-image objects and codecs we cannot decode).
//!
//! Layout: [`decode`] (Part-10 → one frame's samples; [`reduced`] decodes compressed frames
//! at reduced resolution for thumbnails), [`window`] (samples → 8 bits), [`scale`]
//! (box shrink), [`encode`] (JPEG/PNG), [`placeholder`], [`cache`] (byte-bounded LRU); this
//! file holds the public types and the [`Renderer`]: pool bound, cache, request coalescing and
//! counters.
//!
//! A frame number past the last frame draws the last frame (the `frames` answer tells the page
//! how many there are).

mod cache;
mod decode;
mod encode;
mod placeholder;
mod reduced;
mod scale;
#[cfg(test)]
mod tests;
mod window;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};

use cache::{Cache, CacheKey};

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

impl Rendered {
    fn placeholder(format: ImageFormat, frames: u32) -> Rendered {
        Rendered {
            bytes: placeholder::placeholder(format),
            content_type: format.content_type(),
            frames,
            placeholder: true,
        }
    }
}

/// Draw `file` (a whole Part-10 file) with `params`. Pure CPU: runs on the blocking pool.
fn draw(file: &[u8], params: &RenderParams) -> Rendered {
    let mut frames = 0;
    let drawn = (|| {
        let obj = decode::parse(file)?;
        frames = decode::frame_count(&obj);
        if frames == 0 {
            return Err(decode::DrawError::NoPixelData);
        }
        let number = params.frame.min(frames - 1);
        let frame = decode::frame(&obj, number, params.max_size)?;
        let image = window::present(&obj, number, &frame, params.window, params.max_size)?;
        drop(frame);
        let image = scale::shrink(image, params.max_size);
        encode::encode(&image, params.format, params.quality)
            .map_err(|e| decode::DrawError::Decode(e.to_string()))
    })();
    match drawn {
        Ok(bytes) => Rendered {
            bytes: Bytes::from(bytes),
            content_type: params.format.content_type(),
            frames,
            placeholder: false,
        },
        Err(e) => {
            tracing::debug!(error = %e, "drawing the placeholder");
            Rendered::placeholder(params.format, frames)
        }
    }
}

/// One render in progress: its answer, and whether that answer may be cached.
type InFlight = OnceCell<(Rendered, bool)>;

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    renders: AtomicU64,
    cache_hits: AtomicU64,
    /// Requests that waited for the same render already running instead of starting one.
    coalesced: AtomicU64,
    placeholders: AtomicU64,
    load_failures: AtomicU64,
    render_micros: AtomicU64,
    /// Renders on the blocking pool right now, and the most seen at once.
    active: AtomicU64,
    peak_active: AtomicU64,
}

/// The renderer with its pool and cache. Shared by every request (`Arc`).
#[derive(Debug)]
pub struct Renderer {
    /// One permit per blocking render: a burst of previews queues here instead of taking
    /// every blocking thread tokio has (DICOM associations need them too).
    permits: Arc<Semaphore>,
    cache: Cache,
    /// Renders in progress by key: a second request for the same image waits for the first.
    inflight: Mutex<HashMap<CacheKey, Arc<InFlight>>>,
    counters: Arc<Counters>,
}

impl Renderer {
    /// `threads` blocking renderers at most; `cache_bytes` of rendered images kept.
    pub fn new(threads: usize, cache_bytes: u64) -> Renderer {
        Renderer {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            cache: Cache::new(cache_bytes),
            inflight: Mutex::default(),
            counters: Arc::default(),
        }
    }

    /// Render instance `uid` with `params`. `load` reads the whole Part-10 file and is called
    /// only on a cache miss; when it fails, or the object cannot be drawn, the answer is the
    /// placeholder (a stored object never makes an HTTP 500).
    pub async fn render<F, Fut>(&self, uid: &str, params: &RenderParams, load: F) -> Rendered
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, String>>,
    {
        let key = CacheKey::new(uid, params);
        if let Some(hit) = self.cache.get(&key) {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return hit;
        }
        let cell = Arc::clone(
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let ran = AtomicBool::new(false);
        let rendered = cell
            .get_or_init(|| async {
                ran.store(true, Ordering::Relaxed);
                self.render_uncached(params, load).await
            })
            .await
            .clone();
        if ran.load(Ordering::Relaxed) {
            // Cache before leaving the in-flight map, so a new request finds one or the other.
            if let Some(cacheable) = rendered.1.then(|| rendered.0.clone()) {
                self.cache.insert(key.clone(), cacheable);
            }
            self.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        } else {
            self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
        }
        rendered.0
    }

    /// Load and draw; the flag says whether the answer may be cached (not after a failed load,
    /// which may be a site that is down for a minute).
    async fn render_uncached<F, Fut>(&self, params: &RenderParams, load: F) -> (Rendered, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, String>>,
    {
        let counters = &self.counters;
        let file = match load().await {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(error = %e, "loading an object to render failed");
                counters.load_failures.fetch_add(1, Ordering::Relaxed);
                counters.placeholders.fetch_add(1, Ordering::Relaxed);
                return (Rendered::placeholder(params.format, 0), false);
            }
        };
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            // The semaphore is never closed; answer the placeholder rather than panic.
            return (Rendered::placeholder(params.format, 0), false);
        };
        let owned = params.clone();
        let task_counters = Arc::clone(counters);
        let drawn = tokio::task::spawn_blocking(move || {
            let active = task_counters.active.fetch_add(1, Ordering::SeqCst) + 1;
            task_counters
                .peak_active
                .fetch_max(active, Ordering::SeqCst);
            let started = Instant::now();
            let rendered = draw(&file, &owned);
            task_counters
                .render_micros
                .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            task_counters.active.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
            rendered
        })
        .await;
        counters.renders.fetch_add(1, Ordering::Relaxed);
        let rendered = drawn.unwrap_or_else(|e| {
            tracing::error!(error = %e, "render task failed");
            Rendered::placeholder(params.format, 0)
        });
        if rendered.placeholder {
            counters.placeholders.fetch_add(1, Ordering::Relaxed);
        }
        (rendered, true)
    }

    /// The most renders seen running at once (never above `threads`).
    pub fn peak_concurrency(&self) -> u64 {
        self.counters.peak_active.load(Ordering::SeqCst)
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics_text(&self) -> String {
        let c = &self.counters;
        let (entries, bytes) = self.cache.usage();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let families: [(&str, &str, &str, String); 8] = [
            (
                "mifas_render_total",
                "counter",
                "Images drawn (cache misses).",
                get(&c.renders).to_string(),
            ),
            (
                "mifas_render_cache_hits_total",
                "counter",
                "Images answered from the render cache.",
                get(&c.cache_hits).to_string(),
            ),
            (
                "mifas_render_coalesced_total",
                "counter",
                "Requests that waited for the same image being drawn.",
                get(&c.coalesced).to_string(),
            ),
            (
                "mifas_render_placeholders_total",
                "counter",
                "Placeholders drawn (no image, undecodable, or the object could not be read).",
                get(&c.placeholders).to_string(),
            ),
            (
                "mifas_render_load_failures_total",
                "counter",
                "Objects that could not be read for rendering.",
                get(&c.load_failures).to_string(),
            ),
            (
                "mifas_render_seconds_total",
                "counter",
                "Time spent drawing on the render pool.",
                format!("{:.6}", get(&c.render_micros) as f64 / 1e6),
            ),
            (
                "mifas_render_cache_entries",
                "gauge",
                "Images in the render cache.",
                entries.to_string(),
            ),
            (
                "mifas_render_cache_bytes",
                "gauge",
                "Bytes held by the render cache.",
                bytes.to_string(),
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in families {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        out
    }
}
