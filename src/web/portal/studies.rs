//! `/studies`: the portal (thesis Fig. 3-9): exam-type catalog, filter form and the study list,
//! newest first, a page at a time.

use std::collections::HashMap;
use std::time::Instant;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderValue;
use axum::response::{Html, IntoResponse, Response};

use super::catalog::{ExamType, exam_types};
use super::display::StudyRow;
use super::params::StudySearch;
use super::{Chrome, render};
use crate::web::auth::CurrentUser;
use crate::web::{HttpError, WebState};

#[derive(Template)]
#[template(path = "studies.html", config = "src/web/askama.toml")]
pub struct StudiesPage {
    pub chrome: Chrome,
    pub search: StudySearch,
    pub catalog: Vec<ExamType>,
    pub studies: Vec<StudyRow>,
    /// "N studies" when known.
    pub total: Option<u64>,
    /// 1-based numbers of the first and last row shown.
    pub first: usize,
    pub last: usize,
    pub prev_href: Option<String>,
    pub next_href: Option<String>,
    pub pages: Option<u64>,
    pub all_href: String,
}

/// The page for `search` (everything but the session check, so tests can call it).
pub async fn page(
    state: &WebState,
    user: &CurrentUser,
    search: StudySearch,
) -> Result<Html<String>, HttpError> {
    let archive = state.archive()?;
    let query = search.query()?;
    let offset = (search.page - 1) * search.per_page;
    let found = archive
        .study_page(query, offset, search.per_page)
        .await
        .map_err(|e| HttpError::Unavailable(format!("search failed: {e}")))?;
    let catalog = exam_types(archive, &search).await?;
    let studies: Vec<StudyRow> = found.studies.iter().map(StudyRow::from_match).collect();
    let page = StudiesPage {
        chrome: Chrome::new(user, "Studies"),
        first: if studies.is_empty() { 0 } else { offset + 1 },
        last: offset + studies.len(),
        prev_href: (search.page > 1).then(|| search.href(search.page - 1)),
        next_href: found.more.then(|| search.href(search.page + 1)),
        pages: found
            .total
            .map(|t| t.div_ceil(search.per_page as u64).max(1)),
        total: found.total,
        all_href: "/studies".into(),
        studies,
        catalog,
        search,
    };
    render(&page)
}

pub async fn handler(
    user: CurrentUser,
    State(state): State<WebState>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, HttpError> {
    let started = Instant::now();
    let Query(params) = params.map_err(|e| HttpError::BadRequest(e.body_text()))?;
    let search = StudySearch::parse(&params)?;
    let html = page(&state, &user, search).await?;
    let mut response = html.into_response();
    // Server time of the search and page (bench/portal reads it; browsers show it in devtools).
    if let Ok(v) = HeaderValue::from_str(&format!(
        "portal;dur={:.3}",
        started.elapsed().as_secs_f64() * 1000.0
    )) {
        response.headers_mut().insert("server-timing", v);
    }
    Ok(response)
}
