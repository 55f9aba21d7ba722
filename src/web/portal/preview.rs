//! `/instances/{SOPInstanceUID}/view?frame=&wc=&ww=&preset=`: a large render of one image
//! (thesis Fig. 3-12) with the CT window presets, a free window/level form and, for
//! multi-frame objects, a frame slider. Without JavaScript every control is a GET form that
//! reloads the page; /static/preview.js swaps the image in place instead.

use std::collections::HashMap;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Html;
use dicom_core::VR;
use dicom_dictionary_std::tags;

use super::display::{person_name, text};
use super::{Chrome, query, render, uid_segment};
use crate::render::WindowPreset;
use crate::web::auth::CurrentUser;
use crate::web::{HttpError, WebState};

/// The preview's longest side in pixels.
pub const PREVIEW_SIZE: u32 = 768;

/// What to draw, as the page's (and preview.jpg's) URL parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewParams {
    pub frame: u32,
    pub preset: Option<WindowPreset>,
    /// Free window: center and width (width ≥ 1).
    pub window: Option<(f64, f64)>,
}

fn bad(message: String) -> HttpError {
    HttpError::BadRequest(message)
}

fn finite(name: &str, value: &str) -> Result<f64, HttpError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && v.abs() < 1e9)
        .ok_or_else(|| bad(format!("{name} must be a number, got {value:?}")))
}

impl ViewParams {
    pub fn parse(params: &HashMap<String, String>) -> Result<ViewParams, HttpError> {
        let get = |k: &str| params.get(k).map(|v| v.trim()).unwrap_or("");
        let frame = match get("frame") {
            "" => 0,
            f => f
                .parse::<u32>()
                .map_err(|_| bad(format!("frame must be a frame number from 0, got {f:?}")))?,
        };
        let preset = match get("preset") {
            "" => None,
            p => Some(
                WindowPreset::ALL
                    .into_iter()
                    .find(|w| w.name() == p)
                    .ok_or_else(|| {
                        bad(format!(
                            "preset must be brain, lung, bone or abdomen, got {p:?}"
                        ))
                    })?,
            ),
        };
        let window = match (get("wc"), get("ww")) {
            ("", "") => None,
            (c, w) if !c.is_empty() && !w.is_empty() => {
                let (c, w) = (finite("wc", c)?, finite("ww", w)?);
                // As preview.jpg checks it (src/web/images.rs).
                if w < 1.0 {
                    return Err(bad(format!(
                        "ww (window width) must be at least 1, got {w}"
                    )));
                }
                Some((c, w))
            }
            _ => return Err(bad("wc and ww (window center and width) go together".into())),
        };
        // A preset button wins over the free window it was pressed next to.
        let window = if preset.is_some() { None } else { window };
        Ok(ViewParams {
            frame,
            preset,
            window,
        })
    }

    /// The render's URL parameters (for preview.jpg and this page's links).
    pub fn query(&self) -> String {
        let mut q = format!("frame={}&size={PREVIEW_SIZE}", self.frame);
        if let Some(p) = self.preset {
            q.push_str(&format!("&preset={}", p.name()));
        } else if let Some((c, w)) = self.window {
            q.push_str(&format!("&wc={c}&ww={w}"));
        }
        q
    }
}

#[derive(Debug, Clone)]
pub struct PresetButton {
    pub name: &'static str,
    pub label: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "preview.html", config = "src/web/askama.toml")]
pub struct PreviewPage {
    pub chrome: Chrome,
    pub uid: String,
    pub study_uid: String,
    pub patient_name: String,
    pub description: String,
    pub frames: u32,
    pub frame: u32,
    pub image_src: String,
    pub presets: Vec<PresetButton>,
    pub wc: String,
    pub ww: String,
}

impl PreviewPage {
    pub fn last_frame(&self) -> u32 {
        self.frames.saturating_sub(1)
    }
}

pub async fn page(
    state: &WebState,
    user: &CurrentUser,
    uid: &str,
    params: ViewParams,
) -> Result<Html<String>, HttpError> {
    let archive = state.archive()?;
    let found = archive
        .find_all(query::instance(
            uid,
            &[
                (tags::PATIENT_NAME, VR::PN),
                (tags::SERIES_DESCRIPTION, VR::LO),
                (tags::MODALITY, VR::CS),
            ],
        ))
        .await
        .map_err(|e| HttpError::Unavailable(e.to_string()))?;
    let Some(m) = found.first() else {
        return Err(HttpError::NotFound(format!("no instance {uid}")));
    };
    let frames: u32 = text(m, tags::NUMBER_OF_FRAMES).parse().unwrap_or(1).max(1);
    if params.frame >= frames {
        return Err(bad(format!(
            "frame {} does not exist: the object has {frames} frame(s), numbered from 0",
            params.frame
        )));
    }
    let (wc, ww) = params
        .window
        .map(|(c, w)| (c.to_string(), w.to_string()))
        .unwrap_or_default();
    let page = PreviewPage {
        chrome: Chrome::new(user, "Preview"),
        uid: uid.to_string(),
        study_uid: text(m, tags::STUDY_INSTANCE_UID),
        patient_name: person_name(&text(m, tags::PATIENT_NAME)),
        description: [
            text(m, tags::MODALITY),
            text(m, tags::SERIES_DESCRIPTION),
            match text(m, tags::INSTANCE_NUMBER) {
                n if n.is_empty() => n,
                n => format!("image #{n}"),
            },
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" · "),
        frames,
        frame: params.frame,
        image_src: format!("/instances/{uid}/preview.jpg?{}", params.query()),
        presets: WindowPreset::ALL
            .into_iter()
            .map(|p| {
                let w = p.window();
                PresetButton {
                    name: p.name(),
                    label: format!("{} (C {} / W {})", p.name(), w.center, w.width),
                    active: params.preset == Some(p),
                }
            })
            .collect(),
        wc,
        ww,
    };
    render(&page)
}

pub async fn handler(
    user: CurrentUser,
    client: crate::web::auth::login::ClientInfo,
    State(state): State<WebState>,
    Path(uid): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Html<String>, HttpError> {
    let uid = uid_segment(&uid)?;
    let Query(params) = params.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let params = ViewParams::parse(&params)?;
    let html = page(&state, &user, uid, params).await?;
    let actor = crate::audit::Actor::user(&user.name, client.addr);
    crate::web::audit_hooks::viewed_instance(&state, &actor, uid);
    Ok(html)
}
