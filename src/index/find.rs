//! Planning and running a query over the sled trees. Blocking: run it on a blocking thread.
//!
//! The plan takes the first usable key in order of selectivity — unique keys (UID lists), then
//! PatientID, AccessionNumber, PatientName prefix, StudyDate range, modality — and falls back to
//! a streaming scan of the level's tree only when no key can drive an index. Every candidate is
//! then checked against every key with the full matching rules.

use std::collections::HashSet;
use std::ops::Bound;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use crate::index::{Index, InstanceRecord, TreeId, compound_key, fold_case};
use crate::query::charset::{self, dataset::Declared};
use crate::query::matching::{Condition, ValueKind, literal_prefix, normalize_temporal};
use crate::query::{FindOutcome, Level, Match, NameRules, Query, QueryError, QueryKey};

type Result<T> = std::result::Result<T, QueryError>;

fn idx_err(e: impl std::fmt::Display) -> QueryError {
    QueryError::Index(e.to_string())
}

/// The unique key after the 0 separator of a secondary-index key.
fn unique_part(key: &[u8]) -> Option<String> {
    let pos = key.iter().position(|b| *b == 0)?;
    std::str::from_utf8(&key[pos + 1..])
        .ok()
        .map(str::to_string)
}

/// Control flow of candidate visiting: `Ok(true)` goes on, `Ok(false)` stops.
type Visit<'v> = dyn FnMut(&str) -> Result<bool> + 'v;

impl Index {
    /// Run `query`, calling `on_match` for each match until it returns `false`.
    pub fn find(
        &self,
        query: &Query,
        mut on_match: impl FnMut(Match) -> bool,
    ) -> Result<FindOutcome> {
        let mut stopped = false;
        let mut visit = |key: &str| -> Result<bool> {
            let Some(mut view) = View::load(self, query.level, key)? else {
                return Ok(true); // removed meanwhile
            };
            if !view.matches(query)? {
                return Ok(true);
            }
            let identifier = view.identifier(query)?;
            let go_on = on_match(Match {
                level: query.level,
                key: key.to_string(),
                identifier,
            });
            stopped = !go_on;
            Ok(go_on)
        };
        self.candidates(query, &mut visit)?;
        Ok(if stopped {
            FindOutcome::Stopped
        } else {
            FindOutcome::Complete
        })
    }

    /// SOP Instance UIDs below every match of `query` (for C-MOVE / C-GET).
    pub fn instances_of_matches(
        &self,
        query: &Query,
        mut on_instance: impl FnMut(InstanceRecord) -> bool,
    ) -> Result<FindOutcome> {
        let mut matched: Vec<String> = Vec::new();
        self.find(query, |m| {
            matched.push(m.key);
            true
        })?;
        for key in matched {
            let mut sops = Vec::new();
            self.instances_below(query.level, &key, &mut sops)?;
            for sop in sops {
                if let Some(record) = self.instance(&sop).map_err(idx_err)?
                    && !on_instance(record)
                {
                    return Ok(FindOutcome::Stopped);
                }
            }
        }
        Ok(FindOutcome::Complete)
    }

    fn instances_below(&self, level: Level, key: &str, out: &mut Vec<String>) -> Result<()> {
        match level {
            Level::Image => out.push(key.to_string()),
            Level::Series => {
                self.scan_secondary(
                    TreeId::InstancesBySeries,
                    &compound_key(key, ""),
                    &mut |k| {
                        out.push(k.to_string());
                        Ok(true)
                    },
                )?;
            }
            Level::Study => {
                let mut series = Vec::new();
                self.scan_secondary(TreeId::SeriesByStudy, &compound_key(key, ""), &mut |k| {
                    series.push(k.to_string());
                    Ok(true)
                })?;
                for s in series {
                    self.instances_below(Level::Series, &s, out)?;
                }
            }
            Level::Patient => {
                let mut studies = Vec::new();
                self.scan_secondary(TreeId::StudiesByPatient, &compound_key(key, ""), &mut |k| {
                    studies.push(k.to_string());
                    Ok(true)
                })?;
                for s in studies {
                    self.instances_below(Level::Study, &s, out)?;
                }
            }
        }
        Ok(())
    }

    /// Visit the unique keys of a secondary tree under `prefix`; returns false if stopped.
    fn scan_secondary(&self, tree: TreeId, prefix: &[u8], visit: &mut Visit<'_>) -> Result<bool> {
        for item in self.tree(tree).scan_prefix(prefix).keys() {
            let key = item.map_err(idx_err)?;
            if let Some(unique) = unique_part(&key)
                && !visit(&unique)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Visit the children (per a parent→child secondary tree) of each parent in turn.
    fn scan_children(
        &self,
        tree: TreeId,
        parents: &[String],
        visit: &mut Visit<'_>,
    ) -> Result<bool> {
        for parent in parents {
            if !self.scan_secondary(tree, &compound_key(parent, ""), visit)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn scan_range(
        &self,
        tree: TreeId,
        low: Option<&str>,
        high: Option<&str>,
        visit: &mut Visit<'_>,
    ) -> Result<bool> {
        let start = match low {
            Some(l) => Bound::Included(l.as_bytes().to_vec()),
            None => Bound::Unbounded,
        };
        let end = match high {
            // Every key starting with `high` sorts before high + 0xFF.
            Some(h) => Bound::Excluded([h.as_bytes(), &[0xff]].concat()),
            None => Bound::Unbounded,
        };
        for item in self.tree(tree).range::<Vec<u8>, _>((start, end)).keys() {
            let key = item.map_err(idx_err)?;
            if let Some(unique) = unique_part(&key)
                && !visit(&unique)?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn scan_primary(&self, tree: TreeId, visit: &mut Visit<'_>) -> Result<bool> {
        for item in self.tree(tree).iter().keys() {
            let key = item.map_err(idx_err)?;
            let key = String::from_utf8_lossy(&key).into_owned();
            if !visit(&key)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Patient keys whose name index entries can match a PN condition, if the condition has a
    /// literal prefix to seek to.
    fn patients_by_name(
        &self,
        condition: &Condition,
        visit: &mut Visit<'_>,
    ) -> Result<Option<bool>> {
        let prefix = match condition {
            Condition::Single(v) => compound_key(&fold_case(v), ""),
            Condition::Wildcard(p) if !literal_prefix(p).is_empty() => {
                fold_case(literal_prefix(p)).into_bytes()
            }
            _ => return Ok(None),
        };
        let mut seen = HashSet::new();
        self.scan_secondary(TreeId::PatientName, &prefix, &mut |k| {
            if seen.insert(k.to_string()) {
                visit(k)
            } else {
                Ok(true)
            }
        })
        .map(Some)
    }

    fn studies_of_patient(
        &self,
        patient_key: &str,
        seen: &mut HashSet<String>,
        visit: &mut Visit<'_>,
    ) -> Result<bool> {
        self.scan_secondary(
            TreeId::StudiesByPatient,
            &compound_key(patient_key, ""),
            &mut |s| {
                if seen.insert(s.to_string()) {
                    visit(s)
                } else {
                    Ok(true)
                }
            },
        )
    }

    /// Visit candidate unique keys of the query level, using the most selective index.
    fn candidates(&self, q: &Query, visit: &mut Visit<'_>) -> Result<bool> {
        let single = |tag: Tag| match q.condition(tag) {
            Some(Condition::Single(v)) => Some(v.clone()),
            _ => None,
        };
        let uid_list = |tag: Tag| match q.condition(tag) {
            Some(Condition::Single(v)) => Some(vec![v.clone()]),
            Some(Condition::UidList(l)) => Some(l.clone()),
            _ => None,
        };
        match q.level {
            Level::Patient => {
                if let Some(id) = single(tags::PATIENT_ID) {
                    return self.scan_secondary(TreeId::PatientId, &compound_key(&id, ""), visit);
                }
                if let Some(c) = q.condition(tags::PATIENT_NAME)
                    && let Some(done) = self.patients_by_name(c, visit)?
                {
                    return Ok(done);
                }
                self.scan_primary(TreeId::Patients, visit)
            }
            Level::Study => {
                if let Some(uids) = uid_list(tags::STUDY_INSTANCE_UID) {
                    return visit_all(&uids, visit);
                }
                if let Some(id) = single(tags::PATIENT_ID) {
                    let mut seen = HashSet::new();
                    return self.scan_secondary(
                        TreeId::PatientId,
                        &compound_key(&id, ""),
                        &mut |pkey| self.studies_of_patient(pkey, &mut seen, visit),
                    );
                }
                if let Some(acc) = single(tags::ACCESSION_NUMBER) {
                    return self.scan_secondary(TreeId::Accession, &compound_key(&acc, ""), visit);
                }
                if let Some(c) = q.condition(tags::PATIENT_NAME) {
                    let mut seen = HashSet::new();
                    let done = self.patients_by_name(c, &mut |pkey| {
                        self.studies_of_patient(pkey, &mut seen, visit)
                    })?;
                    if let Some(done) = done {
                        return Ok(done);
                    }
                }
                if let Some(Condition::Range { low, high }) = q.condition(tags::STUDY_DATE) {
                    return self.scan_range(
                        TreeId::StudyDate,
                        low.as_deref(),
                        high.as_deref(),
                        visit,
                    );
                }
                if let Some(modality) = single(tags::MODALITIES_IN_STUDY) {
                    let mut seen = HashSet::new();
                    return self.scan_secondary(
                        TreeId::Modality,
                        &compound_key(&modality, ""),
                        &mut |series_uid| match self.series(series_uid).map_err(idx_err)? {
                            Some(s) if seen.insert(s.study_uid.clone()) => visit(&s.study_uid),
                            _ => Ok(true),
                        },
                    );
                }
                self.scan_primary(TreeId::Studies, visit)
            }
            Level::Series => {
                if let Some(uids) = uid_list(tags::SERIES_INSTANCE_UID) {
                    return visit_all(&uids, visit);
                }
                if let Some(studies) = uid_list(tags::STUDY_INSTANCE_UID) {
                    return self.scan_children(TreeId::SeriesByStudy, &studies, visit);
                }
                if let Some(modality) = single(tags::MODALITY) {
                    return self.scan_secondary(
                        TreeId::Modality,
                        &compound_key(&modality, ""),
                        visit,
                    );
                }
                self.scan_primary(TreeId::Series, visit)
            }
            Level::Image => {
                if let Some(uids) = uid_list(tags::SOP_INSTANCE_UID) {
                    return visit_all(&uids, visit);
                }
                if let Some(series) = uid_list(tags::SERIES_INSTANCE_UID) {
                    return self.scan_children(TreeId::InstancesBySeries, &series, visit);
                }
                if let Some(studies) = uid_list(tags::STUDY_INSTANCE_UID) {
                    let mut series = Vec::new();
                    self.scan_children(TreeId::SeriesByStudy, &studies, &mut |s| {
                        series.push(s.to_string());
                        Ok(true)
                    })?;
                    return self.scan_children(TreeId::InstancesBySeries, &series, visit);
                }
                self.scan_primary(TreeId::Instances, visit)
            }
        }
    }
}

fn visit_all(keys: &[String], visit: &mut Visit<'_>) -> Result<bool> {
    for k in keys {
        if !visit(k)? {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The attributes of one candidate entity: values known from the index records, and the stored
/// header of a representative instance for everything else (decoded only when needed).
struct View<'a> {
    index: &'a Index,
    level: Level,
    computed: Vec<(Tag, String)>,
    representative: Option<String>,
    header: Option<Option<InMemDicomObject>>,
}

fn join(values: impl IntoIterator<Item = String>) -> String {
    values.into_iter().collect::<Vec<_>>().join("\\")
}

impl<'a> View<'a> {
    fn load(index: &'a Index, level: Level, key: &str) -> Result<Option<View<'a>>> {
        let mut computed: Vec<(Tag, String)> = Vec::new();
        let patient_values =
            |computed: &mut Vec<(Tag, String)>, pkey: &str| -> Result<Option<String>> {
                let Some(p) = index.patient(pkey).map_err(idx_err)? else {
                    return Ok(None);
                };
                computed.extend([
                    (tags::PATIENT_NAME, p.patient_name),
                    (tags::PATIENT_ID, p.patient_id),
                    (tags::ISSUER_OF_PATIENT_ID, p.issuer_of_patient_id),
                    (tags::PATIENT_BIRTH_DATE, p.birth_date),
                    (tags::PATIENT_SEX, p.sex),
                    (
                        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
                        p.num_studies.to_string(),
                    ),
                    (
                        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
                        p.num_series.to_string(),
                    ),
                    (
                        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
                        p.num_instances.to_string(),
                    ),
                ]);
                Ok(Some(p.representative))
            };
        let representative = match level {
            Level::Patient => match patient_values(&mut computed, key)? {
                Some(rep) => rep,
                None => return Ok(None),
            },
            Level::Study => {
                let Some(s) = index.study(key).map_err(idx_err)? else {
                    return Ok(None);
                };
                patient_values(&mut computed, &s.patient_key)?;
                computed.extend([
                    (tags::STUDY_INSTANCE_UID, s.study_uid),
                    (tags::STUDY_DATE, s.study_date),
                    (tags::STUDY_TIME, s.study_time),
                    (tags::ACCESSION_NUMBER, s.accession_number),
                    (tags::STUDY_ID, s.study_id),
                    (tags::STUDY_DESCRIPTION, s.study_description),
                    (tags::REFERRING_PHYSICIAN_NAME, s.referring_physician),
                    (
                        tags::MODALITIES_IN_STUDY,
                        join(
                            s.modalities
                                .into_iter()
                                .map(|(m, _)| m)
                                .filter(|m| !m.is_empty()),
                        ),
                    ),
                    (
                        tags::SOP_CLASSES_IN_STUDY,
                        join(s.sop_classes.into_iter().map(|(c, _)| c)),
                    ),
                    (
                        tags::NUMBER_OF_STUDY_RELATED_SERIES,
                        s.num_series.to_string(),
                    ),
                    (
                        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
                        s.num_instances.to_string(),
                    ),
                ]);
                s.representative
            }
            Level::Series => {
                let Some(s) = index.series(key).map_err(idx_err)? else {
                    return Ok(None);
                };
                computed.extend([
                    (tags::SERIES_INSTANCE_UID, s.series_uid),
                    (tags::STUDY_INSTANCE_UID, s.study_uid),
                    (tags::MODALITY, s.modality),
                    (
                        tags::SERIES_NUMBER,
                        s.series_number.map(|n| n.to_string()).unwrap_or_default(),
                    ),
                    (tags::SERIES_DESCRIPTION, s.series_description),
                    (tags::BODY_PART_EXAMINED, s.body_part),
                    (
                        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
                        s.num_instances.to_string(),
                    ),
                ]);
                s.representative
            }
            Level::Image => {
                let Some(i) = index.instance(key).map_err(idx_err)? else {
                    return Ok(None);
                };
                let header = index
                    .header_bytes(&i)
                    .map_err(idx_err)?
                    .and_then(|b| decode_header(&b));
                computed.extend([
                    (tags::SOP_INSTANCE_UID, i.sop_instance_uid),
                    (tags::SOP_CLASS_UID, i.sop_class_uid),
                    (tags::SERIES_INSTANCE_UID, i.series_uid),
                    (tags::STUDY_INSTANCE_UID, i.study_uid),
                ]);
                return Ok(Some(View {
                    index,
                    level,
                    computed,
                    representative: None,
                    header: Some(header),
                }));
            }
        };
        Ok(Some(View {
            index,
            level,
            computed,
            representative: Some(representative),
            header: None,
        }))
    }

    fn header(&mut self) -> Result<Option<&InMemDicomObject>> {
        if self.header.is_none() {
            let header = match &self.representative {
                Some(uid) => match self.index.instance(uid).map_err(idx_err)? {
                    Some(record) => self
                        .index
                        .header_bytes(&record)
                        .map_err(idx_err)?
                        .and_then(|b| decode_header(&b)),
                    None => None,
                },
                None => None,
            };
            self.header = Some(header);
        }
        Ok(self.header.as_ref().and_then(Option::as_ref))
    }

    fn computed(&self, tag: Tag) -> Option<&str> {
        self.computed
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `tag` as text (multiple values joined by `\`), if the entity has it.
    fn text(&mut self, tag: Tag) -> Result<Option<String>> {
        if let Some(v) = self.computed(tag) {
            return Ok(Some(v.to_string()));
        }
        Ok(self
            .header()?
            .and_then(|h| h.get(tag))
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string()))
    }

    fn matches(&mut self, q: &Query) -> Result<bool> {
        let combined = if q.combined_datetime {
            combined_pairs(q)
        } else {
            Vec::new()
        };
        for key in &q.keys {
            if key.condition.is_universal() && key.items.is_none() {
                continue;
            }
            if combined
                .iter()
                .any(|(d, t, _)| *d == key.tag || *t == key.tag)
            {
                continue;
            }
            if let Some(items) = &key.items {
                if !self.sequence_matches(key.tag, items, q.name_rules())? {
                    return Ok(false);
                }
                continue;
            }
            let value = self.text(key.tag)?.unwrap_or_default();
            if !key.condition.matches(key.kind(), &value, q.name_rules()) {
                return Ok(false);
            }
        }
        for (date_tag, time_tag, condition) in &combined {
            let date = self.text(*date_tag)?.unwrap_or_default();
            let time = self.text(*time_tag)?.unwrap_or_default();
            if !condition.matches(
                ValueKind::DateTime,
                &format!("{}{}", date.trim(), time.trim()),
                NameRules::default(),
            ) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Sequence matching: some item of the stored sequence matches every key of the query item.
    fn sequence_matches(
        &mut self,
        tag: Tag,
        item_keys: &[QueryKey],
        names: NameRules,
    ) -> Result<bool> {
        if item_keys.iter().all(|k| k.condition.is_universal()) {
            return Ok(true);
        }
        let Some(items) = self
            .header()?
            .and_then(|h| h.get(tag))
            .and_then(|e| e.items())
        else {
            return Ok(false);
        };
        Ok(items.iter().any(|item| {
            item_keys.iter().all(|k| {
                let value = item
                    .get(k.tag)
                    .and_then(|e| e.to_str().ok())
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                k.condition.matches(k.kind(), &value, names)
            })
        }))
    }

    /// The response identifier: every key of the query, with this entity's value or empty.
    fn identifier(&mut self, q: &Query) -> Result<InMemDicomObject> {
        let mut out = InMemDicomObject::new_empty();
        for key in &q.keys {
            if key.tag == tags::QUERY_RETRIEVE_LEVEL || key.tag == tags::SPECIFIC_CHARACTER_SET {
                continue;
            }
            if let Some(v) = self.computed(key.tag) {
                let values: Vec<String> = if v.is_empty() {
                    Vec::new()
                } else {
                    v.split('\\').map(str::to_string).collect()
                };
                let value = if values.is_empty() {
                    PrimitiveValue::Empty
                } else {
                    PrimitiveValue::Strs(values.into())
                };
                out.put(DataElement::new(key.tag, key.vr, value));
                continue;
            }
            let stored = self.header()?.and_then(|h| h.get(key.tag)).cloned();
            match stored {
                Some(element) => {
                    out.put(element);
                }
                None => {
                    let empty = if key.vr == VR::SQ {
                        dicom_core::value::Value::Sequence(
                            dicom_core::value::DataSetSequence::empty(),
                        )
                    } else {
                        PrimitiveValue::Empty.into()
                    };
                    out.put(DataElement::new(key.tag, key.vr, empty));
                }
            }
        }
        out.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(self.level.as_str()),
        ));
        Ok(out)
    }
}

/// With combined date-time matching, each (date, time) pair with a range on both becomes one
/// DT range (C.2.2.2.5.1).
fn combined_pairs(q: &Query) -> Vec<(Tag, Tag, Condition)> {
    let pairs = [
        (tags::STUDY_DATE, tags::STUDY_TIME),
        (tags::SERIES_DATE, tags::SERIES_TIME),
        (tags::CONTENT_DATE, tags::CONTENT_TIME),
    ];
    let mut out = Vec::new();
    for (d, t) in pairs {
        let (
            Some(Condition::Range { low: dl, high: dh }),
            Some(Condition::Range { low: tl, high: th }),
        ) = (q.condition(d), q.condition(t))
        else {
            continue;
        };
        // DT bounds: date (8) + time (HHMMSS) + fraction.
        let dt = |date: &Option<String>, time: &Option<String>, high: bool| -> Option<String> {
            let date = date.as_ref()?;
            let time = time.clone().unwrap_or_else(|| {
                if high {
                    "235959.999999".into()
                } else {
                    "000000.000000".into()
                }
            });
            normalize_temporal(ValueKind::DateTime, &format!("{date}{time}"), high).ok()
        };
        out.push((
            d,
            t,
            Condition::Range {
                low: dt(dl, tl, false),
                high: dt(dh, th, true),
            },
        ));
    }
    out
}

pub(super) fn decode_header(bytes: &[u8]) -> Option<InMemDicomObject> {
    let header =
        InMemDicomObject::read_dataset_with_ts(bytes, &EXPLICIT_VR_LITTLE_ENDIAN.erased()).ok()?;
    // Headers are indexed as Unicode (index::entry); one indexed before ISO 2022 code
    // extensions were decoded still declares them, and is read right here.
    if charset::dataset::declares_code_extensions(&header) {
        return Some(charset::dataset::to_unicode(&header, Declared::Utf8).unwrap_or(header));
    }
    Some(header)
}
