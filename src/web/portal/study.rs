//! `/studies/{StudyInstanceUID}`: the study's header, its series with a thumbnail per instance,
//! and per instance the functions of thesis Fig. 3-10 (file status, preview, patient record,
//! download), plus the whole study as a zip.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Html;
use dicom_dictionary_std::tags;

use super::display::{StudyRow, sop_class, text};
use super::{Chrome, query, render, uid_segment};
use crate::query::Match;
use crate::web::auth::CurrentUser;
use crate::web::{HttpError, WebState};

/// Instances past this many in a study get thumbnails that load when scrolled to.
const EAGER_THUMBNAILS: usize = 48;

#[derive(Debug, Clone)]
pub struct InstanceRow {
    pub uid: String,
    pub number: String,
    pub sop_class: String,
    pub frames: String,
    pub size: String,
    pub eager: bool,
}

#[derive(Debug, Clone)]
pub struct SeriesBlock {
    pub uid: String,
    pub number: String,
    pub modality: String,
    pub description: String,
    pub body_part: String,
    pub instances: Vec<InstanceRow>,
}

#[derive(Template)]
#[template(path = "study.html", config = "src/web/askama.toml")]
pub struct StudyPage {
    pub chrome: Chrome,
    pub study: StudyRow,
    pub referring: String,
    pub study_id: String,
    pub series: Vec<SeriesBlock>,
}

fn number(value: &str) -> i64 {
    value.trim().parse().unwrap_or(i64::MAX)
}

fn unavailable(e: crate::query::QueryError) -> HttpError {
    HttpError::Unavailable(format!("query failed: {e}"))
}

pub async fn page(
    state: &WebState,
    user: &CurrentUser,
    uid: &str,
) -> Result<Html<String>, HttpError> {
    let archive = state.archive()?;
    let found = archive
        .find_all(query::study(uid))
        .await
        .map_err(unavailable)?;
    let Some(study) = found.first() else {
        return Err(HttpError::NotFound(format!("no study {uid}")));
    };
    let mut series: Vec<Match> = archive
        .find_all(query::series_of_study(uid))
        .await
        .map_err(unavailable)?;
    series.sort_by_key(|m| (number(&text(m, tags::SERIES_NUMBER)), m.key.clone()));
    let mut instances: Vec<Match> = archive
        .find_all(query::instances_of_study(uid))
        .await
        .map_err(unavailable)?;
    instances.sort_by_key(|m| (number(&text(m, tags::INSTANCE_NUMBER)), m.key.clone()));
    let mut shown = 0usize;
    let blocks = series
        .iter()
        .map(|s| {
            let rows = instances
                .iter()
                .filter(|i| text(i, tags::SERIES_INSTANCE_UID) == s.key)
                .map(|i| {
                    shown += 1;
                    InstanceRow {
                        uid: i.key.clone(),
                        number: text(i, tags::INSTANCE_NUMBER),
                        sop_class: sop_class(&text(i, tags::SOP_CLASS_UID)),
                        frames: text(i, tags::NUMBER_OF_FRAMES),
                        size: match (text(i, tags::ROWS), text(i, tags::COLUMNS)) {
                            (r, c) if !r.is_empty() && !c.is_empty() => format!("{c}×{r}"),
                            _ => String::new(),
                        },
                        eager: shown <= EAGER_THUMBNAILS,
                    }
                })
                .collect();
            SeriesBlock {
                uid: s.key.clone(),
                number: text(s, tags::SERIES_NUMBER),
                modality: text(s, tags::MODALITY),
                description: text(s, tags::SERIES_DESCRIPTION),
                body_part: text(s, tags::BODY_PART_EXAMINED),
                instances: rows,
            }
        })
        .collect();
    let row = StudyRow::from_match(study);
    let page = StudyPage {
        chrome: Chrome::new(user, format!("Study {} {}", row.patient_name, row.date)),
        referring: super::display::person_name(&text(study, tags::REFERRING_PHYSICIAN_NAME)),
        study_id: text(study, tags::STUDY_ID),
        study: row,
        series: blocks,
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
