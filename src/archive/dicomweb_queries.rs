//! Reads for DICOMweb: a window (`offset`, `limit`) of a query's matches for QIDO-RS, and the
//! stored headers of a study, series or instance for WADO-RS `/metadata`, streamed from the
//! index (never from object files) through a bounded channel so memory stays bounded however
//! large the study.

use dicom_object::InMemDicomObject;
use tokio::sync::mpsc;

use super::Archive;
use crate::index::{InstanceRecord, Missing};
use crate::query::{Match, Query, QueryError};

/// Headers in flight between the index thread and the response writer.
const HEADER_BUFFER: usize = 32;

/// One instance's record and its stored header (every element before Pixel Data).
#[derive(Debug, Clone)]
pub struct InstanceHeader {
    pub record: InstanceRecord,
    pub header: InMemDicomObject,
}

/// Why the headers of a path cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadersError {
    #[error("no study {0}")]
    NoStudy(String),
    #[error("no series {0} in this study")]
    NoSeries(String),
    #[error("no instance {0} in this series")]
    NoInstance(String),
    #[error("index read failed: {0}")]
    Index(String),
}

/// A window of matches and whether more follow it.
#[derive(Debug, Clone)]
pub struct MatchWindow {
    pub matches: Vec<Match>,
    pub more: bool,
}

fn idx_err(e: impl std::fmt::Display) -> QueryError {
    QueryError::Index(e.to_string())
}

impl Archive {
    /// Matches `offset .. offset + limit` of `query` in the engine's order; the search stops at
    /// the first match after the window.
    pub async fn find_window(
        &self,
        query: Query,
        offset: usize,
        limit: usize,
    ) -> Result<MatchWindow, QueryError> {
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = 0usize;
            let mut matches = Vec::new();
            let mut more = false;
            index.find(&query, |m| {
                seen += 1;
                if seen <= offset {
                    return true;
                }
                if matches.len() == limit {
                    more = true;
                    return false;
                }
                matches.push(m);
                true
            })?;
            Ok(MatchWindow { matches, more })
        })
        .await
        .map_err(idx_err)?
    }

    /// The unique keys of every match of `query` (a relational search's first step).
    pub async fn find_keys(&self, query: Query) -> Result<Vec<String>, QueryError> {
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            index.find(&query, |m| {
                keys.push(m.key);
                true
            })?;
            Ok(keys)
        })
        .await
        .map_err(idx_err)?
    }

    /// The headers of every instance of a study, a series of it, or one instance of that
    /// series (after checking that each exists and belongs to the level above), in series then
    /// SOP Instance UID order. Headers arrive on the channel as they are read; dropping the
    /// receiver stops the reading.
    pub async fn instance_headers(
        &self,
        study_uid: &str,
        series_uid: Option<&str>,
        instance_uid: Option<&str>,
    ) -> Result<mpsc::Receiver<Result<InstanceHeader, HeadersError>>, HeadersError> {
        let index = self.inner.index.clone();
        let (study, series, instance) = (
            study_uid.to_string(),
            series_uid.map(str::to_string),
            instance_uid.map(str::to_string),
        );
        let uids = tokio::task::spawn_blocking(move || {
            index.instances_in_path(&study, series.as_deref(), instance.as_deref())
        })
        .await
        .map_err(|e| HeadersError::Index(e.to_string()))?
        .map_err(|e| HeadersError::Index(e.to_string()))?
        .map_err(|missing| match missing {
            Missing::Study(s) => HeadersError::NoStudy(s),
            Missing::Series(s) => HeadersError::NoSeries(s),
            Missing::Instance(s) => HeadersError::NoInstance(s),
        })?;
        let (tx, rx) = mpsc::channel(HEADER_BUFFER);
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || {
            for uid in uids {
                let item = match index.instance_header(&uid) {
                    // Removed since the listing, or a header that cannot be decoded: the
                    // instance is left out rather than failing the whole answer.
                    Ok(None) => continue,
                    Ok(Some((record, header))) => Ok(InstanceHeader { record, header }),
                    Err(e) => Err(HeadersError::Index(e.to_string())),
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        Ok(rx)
    }
}
