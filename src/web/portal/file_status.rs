//! `/instances/{SOPInstanceUID}/status`: where the copies of one object are (thesis Fig. 3-11):
//! per configured site whether it holds the object, when it was stored and last verified; the
//! object's size and SHA-256, and what it is (patient, study, series, instance).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;

use super::display::{self, person_name, sop_class, text};
use super::{Chrome, query, render, uid_segment};
use crate::index::PlacementState;
use crate::web::auth::CurrentUser;
use crate::web::{HttpError, WebState};

#[derive(Debug, Clone)]
pub struct SiteRow {
    pub site: String,
    /// "held", "lost" or "missing" (the class and the test hook).
    pub state: &'static str,
    pub label: &'static str,
    pub stored: String,
    pub verified: String,
}

#[derive(Template)]
#[template(path = "file_status.html", config = "src/web/askama.toml")]
pub struct FileStatusPage {
    pub chrome: Chrome,
    pub uid: String,
    pub study_uid: String,
    pub patient_name: String,
    pub patient_id: String,
    pub description: String,
    pub number: String,
    pub sop_class: String,
    pub transfer_syntax: String,
    pub size: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub sites: Vec<SiteRow>,
}

pub async fn page(
    state: &WebState,
    user: &CurrentUser,
    uid: &str,
) -> Result<Html<String>, HttpError> {
    let archive = state.archive()?;
    let Some(status) = archive.file_status(uid).await? else {
        return Err(HttpError::NotFound(format!("no instance {uid}")));
    };
    let about = archive
        .find_all(query::instance(
            uid,
            &[
                (tags::PATIENT_NAME, VR::PN),
                (tags::PATIENT_ID, VR::LO),
                (tags::SERIES_DESCRIPTION, VR::LO),
                (tags::STUDY_DESCRIPTION, VR::LO),
            ],
        ))
        .await
        .map_err(|e| HttpError::Unavailable(e.to_string()))?;
    let about = about.first();
    let field = |tag| about.map(|m| text(m, tag)).unwrap_or_default();
    let ts_name = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(crate::uid::trim(&status.transfer_syntax))
        .map(|ts| ts.name().to_string());
    let page = FileStatusPage {
        chrome: Chrome::new(user, "File status"),
        uid: status.sop_instance_uid.clone(),
        study_uid: field(tags::STUDY_INSTANCE_UID),
        patient_name: person_name(&field(tags::PATIENT_NAME)),
        patient_id: field(tags::PATIENT_ID),
        description: [
            field(tags::STUDY_DESCRIPTION),
            field(tags::SERIES_DESCRIPTION),
        ]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" / "),
        number: field(tags::INSTANCE_NUMBER),
        sop_class: sop_class(&status.sop_class_uid),
        transfer_syntax: match ts_name {
            Some(name) => format!("{name} ({})", status.transfer_syntax),
            None => status.transfer_syntax.clone(),
        },
        size: display::size(status.size),
        size_bytes: status.size,
        sha256: hex::encode(status.sha256),
        sites: status
            .sites
            .iter()
            .map(|c| {
                let (state, label) = match c.state {
                    Some(PlacementState::Held) => ("held", "✔ holds it"),
                    Some(PlacementState::Lost) => ("lost", "✘ lost (repair queued)"),
                    None => ("missing", "– no copy yet"),
                };
                SiteRow {
                    site: c.site.clone(),
                    state,
                    label,
                    stored: display::instant(c.stored_at),
                    verified: display::instant(c.verified_at),
                }
            })
            .collect(),
    };
    render(&page)
}

pub async fn handler(
    user: CurrentUser,
    State(state): State<WebState>,
    Path(uid): Path<String>,
) -> Result<Html<String>, HttpError> {
    let uid = uid_segment(&uid)?;
    page(&state, &user, uid).await
}
