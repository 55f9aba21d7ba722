//! `/patients/{PatientID}`: the patient record (thesis Fig. 3-13): demographics and every study
//! of the patient, newest first. One Patient ID may name several patients (different issuers):
//! each is shown.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use dicom_dictionary_std::tags;

use super::display::{StudyRow, date, person_name, text};
use super::{Chrome, query, render};
use crate::web::auth::CurrentUser;
use crate::web::{HttpError, WebState};

#[derive(Debug, Clone)]
pub struct Demographics {
    pub name: String,
    pub issuer: String,
    pub birth_date: String,
    pub sex: String,
    pub studies: String,
    pub series: String,
    pub instances: String,
}

#[derive(Template)]
#[template(path = "patient.html", config = "src/web/askama.toml")]
pub struct PatientPage {
    pub chrome: Chrome,
    pub patient_id: String,
    pub patients: Vec<Demographics>,
    pub studies: Vec<StudyRow>,
}

/// A Patient ID from the URL: one LO value (≤ 64 characters, no `\`, no control characters),
/// and no `*` or `?`, which would turn the lookup into a wildcard search.
pub fn patient_id_segment(id: &str) -> Result<&str, HttpError> {
    let bad = |why: &str| HttpError::BadRequest(format!("{id:?} is not a Patient ID: {why}"));
    if id.trim().is_empty() {
        return Err(bad("empty"));
    }
    if id.chars().count() > 64 {
        return Err(bad("longer than 64 characters"));
    }
    if id.contains(['\\', '*', '?']) || id.chars().any(char::is_control) {
        return Err(bad("contains \\, *, ? or a control character"));
    }
    Ok(id)
}

pub async fn page(
    state: &WebState,
    user: &CurrentUser,
    patient_id: &str,
) -> Result<Html<String>, HttpError> {
    let archive = state.archive()?;
    let unavailable = |e: crate::query::QueryError| HttpError::Unavailable(e.to_string());
    let found = archive
        .find_all(query::patients(patient_id))
        .await
        .map_err(unavailable)?;
    if found.is_empty() {
        return Err(HttpError::NotFound(format!("no patient {patient_id:?}")));
    }
    let patients = found
        .iter()
        .map(|m| Demographics {
            name: person_name(&text(m, tags::PATIENT_NAME)),
            issuer: text(m, tags::ISSUER_OF_PATIENT_ID),
            birth_date: date(&text(m, tags::PATIENT_BIRTH_DATE)),
            sex: text(m, tags::PATIENT_SEX),
            studies: text(m, tags::NUMBER_OF_PATIENT_RELATED_STUDIES),
            series: text(m, tags::NUMBER_OF_PATIENT_RELATED_SERIES),
            instances: text(m, tags::NUMBER_OF_PATIENT_RELATED_INSTANCES),
        })
        .collect();
    let studies = archive
        .find_studies_newest_first(query::studies_of_patient(patient_id))
        .await
        .map_err(unavailable)?;
    let page = PatientPage {
        chrome: Chrome::new(user, format!("Patient {patient_id}")),
        patient_id: patient_id.to_string(),
        patients,
        studies: studies.iter().map(StudyRow::from_match).collect(),
    };
    render(&page)
}

pub async fn handler(
    user: CurrentUser,
    State(state): State<WebState>,
    Path(patient_id): Path<String>,
) -> Result<Html<String>, HttpError> {
    let id = patient_id_segment(&patient_id)?;
    page(&state, &user, id).await
}
