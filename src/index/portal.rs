//! Orderings the web portal needs and C-FIND does not: study UIDs newest first (so a page of
//! the study list stops reading after the page), and how many studies have each modality (the
//! exam-type catalog). Matching itself stays with the query engine (`find`).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{IndexError, Result, StudyRecord, TreeId, decode};

/// The unique key after the 0 separator of a secondary-index key.
fn unique_part(key: &[u8]) -> Option<String> {
    let pos = key.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&key[pos + 1..])
        .ok()
        .map(str::to_string)
}

/// The StudyDate index range for normalised (YYYYMMDD) bounds: `low` inclusive, `high` covers
/// every key starting with it. Studies without a date have the key `\0uid`, below any bound.
fn date_range(low: Option<&str>, high: Option<&str>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = match low {
        Some(l) => Bound::Included(l.as_bytes().to_vec()),
        None => Bound::Unbounded,
    };
    let end = match high {
        Some(h) => Bound::Excluded([h.as_bytes(), &[0xff]].concat()),
        None => Bound::Unbounded,
    };
    (start, end)
}

impl super::Index {
    /// Study Instance UIDs by Study Date, newest first, within the given bounds; studies without
    /// a date come last (only when there is no lower bound). Within one date the order is the
    /// reverse of the UIDs' byte order: stable across pages.
    pub fn study_uids_newest_first(
        &self,
        low: Option<&str>,
        high: Option<&str>,
    ) -> impl Iterator<Item = Result<String>> + '_ {
        self.tree(TreeId::StudyDate)
            .range::<Vec<u8>, _>(date_range(low, high))
            .keys()
            .rev()
            .filter_map(|k| match k {
                Ok(k) => unique_part(&k).map(Ok),
                Err(e) => Some(Err(IndexError::Read(e))),
            })
    }

    /// How many studies have a Study Date within the bounds (each study has one index entry).
    pub fn count_studies_by_date(&self, low: Option<&str>, high: Option<&str>) -> Result<u64> {
        let mut n = 0u64;
        for k in self
            .tree(TreeId::StudyDate)
            .range::<Vec<u8>, _>(date_range(low, high))
            .keys()
        {
            k.map_err(IndexError::Read)?;
            n += 1;
        }
        Ok(n)
    }

    /// Studies per modality (a study counts once for each modality of its series), in code
    /// order. Reads every study record: callers cache it.
    pub fn study_counts_by_modality(&self) -> Result<Vec<(String, u64)>> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for item in self.tree(TreeId::Studies).iter().values() {
            let bytes = item.map_err(IndexError::Read)?;
            let study: StudyRecord = decode(TreeId::Studies, &bytes)?;
            for (modality, _) in study.modalities {
                if !modality.is_empty() {
                    *counts.entry(modality).or_default() += 1;
                }
            }
        }
        Ok(counts.into_iter().collect())
    }
}
