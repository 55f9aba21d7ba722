//! What audit messages name about stored instances: their studies, patients and SOP classes,
//! read from the index (the network layers know only UIDs).

use std::collections::BTreeMap;

use super::Archive;
use crate::audit::Study;
use crate::index::Index;

impl Archive {
    /// The studies these instances belong to, each with its patient and the instances per SOP
    /// class among `sop_instance_uids`. Instances not (or no longer) indexed are left out.
    pub async fn audit_studies_of_instances(&self, sop_instance_uids: Vec<String>) -> Vec<Study> {
        let index = self.inner.index.clone();
        tokio::task::spawn_blocking(move || studies_of(&index, &sop_instance_uids))
            .await
            .unwrap_or_default()
    }

    /// A whole study, all its instances counted (downloads and views of a study).
    pub async fn audit_study(&self, study_uid: &str) -> Option<Study> {
        let index = self.inner.index.clone();
        let uid = study_uid.to_string();
        tokio::task::spawn_blocking(move || {
            let record = index.study(&uid).ok()??;
            let mut study = with_patient(&index, &uid, &record.patient_key);
            for (class, n) in record.sop_classes {
                study.add(&class, n);
            }
            Some(study)
        })
        .await
        .ok()
        .flatten()
    }

    /// The study of one series, its instances counted.
    pub async fn audit_series(&self, series_uid: &str) -> Vec<Study> {
        let index = self.inner.index.clone();
        let uid = series_uid.to_string();
        tokio::task::spawn_blocking(move || {
            let uids = index.instance_uids_of_series(&uid).unwrap_or_default();
            studies_of(&index, &uids)
        })
        .await
        .unwrap_or_default()
    }
}

fn with_patient(index: &Index, study_uid: &str, patient_key: &str) -> Study {
    let patient = index.patient(patient_key).ok().flatten();
    Study {
        study_uid: study_uid.to_string(),
        patient_id: patient
            .as_ref()
            .map_or_else(String::new, |p| p.patient_id.clone()),
        patient_name: patient.map_or_else(String::new, |p| p.patient_name),
        sop_classes: BTreeMap::new(),
    }
}

fn studies_of(index: &Index, sop_instance_uids: &[String]) -> Vec<Study> {
    let mut studies: BTreeMap<String, Study> = BTreeMap::new();
    for uid in sop_instance_uids {
        let Ok(Some(record)) = index.instance(uid) else {
            continue;
        };
        studies
            .entry(record.study_uid.clone())
            .or_insert_with(|| with_patient(index, &record.study_uid, &record.patient_key))
            .add(&record.sop_class_uid, 1);
    }
    studies.into_values().collect()
}
