//! Rendered images of stored instances: `/instances/{uid}/thumbnail.jpg`, `/preview.jpg` and
//! `/preview.png`, for a logged-in user.
//!
//! Query parameters: `frame` (0-based; past the last frame draws the last), `size` (longest
//! side; thumbnail 128 by default, at most 512; preview 1024, at most 4096; never enlarged),
//! `wc` and `ww` together (a free window in modality units), or `preset` (brain, lung, bone,
//! abdomen), `quality` (JPEG, 1..=100).
//!
//! Answers: 400 for a malformed UID or parameter, 404 for an instance not in the archive, else
//! always an image (the placeholder for objects without one). `X-Frames` carries the frame
//! count (0 for the placeholder of a non-image), `X-Placeholder: 1` marks the placeholder, and
//! an `ETag` lets the browser revalidate with `If-None-Match`.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::auth::CurrentUser;
use super::{HttpError, MetricsSource, WebState};
use crate::render::{ImageFormat, RenderParams, Renderer, Window, WindowPreset};

const THUMBNAIL_SIZE: u32 = 128;
const THUMBNAIL_MAX: u32 = 512;
const PREVIEW_SIZE: u32 = 1024;
const PREVIEW_MAX: u32 = 4096;
/// Seconds a browser may reuse an image without asking (an instance's pixels do not change;
/// a replaced object gets a new ETag once this runs out).
const IMAGE_MAX_AGE: u32 = 3600;
/// The placeholder may stand for a read that failed for a moment: ask again soon.
const PLACEHOLDER_MAX_AGE: u32 = 60;

/// Which image a route draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Thumbnail,
    PreviewJpeg,
    PreviewPng,
}

/// The query string of the image routes.
#[derive(Debug, Default, Deserialize)]
pub struct ImageQuery {
    pub frame: Option<u32>,
    pub size: Option<u32>,
    pub wc: Option<f64>,
    pub ww: Option<f64>,
    pub preset: Option<String>,
    pub quality: Option<u8>,
}

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/instances/{uid}/thumbnail.jpg", get(thumbnail))
        .route("/instances/{uid}/preview.jpg", get(preview_jpg))
        .route("/instances/{uid}/preview.png", get(preview_png))
}

async fn thumbnail(
    _user: CurrentUser,
    State(state): State<WebState>,
    Path(uid): Path<String>,
    query: Result<Query<ImageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    image(&state, &uid, Kind::Thumbnail, query, &headers).await
}

async fn preview_jpg(
    _user: CurrentUser,
    State(state): State<WebState>,
    Path(uid): Path<String>,
    query: Result<Query<ImageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    image(&state, &uid, Kind::PreviewJpeg, query, &headers).await
}

async fn preview_png(
    _user: CurrentUser,
    State(state): State<WebState>,
    Path(uid): Path<String>,
    query: Result<Query<ImageQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    image(&state, &uid, Kind::PreviewPng, query, &headers).await
}

async fn image(
    state: &WebState,
    uid: &str,
    kind: Kind,
    query: Result<Query<ImageQuery>, QueryRejection>,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    let Query(query) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let if_none_match = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    answer(state, uid, kind, &query, if_none_match).await
}

/// What a request asks to draw, checked.
pub fn params(kind: Kind, query: &ImageQuery) -> Result<RenderParams, HttpError> {
    let (format, default_size, max_size, default_quality) = match kind {
        Kind::Thumbnail => (ImageFormat::Jpeg, THUMBNAIL_SIZE, THUMBNAIL_MAX, 85),
        Kind::PreviewJpeg => (ImageFormat::Jpeg, PREVIEW_SIZE, PREVIEW_MAX, 90),
        Kind::PreviewPng => (ImageFormat::Png, PREVIEW_SIZE, PREVIEW_MAX, 90),
    };
    let size = query.size.unwrap_or(default_size);
    if size == 0 || size > max_size {
        return Err(HttpError::BadRequest(format!(
            "size must be 1..={max_size}, not {size}"
        )));
    }
    let quality = query.quality.unwrap_or(default_quality);
    if !(1..=100).contains(&quality) {
        return Err(HttpError::BadRequest(format!(
            "quality must be 1..=100, not {quality}"
        )));
    }
    let window = match (query.wc, query.ww, query.preset.as_deref()) {
        (None, None, None) => None,
        (Some(center), Some(width), None) if center.is_finite() && width.is_finite() => {
            if width < 1.0 {
                return Err(HttpError::BadRequest(format!(
                    "ww must be at least 1, not {width}"
                )));
            }
            Some(Window { center, width })
        }
        (None, None, Some(name)) => Some(
            WindowPreset::ALL
                .into_iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| {
                    HttpError::BadRequest(format!(
                        "unknown preset {name:?} (brain, lung, bone or abdomen)"
                    ))
                })?
                .window(),
        ),
        _ => {
            return Err(HttpError::BadRequest(
                "give wc and ww together, or a preset, not both".into(),
            ));
        }
    };
    Ok(RenderParams {
        frame: query.frame.unwrap_or(0),
        max_size: Some(size),
        window,
        format,
        quality,
    })
}

/// The image answer below the login check (handler tests call this directly).
pub async fn answer(
    state: &WebState,
    uid: &str,
    kind: Kind,
    query: &ImageQuery,
    if_none_match: Option<&str>,
) -> Result<Response, HttpError> {
    crate::uid::validate(uid)
        .map_err(|e| HttpError::BadRequest(format!("not a UID ({e}): {uid:?}")))?;
    let params = params(kind, query)?;
    let archive = state.archive()?;
    if !archive.has_instance(uid).await? {
        return Err(HttpError::NotFound(format!("instance {uid}")));
    }
    // Named in full: `MetricsSource::render` (for `Arc<Renderer>`) would shadow the method.
    let rendered = Renderer::render(&state.renderer, uid, &params, move || async move {
        match archive.read_object(uid).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("instance {uid} is gone")),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;

    let mut hasher = DefaultHasher::new();
    rendered.bytes.hash(&mut hasher);
    let etag = format!("\"{:016x}\"", hasher.finish());
    let max_age = if rendered.placeholder {
        PLACEHOLDER_MAX_AGE
    } else {
        IMAGE_MAX_AGE
    };
    let mut response = if if_none_match.is_some_and(|tags| {
        tags.split(',')
            .any(|t| t.trim().trim_start_matches("W/") == etag)
    }) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, rendered.content_type)],
            rendered.bytes.clone(),
        )
            .into_response()
    };
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("etag", etag);
    set("cache-control", format!("private, max-age={max_age}"));
    set("x-frames", rendered.frames.to_string());
    if rendered.placeholder {
        set("x-placeholder", "1".into());
    }
    Ok(response)
}

impl MetricsSource for Renderer {
    fn render(&self) -> String {
        self.metrics_text()
    }
}

#[cfg(test)]
mod tests;
