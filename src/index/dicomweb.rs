//! Reads for DICOMweb's WADO-RS `/metadata`: which instances a study, series or instance path
//! names (checking that each level belongs to the one above), and an instance's stored header
//! decoded, so metadata is served from the index alone.

use dicom_object::InMemDicomObject;

use super::{Index, InstanceRecord, Result, TreeId};

/// Which part of a `/studies/{study}[/series/{series}[/instances/{instance}]]` path is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    Study(String),
    Series(String),
    Instance(String),
}

impl Index {
    /// Series Instance UIDs of a study, in UID order.
    pub fn series_uids_of_study(&self, study_uid: &str) -> Result<Vec<String>> {
        self.children(TreeId::SeriesByStudy, study_uid)
    }

    /// The SOP Instance UIDs the path names (series in UID order, then instances in UID order),
    /// or which level of it does not exist (a series of another study counts as missing).
    pub fn instances_in_path(
        &self,
        study_uid: &str,
        series_uid: Option<&str>,
        instance_uid: Option<&str>,
    ) -> Result<std::result::Result<Vec<String>, Missing>> {
        if self.study(study_uid)?.is_none() {
            return Ok(Err(Missing::Study(study_uid.to_string())));
        }
        let Some(series_uid) = series_uid else {
            let mut out = Vec::new();
            for series in self.series_uids_of_study(study_uid)? {
                out.extend(self.instance_uids_of_series(&series)?);
            }
            return Ok(Ok(out));
        };
        match self.series(series_uid)? {
            Some(s) if s.study_uid == study_uid => {}
            _ => return Ok(Err(Missing::Series(series_uid.to_string()))),
        }
        let Some(instance_uid) = instance_uid else {
            return Ok(Ok(self.instance_uids_of_series(series_uid)?));
        };
        match self.instance(instance_uid)? {
            Some(i) if i.series_uid == series_uid && i.study_uid == study_uid => {
                Ok(Ok(vec![instance_uid.to_string()]))
            }
            _ => Ok(Err(Missing::Instance(instance_uid.to_string()))),
        }
    }

    /// An instance's record with its stored header decoded (Unicode text), or `None` when the
    /// instance is gone (deleted meanwhile) or its header cannot be read.
    pub fn instance_header(
        &self,
        sop_instance_uid: &str,
    ) -> Result<Option<(InstanceRecord, InMemDicomObject)>> {
        let Some(record) = self.instance(sop_instance_uid)? else {
            return Ok(None);
        };
        let Some(bytes) = self.header_bytes(&record)? else {
            return Ok(None);
        };
        Ok(super::find::decode_header(&bytes).map(|h| (record, h)))
    }
}
