//! The web portal's pages (thesis §3.4, Figures 3-9 to 3-13): the exam-type catalog, filter
//! and study list (`/studies`), a study with its series, thumbnails and per-instance functions
//! (`/studies/{uid}`), a patient's record (`/patients/{id}`), an instance's file status
//! (`/instances/{uid}/status`) and preview (`/instances/{uid}/view`). Every page needs a
//! session ([`CurrentUser`]) and answers from the archive's query engine, the same one C-FIND
//! uses; HTML is rendered on the server by askama templates (`src/web/templates/`), escaped.

mod assets;
mod catalog;
pub(crate) mod display;
mod file_status;
mod params;
mod patient;
mod preview;
mod query;
mod studies;
mod study;
#[cfg(test)]
mod tests;

use axum::Router;
use axum::response::{Html, Redirect};
use axum::routing::get;

use super::WebState;
use super::auth::{CurrentUser, Role};
use super::error::HttpError;

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/studies") }))
        .route("/studies", get(studies::handler))
        .route("/studies/{uid}", get(study::handler))
        .route("/patients/{patient_id}", get(patient::handler))
        .route("/instances/{uid}/status", get(file_status::handler))
        .route("/instances/{uid}/view", get(preview::handler))
        .route("/static/portal.css", get(assets::css))
        .route("/static/preview.js", get(assets::preview_js))
}

/// What every page's frame (base.html) shows: the user and the admin links.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub user: String,
    pub role: &'static str,
    pub admin: bool,
    pub uploader: bool,
    /// For the logout form (every POST carries the session's token).
    pub csrf: String,
}

impl Chrome {
    pub fn new(user: &CurrentUser, title: impl Into<String>) -> Chrome {
        Chrome {
            title: title.into(),
            user: user.name.clone(),
            role: user.role.as_str(),
            admin: user.role >= Role::Admin,
            uploader: user.role >= Role::Uploader,
            csrf: user.csrf.clone(),
        }
    }
}

/// Render a template into a page; a template error is ours (500), never the user's.
pub fn render(template: &impl askama::Template) -> Result<Html<String>, HttpError> {
    template
        .render()
        .map(Html)
        .map_err(|e| HttpError::Internal(format!("page template: {e}")))
}

/// A UID from a URL segment: anything but a valid UID is a bad request (UIDs become index keys).
pub fn uid_segment(segment: &str) -> Result<&str, HttpError> {
    crate::uid::validate(segment)
        .map(|()| segment)
        .map_err(|e| HttpError::BadRequest(format!("{segment:?} is not a DICOM UID: {e}")))
}

/// The study list page (`/studies?…`) for URL parameters, everything the handler does but the
/// session check: bench/portal times it in-process.
pub async fn study_list_html(
    state: &WebState,
    user: &CurrentUser,
    params: &std::collections::HashMap<String, String>,
) -> Result<String, HttpError> {
    let search = params::StudySearch::parse(params)?;
    Ok(studies::page(state, user, search).await?.0)
}
