//! The exam-type catalog (thesis Fig. 3-9, block A): the modalities in the archive with how
//! many studies have each, named from `dictionaries/modalities.tsv`; each entry filters the
//! study list by that modality.

use super::params::StudySearch;
use crate::archive::Archive;
use crate::web::HttpError;

#[derive(Debug, Clone)]
pub struct ExamType {
    pub code: String,
    pub name: String,
    pub studies: u64,
    /// The current search restricted to this modality.
    pub href: String,
    pub selected: bool,
}

pub async fn exam_types(
    archive: &Archive,
    search: &StudySearch,
) -> Result<Vec<ExamType>, HttpError> {
    let counts = archive
        .modality_catalog()
        .await
        .map_err(|e| HttpError::Unavailable(e.to_string()))?;
    Ok(counts
        .iter()
        .map(|(code, studies)| ExamType {
            name: crate::dictionary::modality_name(code)
                .unwrap_or(code)
                .to_string(),
            code: code.clone(),
            studies: *studies,
            href: search.with_modality(code).href(1),
            selected: search.modality == *code,
        })
        .collect())
}
