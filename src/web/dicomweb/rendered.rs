//! WADO-RS rendered and thumbnail resources (PS3.18 §10.4.1.1.5, §10.4.1.2.1,
//! §8.3.5): `/rendered` and `/thumbnail` of a study, a series, an instance and one frame,
//! drawn by the same renderer (and cache) as the portal's images. A study or series is shown
//! by a representative instance: the middle one.
//!
//! Media types: `image/jpeg` (the default) and `image/png`. Parameters: `window=center,width[,function]`
//! (function `linear` only), `viewport=vw,vh` (fit within, never enlarged), `quality` (1–100,
//! JPEG). `charset` and `iccprofile=no` are accepted and change nothing; other parameters are
//! 400. A thumbnail without a viewport fits 128×128.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::frames::parse_frame_list;
use super::multipart_out;
use super::user::DicomWebUser;
use super::wado::{InstanceInfo, Target, instance_info};
use crate::render::{ImageFormat, RenderParams, Renderer, Window};
use crate::web::auth::Role;
use crate::web::{HttpError, WebState};

/// Longest side of a thumbnail without a viewport (the portal's thumbnail size).
pub const THUMBNAIL_SIZE: u32 = 128;
/// Largest viewport side (as the portal's largest preview).
pub const MAX_VIEWPORT: u32 = 4096;
const DEFAULT_QUALITY: u8 = 90;

/// The rendered and thumbnail resources at study, series, instance and frame level, written out
/// one by one so the conformance checker can read every path.
pub fn routes() -> Router<WebState> {
    Router::new()
        .route(
            "/studies/{study}/rendered",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path(study): Path<String>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, None, None, None),
                        Kind::Rendered,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/series/{series}/rendered",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path((study, series)): Path<(String, String)>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, Some(series), None, None),
                        Kind::Rendered,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/rendered",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path((study, series, instance)): Path<(String, String, String)>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, Some(series), Some(instance), None),
                        Kind::Rendered,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path((study, series, instance, frames)): Path<(
                    String,
                    String,
                    String,
                    String,
                )>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, Some(series), Some(instance), Some(frames)),
                        Kind::Rendered,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/thumbnail",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path(study): Path<String>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, None, None, None),
                        Kind::Thumbnail,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path((study, series)): Path<(String, String)>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, Some(series), None, None),
                        Kind::Thumbnail,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path((study, series, instance)): Path<(String, String, String)>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, Some(series), Some(instance), None),
                        Kind::Thumbnail,
                        query,
                        headers,
                    )
                },
            ),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
            get(
                |user: DicomWebUser,
                 state: State<WebState>,
                 Path((study, series, instance, frames)): Path<(
                    String,
                    String,
                    String,
                    String,
                )>,
                 query: QueryResult,
                 headers: HeaderMap| {
                    answer(
                        user,
                        state,
                        Owned::new(study, Some(series), Some(instance), Some(frames)),
                        Kind::Thumbnail,
                        query,
                        headers,
                    )
                },
            ),
        )
}

/// The query string as name–value pairs, or why it could not be read.
type QueryResult = Result<Query<Vec<(String, String)>>, QueryRejection>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rendered,
    Thumbnail,
}

/// The path's UIDs (and frame list), owned.
struct Owned {
    study: String,
    series: Option<String>,
    instance: Option<String>,
    frames: Option<String>,
}

impl Owned {
    fn new(
        study: String,
        series: Option<String>,
        instance: Option<String>,
        frames: Option<String>,
    ) -> Owned {
        Owned {
            study,
            series,
            instance,
            frames,
        }
    }

    fn target(&self) -> Target<'_> {
        Target {
            study: &self.study,
            series: self.series.as_deref(),
            instance: self.instance.as_deref(),
        }
    }
}

/// The checked query parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderQuery {
    pub window: Option<Window>,
    pub viewport: Option<(u32, u32)>,
    pub quality: Option<u8>,
}

/// Check the query parameters (PS3.18 §8.3.5.1).
pub fn parse_query(pairs: &[(String, String)]) -> Result<RenderQuery, HttpError> {
    let mut out = RenderQuery {
        window: None,
        viewport: None,
        quality: None,
    };
    for (name, value) in pairs {
        let bad = |why: String| HttpError::BadRequest(format!("{name}={value:?}: {why}"));
        match name.as_str() {
            "window" => {
                let fields: Vec<&str> = value.split(',').map(str::trim).collect();
                if !(2..=3).contains(&fields.len()) {
                    return Err(bad("give center,width[,function]".into()));
                }
                let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
                let center =
                    number(fields[0]).ok_or_else(|| bad("center is not a number".into()))?;
                let width = number(fields[1]).ok_or_else(|| bad("width is not a number".into()))?;
                if width < 1.0 {
                    return Err(bad("width must be at least 1".into()));
                }
                if let Some(function) = fields.get(2)
                    && !function.eq_ignore_ascii_case("linear")
                {
                    return Err(bad(format!(
                        "window function {function:?} is not supported (only linear)"
                    )));
                }
                out.window = Some(Window { center, width });
            }
            "viewport" => {
                let fields: Vec<&str> = value.split(',').map(str::trim).collect();
                if fields.len() != 2 {
                    return Err(bad(
                        "give vw,vh (cropping with sx,sy,sw,sh is not supported)".into(),
                    ));
                }
                let side = |s: &str| {
                    s.parse::<u32>()
                        .ok()
                        .filter(|v| (1..=MAX_VIEWPORT).contains(v))
                };
                let (Some(w), Some(h)) = (side(fields[0]), side(fields[1])) else {
                    return Err(bad(format!("sides must be 1..={MAX_VIEWPORT}")));
                };
                out.viewport = Some((w, h));
            }
            "quality" => {
                let q = value
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| bad("quality must be 1..=100".into()))?;
                out.quality = Some(q);
            }
            // Text is not drawn, and the output has no colour profile: nothing to change.
            "charset" => {}
            "iccprofile" if value.eq_ignore_ascii_case("no") => {}
            _ => {
                return Err(HttpError::BadRequest(format!(
                    "query parameter {name:?} is not supported (window, viewport, quality)"
                )));
            }
        }
    }
    Ok(out)
}

/// The longest side that makes `columns`×`rows` fit within `viewport` (as the renderer
/// scales: the longest side to the given size, the other in proportion, rounded); `None`
/// when it fits already.
pub fn fit_within(columns: u32, rows: u32, viewport: (u32, u32)) -> Option<u32> {
    let (vw, vh) = viewport;
    if columns == 0 || rows == 0 || (columns <= vw && rows <= vh) {
        return None;
    }
    let longest = columns.max(rows);
    let scale = (f64::from(vw) / f64::from(columns)).min(f64::from(vh) / f64::from(rows));
    let mut size = ((f64::from(longest) * scale).floor() as u32).max(1);
    let scaled = |side: u32, size: u32| {
        ((u64::from(side) * u64::from(size) + u64::from(longest) / 2) / u64::from(longest)).max(1)
    };
    while size > 1 && (scaled(columns, size) > u64::from(vw) || scaled(rows, size) > u64::from(vh))
    {
        size -= 1;
    }
    Some(size)
}

/// The image format the `Accept` header asks for.
fn format(headers: &HeaderMap) -> Result<ImageFormat, HttpError> {
    let ranges = multipart_out::accept(headers);
    if ranges.is_empty() {
        return Ok(ImageFormat::Jpeg);
    }
    ranges
        .iter()
        .find_map(|r| match r.media_type.as_str() {
            "image/jpeg" | "image/*" | "*/*" => Some(ImageFormat::Jpeg),
            "image/png" => Some(ImageFormat::Png),
            _ => None,
        })
        .ok_or_else(|| {
            HttpError::NotAcceptable(format!(
                "rendered images are image/jpeg or image/png, not any of: {}",
                multipart_out::accept_text(headers)
            ))
        })
}

async fn answer(
    user: DicomWebUser,
    State(state): State<WebState>,
    path: Owned,
    kind: Kind,
    query: QueryResult,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    let target = path.target();
    target.check()?;
    let Query(pairs) = query.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let query = parse_query(&pairs)?;
    let format = format(&headers)?;
    let frame = match &path.frames {
        None => None,
        Some(list) => match parse_frame_list(list)?.as_slice() {
            [one] => Some(*one),
            _ => {
                return Err(HttpError::BadRequest(format!(
                    "frame list {list:?}: a rendered frame is one frame number"
                )));
            }
        },
    };
    let archive = state.archive()?;
    let info: InstanceInfo = instance_info(archive, target).await?;
    crate::web::audit_hooks::viewed(&state, &user.actor(), &path.study, None, Some(&info.uid));
    if let Some(n) = frame
        && n > info.frames
    {
        return Err(HttpError::NotFound(format!(
            "frame {n}: instance {} has {} frame(s), numbered from 1",
            info.uid, info.frames
        )));
    }
    let max_size = match (query.viewport, kind) {
        (Some(viewport), _) => fit_within(info.columns, info.rows, viewport),
        (None, Kind::Thumbnail) => Some(THUMBNAIL_SIZE),
        (None, Kind::Rendered) => None,
    };
    let params = RenderParams {
        frame: frame.map_or(0, |n| n - 1),
        max_size,
        window: query.window,
        format,
        quality: query.quality.unwrap_or(DEFAULT_QUALITY),
    };
    let uid = info.uid.clone();
    let loader = archive.clone();
    // Named in full: `MetricsSource::render` (for `Arc<Renderer>`) would shadow the method.
    let rendered = Renderer::render(&state.renderer, &uid, &params, move || async move {
        match loader.read_object(&info.uid).await {
            Ok(Some(bytes)) => Ok(bytes),
            Ok(None) => Err(format!("instance {} is gone", info.uid)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let mut response = (
        [(header::CONTENT_TYPE, rendered.content_type)],
        rendered.bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if rendered.placeholder {
        headers.insert("x-placeholder", HeaderValue::from_static("1"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn query_parameters() {
        let q = parse_query(&pairs(&[
            ("window", "40,400,LINEAR"),
            ("viewport", "64,32"),
            ("quality", "70"),
        ]))
        .expect("valid");
        assert_eq!(
            q.window,
            Some(Window {
                center: 40.0,
                width: 400.0
            })
        );
        assert_eq!(q.viewport, Some((64, 32)));
        assert_eq!(q.quality, Some(70));
        for (name, value, says) in [
            ("window", "40,400,sigmoid", "only linear"),
            ("window", "40", "center,width"),
            ("window", "40,0", "at least 1"),
            ("viewport", "0,10", "sides"),
            ("viewport", "1,2,3,4,5,6", "cropping"),
            ("quality", "0", "1..=100"),
            ("annotation", "patient", "not supported"),
        ] {
            let err = parse_query(&pairs(&[(name, value)])).expect_err(value);
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn viewport_fit() {
        assert_eq!(fit_within(512, 512, (600, 600)), None);
        assert_eq!(fit_within(512, 512, (64, 128)), Some(64));
        assert_eq!(fit_within(512, 256, (100, 30)), Some(60));
        assert_eq!(fit_within(640, 480, (64, 64)), Some(64));
    }
}
