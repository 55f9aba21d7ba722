//! Queries of the web portal that C-FIND does not ask: a page of the study list sorted by date
//! (newest first) with its total, and the exam-type catalog (studies per modality). Matching is
//! the query engine's (`Index::find`, the same as C-FIND); what is added here is the order, the
//! window and the counting.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;

use super::Archive;
use crate::index::{Index, Totals};
use crate::query::matching::literal_prefix;
use crate::query::{Condition, Match, Query, QueryError, QueryKey};

/// Candidates handed to the engine at once when walking the date index.
const BATCH: usize = 128;

/// The catalog is recounted when the archive's totals changed, but not more often than
/// `CATALOG_MIN_AGE` (counting reads every study record: ~0.5 s at 100,000 studies, so under a
/// steady ingest a page would otherwise pay it every time), and at least every `CATALOG_MAX_AGE`.
const CATALOG_MIN_AGE: Duration = Duration::from_secs(10);
const CATALOG_MAX_AGE: Duration = Duration::from_secs(60);

/// One page of the study list.
#[derive(Debug, Clone)]
pub struct StudyPage {
    /// The matches of the page, newest first.
    pub studies: Vec<Match>,
    /// Every match of the query, when known without reading past the page.
    pub total: Option<u64>,
    /// More matches follow the page.
    pub more: bool,
}

fn idx_err(e: impl std::fmt::Display) -> QueryError {
    QueryError::Index(e.to_string())
}

/// Whether the engine drives this STUDY-level query by an index other than the study date
/// (it then finds few candidates, and sorting all matches is cheap). Mirrors the engine's plan.
fn driven_by_a_key(q: &Query) -> bool {
    let single = |tag| matches!(q.condition(tag), Some(Condition::Single(_)));
    matches!(
        q.condition(tags::STUDY_INSTANCE_UID),
        Some(Condition::Single(_) | Condition::UidList(_))
    ) || single(tags::PATIENT_ID)
        || single(tags::ACCESSION_NUMBER)
        || match q.condition(tags::PATIENT_NAME) {
            Some(Condition::Single(_)) => true,
            Some(Condition::Wildcard(p)) => !literal_prefix(p).is_empty(),
            _ => false,
        }
}

fn text(m: &Match, tag: dicom_core::Tag) -> String {
    m.identifier
        .get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Newest first: date, then time, then UID, all descending; studies without a date last.
fn sort_newest_first(matches: &mut [Match]) {
    matches.sort_by_cached_key(|m| {
        std::cmp::Reverse((
            text(m, tags::STUDY_DATE),
            text(m, tags::STUDY_TIME),
            m.key.clone(),
        ))
    });
}

fn study_page(
    index: &Index,
    q: &Query,
    offset: usize,
    limit: usize,
) -> Result<StudyPage, QueryError> {
    if driven_by_a_key(q) {
        let mut all = Vec::new();
        index.find(q, |m| {
            all.push(m);
            true
        })?;
        sort_newest_first(&mut all);
        let total = all.len();
        let studies: Vec<Match> = all.into_iter().skip(offset).take(limit).collect();
        return Ok(StudyPage {
            more: offset + studies.len() < total,
            studies,
            total: Some(total as u64),
        });
    }
    // Walk the date index newest first and let the engine match each batch of candidates (a
    // UID list drives it): the walk stops one match after the page.
    let (low, high) = match q.condition(tags::STUDY_DATE) {
        Some(Condition::Range { low, high }) => (low.as_deref(), high.as_deref()),
        _ => (None, None),
    };
    let mut batch_query = q.clone();
    batch_query
        .keys
        .retain(|k| k.tag != tags::STUDY_INSTANCE_UID);
    batch_query.keys.push(QueryKey {
        tag: tags::STUDY_INSTANCE_UID,
        vr: dicom_core::VR::UI,
        condition: Condition::Universal,
        items: None,
    });
    let uid_key = batch_query.keys.len() - 1;
    let mut uids = index.study_uids_newest_first(low, high);
    let mut studies = Vec::new();
    let mut matched = 0usize;
    let mut exhausted = false;
    while studies.len() <= limit {
        let batch = uids
            .by_ref()
            .take(BATCH)
            .collect::<Result<Vec<String>, _>>()
            .map_err(idx_err)?;
        if batch.is_empty() {
            exhausted = true;
            break;
        }
        batch_query.keys[uid_key].condition = Condition::UidList(batch);
        index.find(&batch_query, |m| {
            matched += 1;
            if matched > offset {
                studies.push(m);
            }
            studies.len() <= limit
        })?;
    }
    let more = studies.len() > limit;
    studies.truncate(limit);
    let only_dates = q
        .keys
        .iter()
        .all(|k| k.tag == tags::STUDY_DATE || (k.condition.is_universal() && k.items.is_none()));
    let total = if exhausted {
        Some(matched as u64)
    } else if only_dates && low.is_none() && high.is_none() {
        Some(index.totals().map_err(idx_err)?.studies)
    } else if only_dates {
        Some(index.count_studies_by_date(low, high).map_err(idx_err)?)
    } else {
        None
    };
    Ok(StudyPage {
        studies,
        total,
        more,
    })
}

/// Catalogs by archive (its spool directory: one open archive per data directory) with the
/// totals they were counted at.
type CatalogCache = HashMap<std::path::PathBuf, (Totals, Instant, Arc<Vec<(String, u64)>>)>;
static CATALOGS: LazyLock<Mutex<CatalogCache>> = LazyLock::new(|| Mutex::new(HashMap::new()));

impl Archive {
    /// Page `offset / limit` of the STUDY-level `query`'s matches, newest first.
    pub async fn study_page(
        &self,
        query: Query,
        offset: usize,
        limit: usize,
    ) -> Result<StudyPage, QueryError> {
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || study_page(&index, &query, offset, limit))
            .await
            .map_err(idx_err)?
    }

    /// Every match of `query` (a study's series or instances, a patient's studies), in the
    /// engine's order.
    pub async fn find_all(&self, query: Query) -> Result<Vec<Match>, QueryError> {
        let mut rx = self.find(query);
        let mut out = Vec::new();
        while let Some(m) = rx.recv().await {
            out.push(m?);
        }
        Ok(out)
    }

    /// Like [`Archive::find_all`] for a STUDY-level query, newest first.
    pub async fn find_studies_newest_first(&self, query: Query) -> Result<Vec<Match>, QueryError> {
        let mut all = self.find_all(query).await?;
        sort_newest_first(&mut all);
        Ok(all)
    }

    /// The exam-type catalog: how many studies have each modality, in code order.
    pub async fn modality_catalog(&self) -> Result<Arc<Vec<(String, u64)>>, QueryError> {
        let key = self.inner.spool_dir.clone();
        let totals = self.totals().map_err(idx_err)?;
        if let Ok(cache) = CATALOGS.lock()
            && let Some((at, when, counts)) = cache.get(&key)
            && (when.elapsed() < CATALOG_MIN_AGE
                || (*at == totals && when.elapsed() < CATALOG_MAX_AGE))
        {
            return Ok(counts.clone());
        }
        let index = self.inner.index.clone();
        let counts = tokio::task::spawn_blocking(move || index.study_counts_by_modality())
            .await
            .map_err(idx_err)?
            .map_err(idx_err)?;
        let counts = Arc::new(counts);
        if let Ok(mut cache) = CATALOGS.lock() {
            cache.insert(key, (totals, Instant::now(), counts.clone()));
        }
        Ok(counts)
    }
}
