//! Applying a batch of new instances: records at every level, secondary keys and incremental
//! counts, written in one sled transaction so a crash never leaves counts and records apart.

use std::collections::HashMap;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::placement::{ReplicationTask, placement_key};
use super::record::{
    InstanceRecord, PatientRecord, SeriesRecord, StudyRecord, Totals, name_index_keys,
};
use super::{
    Applied, Index, IndexError, InstanceEntry, Result, TOTALS_KEY, TreeId, compound_key, decode,
    encode,
};

/// Records read or changed during one batch; `None` marks a record to delete.
#[derive(Default)]
struct Overlay {
    instances: HashMap<String, Option<InstanceRecord>>,
    series: HashMap<String, Option<SeriesRecord>>,
    studies: HashMap<String, Option<StudyRecord>>,
    patients: HashMap<String, Option<PatientRecord>>,
    /// Header writes in order: (id, Some(bytes)) inserts, (id, None) deletes.
    headers: Vec<(u64, Option<Vec<u8>>)>,
    /// Secondary-tree writes in order: (tree, key, insert?)
    secondary: Vec<(TreeId, Vec<u8>, bool)>,
    /// Placement and replication-queue writes in order; `None` removes.
    placements: Vec<(TreeId, Vec<u8>, Option<Vec<u8>>)>,
    totals: Totals,
}

macro_rules! cached {
    ($fn_name:ident, $field:ident, $ty:ty, $tree:expr) => {
        fn $fn_name(&mut self, index: &Index, key: &str) -> Result<Option<$ty>> {
            if let Some(v) = self.$field.get(key) {
                return Ok(v.clone());
            }
            let v: Option<$ty> = match index
                .tree($tree)
                .get(key.as_bytes())
                .map_err(IndexError::Read)?
            {
                Some(bytes) => Some(decode($tree, &bytes)?),
                None => None,
            };
            self.$field.insert(key.to_string(), v.clone());
            Ok(v)
        }
    };
}

impl Overlay {
    cached!(instance, instances, InstanceRecord, TreeId::Instances);
    cached!(series, series, SeriesRecord, TreeId::Series);
    cached!(study, studies, StudyRecord, TreeId::Studies);
    cached!(patient, patients, PatientRecord, TreeId::Patients);

    fn secondary(&mut self, tree: TreeId, value: &str, unique: &str, insert: bool) {
        self.secondary
            .push((tree, compound_key(value, unique), insert));
    }

    fn add(&mut self, index: &Index, entry: InstanceEntry) -> Result<()> {
        let InstanceEntry {
            mut instance,
            header,
            series: new_series,
            study: new_study,
            patient: new_patient,
            placements,
            replicate_to,
            replicate_not_before_ms,
        } = entry;
        instance.header_id = index.next_header_id()?;
        // Placements go in before the record that needs them (same transaction anyway).
        let uid = instance.sop_instance_uid.clone();
        let generation = crate::storage::ObjectKey::parse(&instance.object_key)
            .map(|k| k.generation())
            .unwrap_or(0);
        for (site, placement) in placements {
            self.placements.push((
                TreeId::Placements,
                placement_key(&uid, &site),
                Some(encode(&placement)?),
            ));
        }
        for site in replicate_to {
            let task = ReplicationTask {
                sop_instance_uid: uid.clone(),
                generation,
                site,
                attempts: 0,
                not_before_ms: replicate_not_before_ms,
                last_error: String::new(),
            };
            let id = index.next_header_id()?;
            self.placements.push((
                TreeId::Replication,
                id.to_be_bytes().to_vec(),
                Some(encode(&task)?),
            ));
        }
        self.headers.push((instance.header_id, Some(header)));
        let mut series = match self.series(index, &instance.series_uid)? {
            Some(s) => s,
            None => {
                self.secondary(
                    TreeId::SeriesByStudy,
                    &new_series.study_uid,
                    &new_series.series_uid,
                    true,
                );
                self.secondary(
                    TreeId::Modality,
                    &new_series.modality,
                    &new_series.series_uid,
                    true,
                );
                self.totals.series += 1;
                new_series
            }
        };
        let series_is_new = series.num_instances == 0;
        let mut study = match self.study(index, &series.study_uid)? {
            Some(s) => s,
            None => {
                self.secondary(
                    TreeId::StudiesByPatient,
                    &new_study.patient_key,
                    &new_study.study_uid,
                    true,
                );
                self.secondary(
                    TreeId::StudyDate,
                    &new_study.study_date,
                    &new_study.study_uid,
                    true,
                );
                self.secondary(
                    TreeId::Accession,
                    &new_study.accession_number,
                    &new_study.study_uid,
                    true,
                );
                self.totals.studies += 1;
                new_study
            }
        };
        let study_is_new = study.num_instances == 0;
        let mut patient = match self.patient(index, &study.patient_key)? {
            Some(p) => p,
            None => {
                for name in name_index_keys(&new_patient.patient_name) {
                    self.secondary(TreeId::PatientName, &name, &new_patient.patient_key, true);
                }
                self.secondary(
                    TreeId::PatientId,
                    &new_patient.patient_id,
                    &new_patient.patient_key,
                    true,
                );
                self.totals.patients += 1;
                new_patient
            }
        };
        if series_is_new {
            study.num_series += 1;
            patient.num_series += 1;
            count_up(&mut study.modalities, &series.modality);
        }
        if study_is_new {
            patient.num_studies += 1;
        }
        count_up(&mut study.sop_classes, &instance.sop_class_uid);
        series.num_instances += 1;
        study.num_instances += 1;
        patient.num_instances += 1;
        self.totals.instances += 1;
        self.totals.bytes += instance.size;
        self.secondary(
            TreeId::InstancesBySeries,
            &series.series_uid,
            &instance.sop_instance_uid,
            true,
        );
        self.series.insert(series.series_uid.clone(), Some(series));
        self.studies.insert(study.study_uid.clone(), Some(study));
        self.patients
            .insert(patient.patient_key.clone(), Some(patient));
        self.instances
            .insert(instance.sop_instance_uid.clone(), Some(instance));
        Ok(())
    }

    fn remove(&mut self, index: &Index, old: InstanceRecord) -> Result<()> {
        // The old generation's placements go with it; the new entry's are written after.
        for (site, _) in index.placements(&old.sop_instance_uid)? {
            self.placements.push((
                TreeId::Placements,
                placement_key(&old.sop_instance_uid, &site),
                None,
            ));
        }
        self.totals.instances = self.totals.instances.saturating_sub(1);
        self.totals.bytes = self.totals.bytes.saturating_sub(old.size);
        self.secondary(
            TreeId::InstancesBySeries,
            &old.series_uid,
            &old.sop_instance_uid,
            false,
        );
        self.instances.insert(old.sop_instance_uid.clone(), None);
        self.headers.push((old.header_id, None));
        let Some(mut series) = self.series(index, &old.series_uid)? else {
            return Ok(());
        };
        series.num_instances = series.num_instances.saturating_sub(1);
        let series_gone = series.num_instances == 0;
        let study_uid = series.study_uid.clone();
        let modality = series.modality.clone();
        if series_gone {
            self.secondary(
                TreeId::SeriesByStudy,
                &series.study_uid,
                &series.series_uid,
                false,
            );
            self.secondary(
                TreeId::Modality,
                &series.modality,
                &series.series_uid,
                false,
            );
            self.totals.series = self.totals.series.saturating_sub(1);
            self.series.insert(series.series_uid.clone(), None);
        } else {
            self.series.insert(series.series_uid.clone(), Some(series));
        }
        let Some(mut study) = self.study(index, &study_uid)? else {
            return Ok(());
        };
        study.num_instances = study.num_instances.saturating_sub(1);
        count_down(&mut study.sop_classes, &old.sop_class_uid);
        if series_gone {
            study.num_series = study.num_series.saturating_sub(1);
            count_down(&mut study.modalities, &modality);
        }
        let study_gone = study.num_instances == 0;
        let patient_key = study.patient_key.clone();
        if study_gone {
            self.secondary(
                TreeId::StudiesByPatient,
                &study.patient_key,
                &study.study_uid,
                false,
            );
            self.secondary(
                TreeId::StudyDate,
                &study.study_date,
                &study.study_uid,
                false,
            );
            self.secondary(
                TreeId::Accession,
                &study.accession_number,
                &study.study_uid,
                false,
            );
            self.totals.studies = self.totals.studies.saturating_sub(1);
            self.studies.insert(study.study_uid.clone(), None);
        } else {
            self.studies.insert(study.study_uid.clone(), Some(study));
        }
        let Some(mut patient) = self.patient(index, &patient_key)? else {
            return Ok(());
        };
        patient.num_instances = patient.num_instances.saturating_sub(1);
        if series_gone {
            patient.num_series = patient.num_series.saturating_sub(1);
        }
        if study_gone {
            patient.num_studies = patient.num_studies.saturating_sub(1);
        }
        if patient.num_instances == 0 {
            for name in name_index_keys(&patient.patient_name) {
                self.secondary(TreeId::PatientName, &name, &patient.patient_key, false);
            }
            self.secondary(
                TreeId::PatientId,
                &patient.patient_id,
                &patient.patient_key,
                false,
            );
            self.totals.patients = self.totals.patients.saturating_sub(1);
            self.patients.insert(patient.patient_key.clone(), None);
        } else {
            self.patients
                .insert(patient.patient_key.clone(), Some(patient));
        }
        Ok(())
    }

    /// The writes per tree, holding the final state of everything touched; `None` removes.
    fn into_writes(self) -> Result<Vec<(TreeId, Vec<Write>)>> {
        let mut writes: Vec<Vec<Write>> = TreeId::ALL.iter().map(|_| Vec::new()).collect();
        fn put<T: serde::Serialize>(
            writes: &mut Vec<Write>,
            records: HashMap<String, Option<T>>,
        ) -> Result<()> {
            for (key, record) in records {
                let value = record.as_ref().map(encode).transpose()?;
                writes.push((key.into_bytes(), value));
            }
            Ok(())
        }
        put(&mut writes[TreeId::Instances as usize], self.instances)?;
        put(&mut writes[TreeId::Series as usize], self.series)?;
        put(&mut writes[TreeId::Studies as usize], self.studies)?;
        put(&mut writes[TreeId::Patients as usize], self.patients)?;
        for (tree, key, insert) in self.secondary {
            writes[tree as usize].push((key, insert.then(Vec::new)));
        }
        for (tree, key, value) in self.placements {
            writes[tree as usize].push((key, value));
        }
        for (id, header) in self.headers {
            writes[TreeId::Headers as usize].push((id.to_be_bytes().to_vec(), header));
        }
        writes[TreeId::Meta as usize].push((TOTALS_KEY.to_vec(), Some(encode(&self.totals)?)));
        Ok(TreeId::ALL
            .iter()
            .zip(writes)
            .filter(|(_, w)| !w.is_empty())
            .map(|(tree, w)| (*tree, w))
            .collect())
    }
}

/// One key's new value (`None` removes it).
type Write = (Vec<u8>, Option<Vec<u8>>);

/// What an [`Index::apply`] overwrote, in write order, so [`Index::undo`] can put it back.
#[derive(Debug, Default)]
pub struct Undo {
    previous: Vec<(TreeId, Vec<u8>, Option<sled::IVec>)>,
}

/// Distinct values with how many members have each (ModalitiesInStudy, SOPClassesInStudy).
fn count_up(counts: &mut Vec<(String, u64)>, value: &str) {
    match counts.iter_mut().find(|(v, _)| v == value) {
        Some((_, n)) => *n += 1,
        None => counts.push((value.to_string(), 1)),
    }
}

fn count_down(counts: &mut Vec<(String, u64)>, value: &str) {
    if let Some(pos) = counts.iter().position(|(v, _)| v == value) {
        counts[pos].1 -= 1;
        if counts[pos].1 == 0 {
            counts.remove(pos);
        }
    }
}

impl Index {
    /// Add instances at every level in one atomic write (not yet flushed: call [`Index::flush`]).
    /// An instance whose SOP Instance UID is already indexed replaces the old record.
    /// Returns what each entry did, and what the write overwrote (for [`Index::undo`]).
    pub fn apply(&self, entries: Vec<InstanceEntry>) -> Result<(Vec<Applied>, Undo)> {
        let _writer = self
            .writer
            .lock()
            .map_err(|_| IndexError::Write("index writer lock poisoned".into()))?;
        let mut overlay = Overlay {
            totals: self.totals()?,
            ..Overlay::default()
        };
        let mut applied = Vec::with_capacity(entries.len());
        for entry in entries {
            let uid = entry.instance.sop_instance_uid.clone();
            match overlay.instance(self, &uid)? {
                Some(old) => {
                    overlay.remove(self, old)?;
                    applied.push(Applied::Replaced);
                }
                None => applied.push(Applied::Inserted),
            }
            overlay.add(self, entry)?;
        }
        let writes = overlay.into_writes()?;
        // Only the trees written take part: a sled transaction costs per tree it spans.
        let trees: Vec<&sled::Tree> = writes.iter().map(|(id, _)| self.tree(*id)).collect();
        // The closure may run again on a conflict: it starts from an empty undo log each time.
        let undo = std::cell::RefCell::new(Undo::default());
        trees
            .as_slice()
            .transaction(|trees| {
                let mut undo = undo.borrow_mut();
                undo.previous.clear();
                for (tree, (id, writes)) in trees.iter().zip(writes.iter()) {
                    for (key, value) in writes {
                        let previous = match value {
                            Some(v) => tree.insert(key.as_slice(), v.as_slice())?,
                            None => tree.remove(key.as_slice())?,
                        };
                        undo.previous.push((*id, key.clone(), previous));
                    }
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| IndexError::Write(format!("{e:?}")))?;
        Ok((applied, undo.into_inner()))
    }

    /// Put back what an [`Index::apply`] overwrote (its flush failed), in one transaction.
    /// Must run before the next `apply`: the committer's index stage is the only writer.
    pub fn undo(&self, undo: Undo) -> Result<()> {
        let _writer = self
            .writer
            .lock()
            .map_err(|_| IndexError::Write("index writer lock poisoned".into()))?;
        let mut ids: Vec<TreeId> = Vec::new();
        for (id, _, _) in &undo.previous {
            if !ids.contains(id) {
                ids.push(*id);
            }
        }
        let trees: Vec<&sled::Tree> = ids.iter().map(|id| self.tree(*id)).collect();
        trees
            .as_slice()
            .transaction(|trees| {
                for (id, key, previous) in undo.previous.iter().rev() {
                    let Some(pos) = ids.iter().position(|i| i == id) else {
                        continue;
                    };
                    match previous {
                        Some(v) => trees[pos].insert(key.as_slice(), v.clone())?,
                        None => trees[pos].remove(key.as_slice())?,
                    };
                }
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(|e: TransactionError<()>| IndexError::Write(format!("{e:?}")))?;
        Ok(())
    }
}
