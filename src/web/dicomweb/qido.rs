//! QIDO-RS (PS3.18 10.6): search for studies, series and instances, matched by the C-FIND
//! engine (`Index::find` through the archive), answered as a DICOM JSON array.
//!
//! A search at a level below the study that matches on attributes of a higher level (e.g.
//! `/series?PatientName=SMITH*` or `/instances?Modality=CT`) is relational: the higher level is
//! searched first with its own indexes (patient name, study date …), and the lower level is
//! then searched within the UIDs found. Attributes of a higher level in the results (e.g. the
//! study attributes of `/series` results) come from that level's own entity (cached per UID
//! for the answer), never from a lower level's header.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{StandardDataDictionary, tags};
use dicom_object::InMemDicomObject;

use super::json;
use super::metadata::{base_url, check_uid, require_json};
use super::user::DicomWebUser;
use crate::archive::Archive;
use crate::query::{Condition, Level, Model, Query, QueryError, QueryKey, ValueKind, keys};
use crate::web::auth::Role;
use crate::web::{HttpError, WebState};

/// Most `includefield` entries one request may name (`all` asks for everything at once).
const MAX_INCLUDEFIELDS: usize = 256;
/// Most query parameters one request may have.
const MAX_PARAMETERS: usize = 512;

/// Returned at each level unless asked otherwise (PS3.18 10.6.3.3, tables 10.6.3-3 to -5),
/// plus the UIDs of the levels above so each result can be retrieved.
const STUDY_DEFAULTS: &[Tag] = &[
    tags::STUDY_DATE,
    tags::STUDY_TIME,
    tags::ACCESSION_NUMBER,
    tags::MODALITIES_IN_STUDY,
    tags::REFERRING_PHYSICIAN_NAME,
    tags::PATIENT_NAME,
    tags::PATIENT_ID,
    tags::PATIENT_BIRTH_DATE,
    tags::PATIENT_SEX,
    tags::STUDY_INSTANCE_UID,
    tags::STUDY_ID,
    tags::STUDY_DESCRIPTION,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
];
const SERIES_DEFAULTS: &[Tag] = &[
    tags::MODALITY,
    tags::SERIES_DESCRIPTION,
    tags::SERIES_INSTANCE_UID,
    tags::SERIES_NUMBER,
    tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
    tags::PERFORMED_PROCEDURE_STEP_START_DATE,
    tags::PERFORMED_PROCEDURE_STEP_START_TIME,
    tags::STUDY_INSTANCE_UID,
];
const INSTANCE_DEFAULTS: &[Tag] = &[
    tags::SOP_CLASS_UID,
    tags::SOP_INSTANCE_UID,
    tags::INSTANCE_NUMBER,
    tags::ROWS,
    tags::COLUMNS,
    tags::BITS_ALLOCATED,
    tags::NUMBER_OF_FRAMES,
    tags::SERIES_INSTANCE_UID,
    tags::STUDY_INSTANCE_UID,
];

/// Attributes the answer adds itself (never asked of the engine).
const SYNTHETIC: &[Tag] = &[tags::RETRIEVE_URL, tags::INSTANCE_AVAILABILITY];

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/studies", get(studies))
        .route("/series", get(all_series))
        .route("/instances", get(all_instances))
        .route("/studies/{study}/series", get(series_of_study))
        .route("/studies/{study}/instances", get(instances_of_study))
        .route(
            "/studies/{study}/series/{series}/instances",
            get(instances_of_series),
        )
}

/// Which resource was searched: the level and the UIDs of the path.
#[derive(Debug, Clone)]
struct Scope {
    level: Level,
    study: Option<String>,
    series: Option<String>,
}

async fn studies(
    user: DicomWebUser,
    State(state): State<WebState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let scope = Scope {
        level: Level::Study,
        study: None,
        series: None,
    };
    search(user, state, &headers, &uri, scope).await
}

async fn all_series(
    user: DicomWebUser,
    State(state): State<WebState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let scope = Scope {
        level: Level::Series,
        study: None,
        series: None,
    };
    search(user, state, &headers, &uri, scope).await
}

async fn all_instances(
    user: DicomWebUser,
    State(state): State<WebState>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let scope = Scope {
        level: Level::Image,
        study: None,
        series: None,
    };
    search(user, state, &headers, &uri, scope).await
}

async fn series_of_study(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let scope = Scope {
        level: Level::Series,
        study: Some(study),
        series: None,
    };
    search(user, state, &headers, &uri, scope).await
}

async fn instances_of_study(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path(study): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let scope = Scope {
        level: Level::Image,
        study: Some(study),
        series: None,
    };
    search(user, state, &headers, &uri, scope).await
}

async fn instances_of_series(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, HttpError> {
    let scope = Scope {
        level: Level::Image,
        study: Some(study),
        series: Some(series),
    };
    search(user, state, &headers, &uri, scope).await
}

/// A parsed search: what to match at each level and what to return.
#[derive(Debug, Default)]
struct Search {
    /// Matching keys (non-universal conditions, or sequence keys) by level.
    matching: HashMap<Level, Vec<QueryKey>>,
    /// Return keys by level (the attribute's level; attributes outside the key table count as
    /// the searched level's, read from its stored header).
    returned: HashMap<Level, Vec<(Tag, VR)>>,
    fuzzy: bool,
    limit: Option<usize>,
    offset: usize,
}

fn keyword(tag: Tag) -> String {
    StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.alias().to_string())
        .unwrap_or_else(|| json::tag_key(tag))
}

/// An attribute ID of a query: a keyword or 8 hex digits.
fn attribute(id: &str) -> Option<(Tag, VR)> {
    let (tag, entry) = if id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        let raw = u32::from_str_radix(id, 16).ok()?;
        let tag = Tag((raw >> 16) as u16, raw as u16);
        (tag, StandardDataDictionary.by_tag(tag)?)
    } else {
        let entry = StandardDataDictionary.by_name(id)?;
        (entry.tag(), entry)
    };
    let vr = keys::by_tag(tag).map_or_else(|| entry.vr().relaxed(), |d| d.vr);
    Some((tag, vr))
}

/// The level an attribute belongs to in the Study Root model, if it is a key of the table.
fn table_level(tag: Tag) -> Option<Level> {
    keys::by_tag(tag).map(|d| Model::StudyRoot.level_of(d.level))
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Patient | Level::Study => "study",
        Level::Series => "series",
        Level::Image => "instance",
    }
}

fn unknown(id: &str) -> HttpError {
    HttpError::BadRequest(format!(
        "unknown query parameter or attribute {id:?} (expected limit, offset, fuzzymatching, includefield, or a DICOM keyword or tag)"
    ))
}

fn parse_count(name: &str, value: &str) -> Result<usize, HttpError> {
    value.trim().parse::<usize>().map_err(|_| {
        HttpError::BadRequest(format!(
            "{name} must be a non-negative integer, got {value:?}"
        ))
    })
}

fn condition(tag: Tag, vr: VR, raw: &str) -> Result<Condition, HttpError> {
    // UID lists may be separated by commas (PS3.18 8.3.4.1) as well as backslashes; so may
    // code strings (e.g. ModalitiesInStudy=CT,MR), which cannot contain commas.
    let value = if matches!(vr, VR::UI | VR::CS) {
        raw.replace(',', "\\")
    } else {
        raw.to_string()
    };
    Condition::parse(ValueKind::from_vr(vr), &value)
        .map_err(|e| HttpError::BadRequest(format!("bad value for {}: {e}", keyword(tag))))
}

impl Search {
    fn parse(params: &[(String, String)], level: Level) -> Result<Search, HttpError> {
        if params.len() > MAX_PARAMETERS {
            return Err(HttpError::BadRequest(format!(
                "{} query parameters; at most {MAX_PARAMETERS} are accepted",
                params.len()
            )));
        }
        let mut search = Search::default();
        let mut include_all = false;
        let mut included: Vec<(Tag, VR)> = Vec::new();
        let mut includefields = 0usize;
        // Attribute values by (sequence, attribute); repeated parameters are joined.
        let mut values: Vec<((Option<(Tag, VR)>, Tag, VR), Vec<String>)> = Vec::new();
        for (name, value) in params {
            match name.to_ascii_lowercase().as_str() {
                "limit" => {
                    let limit = parse_count("limit", value)?;
                    if limit == 0 {
                        return Err(HttpError::BadRequest("limit must be at least 1".into()));
                    }
                    search.limit = Some(limit);
                }
                "offset" => search.offset = parse_count("offset", value)?,
                "fuzzymatching" => {
                    search.fuzzy = match value.trim() {
                        "true" => true,
                        "false" => false,
                        other => {
                            return Err(HttpError::BadRequest(format!(
                                "fuzzymatching must be true or false, got {other:?}"
                            )));
                        }
                    }
                }
                "includefield" => {
                    for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        includefields += 1;
                        if includefields > MAX_INCLUDEFIELDS {
                            return Err(HttpError::BadRequest(format!(
                                "too many includefield attributes (more than {MAX_INCLUDEFIELDS}); use includefield=all"
                            )));
                        }
                        if id == "all" {
                            include_all = true;
                            continue;
                        }
                        // A sequence path returns its top-level sequence.
                        let top = id.split('.').next().unwrap_or(id);
                        let attr = attribute(top).ok_or_else(|| unknown(id))?;
                        if !included.contains(&attr) {
                            included.push(attr);
                        }
                    }
                }
                _ => {
                    let mut path = name.split('.');
                    let first = path.next().unwrap_or_default();
                    let first = attribute(first).ok_or_else(|| unknown(name))?;
                    let key = match (path.next(), path.next()) {
                        (None, _) => (None, first.0, first.1),
                        (Some(inner), None) if first.1 == VR::SQ => {
                            let inner = attribute(inner).ok_or_else(|| unknown(name))?;
                            (Some(first), inner.0, inner.1)
                        }
                        _ => {
                            return Err(HttpError::BadRequest(format!(
                                "{name:?}: only one level of sequence matching (Sequence.Attribute) is supported"
                            )));
                        }
                    };
                    match values.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, v)) => {
                            if !matches!(key.2, VR::UI | VR::CS) {
                                return Err(HttpError::BadRequest(format!(
                                    "{name} is given more than once (only UID and code string attributes take value lists)"
                                )));
                            }
                            v.push(value.clone());
                        }
                        None => values.push((key, vec![value.clone()])),
                    }
                }
            }
        }
        for ((sequence, tag, vr), v) in values {
            let raw = v.join("\\");
            match sequence {
                None => {
                    let c = condition(tag, vr, &raw)?;
                    let attr_level = table_level(tag);
                    if c.is_universal() {
                        included.push((tag, vr));
                        continue;
                    }
                    let key_level = match attr_level {
                        Some(l) if l > level => {
                            return Err(HttpError::BadRequest(format!(
                                "{} is a {}-level attribute: a {} search cannot match on it",
                                keyword(tag),
                                level_name(l),
                                level_name(level)
                            )));
                        }
                        Some(l) => l,
                        // The instance's own header answers any attribute exactly.
                        None if level == Level::Image => Level::Image,
                        None => {
                            return Err(HttpError::BadRequest(format!(
                                "{} is not a matching attribute of a {} search (see the conformance statement for the supported keys)",
                                keyword(tag),
                                level_name(level)
                            )));
                        }
                    };
                    search
                        .matching
                        .entry(key_level)
                        .or_default()
                        .push(QueryKey {
                            tag,
                            vr,
                            condition: c,
                            items: None,
                        });
                }
                Some((seq_tag, seq_vr)) => {
                    let c = condition(tag, vr, &raw)?;
                    let seq_level = table_level(seq_tag).unwrap_or(level).min(level);
                    let keys = search.matching.entry(seq_level).or_default();
                    let sub = QueryKey {
                        tag,
                        vr,
                        condition: c,
                        items: None,
                    };
                    match keys.iter_mut().find(|k| k.tag == seq_tag) {
                        Some(k) => k.items.get_or_insert_with(Vec::new).push(sub),
                        None => keys.push(QueryKey {
                            tag: seq_tag,
                            vr: seq_vr,
                            condition: Condition::Universal,
                            items: Some(vec![sub]),
                        }),
                    }
                }
            }
        }
        // What comes back: the defaults of the searched level, and of the levels above when the
        // path does not name them (added by the caller), the included attributes, and with
        // `all` every key of the table at or above the level.
        let mut add = |level_of: Level, tag: Tag, vr: VR| {
            let list = search.returned.entry(level_of).or_default();
            if !list.iter().any(|(t, _)| *t == tag) {
                list.push((tag, vr));
            }
        };
        if include_all {
            for def in keys::all() {
                let l = Model::StudyRoot.level_of(def.level);
                if l <= level {
                    add(l, def.tag, def.vr);
                }
            }
        }
        for (tag, vr) in included {
            if SYNTHETIC.contains(&tag) {
                continue;
            }
            match table_level(tag) {
                // An attribute of a lower level has no single value here: not returned.
                Some(l) if l > level => {}
                Some(l) => add(l, tag, vr),
                None => add(level, tag, vr),
            }
        }
        Ok(search)
    }

    fn return_defaults(&mut self, level: Level, defaults: &[Tag]) {
        let list = self.returned.entry(level).or_default();
        for tag in defaults {
            if !list.iter().any(|(t, _)| t == tag) {
                let vr = keys::by_tag(*tag)
                    .map(|d| d.vr)
                    .or_else(|| {
                        StandardDataDictionary
                            .by_tag(*tag)
                            .map(|e| e.vr().relaxed())
                    })
                    .unwrap_or(VR::UN);
                list.push((*tag, vr));
            }
        }
    }
}

fn query(level: Level, keys: Vec<QueryKey>, fuzzy: bool) -> Query {
    Query {
        model: Model::StudyRoot,
        level,
        keys,
        case_insensitive_names: true,
        fuzzy_names: fuzzy,
        combined_datetime: false,
        unsupported_matching_keys: false,
    }
}

fn universal(tag: Tag, vr: VR) -> QueryKey {
    QueryKey {
        tag,
        vr,
        condition: Condition::Universal,
        items: None,
    }
}

/// A UID constraint: the path's UID, the query's list, both (their intersection) or none.
fn uid_constraint(path: Option<&str>, query: Option<Condition>) -> Option<Vec<String>> {
    let listed = match query {
        Some(Condition::Single(u)) => Some(vec![u]),
        Some(Condition::UidList(l)) => Some(l),
        _ => None,
    };
    match (path, listed) {
        (Some(p), Some(l)) => Some(l.into_iter().filter(|u| u == p).collect()),
        (Some(p), None) => Some(vec![p.to_string()]),
        (None, l) => l,
    }
}

fn uid_condition(uids: &[String]) -> Condition {
    match uids {
        [one] => Condition::Single(one.clone()),
        _ => Condition::UidList(uids.to_vec()),
    }
}

fn query_err(e: QueryError) -> HttpError {
    match e {
        QueryError::Index(m) => HttpError::Unavailable(format!("index read failed: {m}")),
        other => HttpError::BadRequest(other.to_string()),
    }
}

/// Take the condition on `tag` out of `keys` (it becomes a constraint handled apart).
fn take_condition(keys: &mut Vec<QueryKey>, tag: Tag) -> Option<Condition> {
    let pos = keys
        .iter()
        .position(|k| k.tag == tag && k.items.is_none())?;
    Some(keys.remove(pos).condition)
}

async fn search(
    user: DicomWebUser,
    state: WebState,
    headers: &HeaderMap,
    uri: &Uri,
    scope: Scope,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    require_json(headers)?;
    if let Some(s) = &scope.study {
        check_uid("StudyInstanceUID", s)?;
    }
    if let Some(s) = &scope.series {
        check_uid("SeriesInstanceUID", s)?;
    }
    let params = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| HttpError::BadRequest(format!("malformed query string: {e}")))?
        .0;
    let level = scope.level;
    let mut search = Search::parse(&params, level)?;
    let base = base_url(headers, uri)?;
    let archive = state.archive()?;
    let max = state.dicomweb.qido_max_results;
    let limit = search.limit.unwrap_or(max).min(max);

    // Defaults: the searched level's, and those of the levels the path does not name.
    match level {
        Level::Study | Level::Patient => search.return_defaults(Level::Study, STUDY_DEFAULTS),
        Level::Series => {
            search.return_defaults(Level::Series, SERIES_DEFAULTS);
            if scope.study.is_none() {
                search.return_defaults(Level::Study, STUDY_DEFAULTS);
            }
        }
        Level::Image => {
            search.return_defaults(Level::Image, INSTANCE_DEFAULTS);
            if scope.series.is_none() {
                search.return_defaults(Level::Series, SERIES_DEFAULTS);
            }
            if scope.study.is_none() {
                search.return_defaults(Level::Study, STUDY_DEFAULTS);
            }
        }
    }

    let mut study_keys = search.matching.remove(&Level::Study).unwrap_or_default();
    let mut series_keys = search.matching.remove(&Level::Series).unwrap_or_default();
    let image_keys = search.matching.remove(&Level::Image).unwrap_or_default();
    let study_uids = uid_constraint(
        scope.study.as_deref(),
        take_condition(&mut study_keys, tags::STUDY_INSTANCE_UID),
    );
    let series_uids = if level == Level::Image {
        uid_constraint(
            scope.series.as_deref(),
            take_condition(&mut series_keys, tags::SERIES_INSTANCE_UID),
        )
    } else {
        None
    };
    let fuzzy = search.fuzzy;
    let empty = || Ok(answer(Vec::new(), false, None));

    // The target query: its own matching keys, the constraints of the levels above (searched
    // first when they have conditions of their own), its return keys.
    let mut keys: Vec<QueryKey> = Vec::new();
    let (mut study_uids, mut series_uids) = (study_uids, series_uids);
    if level == Level::Study {
        keys.extend(study_keys);
    } else {
        if !study_keys.is_empty() {
            let mut k = study_keys;
            if let Some(uids) = &study_uids {
                k.push(QueryKey {
                    tag: tags::STUDY_INSTANCE_UID,
                    vr: VR::UI,
                    condition: uid_condition(uids),
                    items: None,
                });
            }
            let found = archive
                .find_keys(query(Level::Study, k, fuzzy))
                .await
                .map_err(query_err)?;
            study_uids = Some(found);
        }
        if level == Level::Image && !series_keys.is_empty() {
            let mut k = series_keys;
            if let Some(uids) = &study_uids {
                if uids.is_empty() {
                    return empty();
                }
                k.push(QueryKey {
                    tag: tags::STUDY_INSTANCE_UID,
                    vr: VR::UI,
                    condition: uid_condition(uids),
                    items: None,
                });
            }
            if let Some(uids) = &series_uids {
                if uids.is_empty() {
                    return empty();
                }
                k.push(QueryKey {
                    tag: tags::SERIES_INSTANCE_UID,
                    vr: VR::UI,
                    condition: uid_condition(uids),
                    items: None,
                });
            }
            let found = archive
                .find_keys(query(Level::Series, k, fuzzy))
                .await
                .map_err(query_err)?;
            series_uids = Some(found);
        } else if level == Level::Series {
            keys.extend(series_keys);
        }
        keys.extend(image_keys);
    }
    for (tag, uids) in [
        (tags::STUDY_INSTANCE_UID, &study_uids),
        (tags::SERIES_INSTANCE_UID, &series_uids),
    ] {
        if let Some(uids) = uids {
            if uids.is_empty() {
                return empty();
            }
            keys.retain(|k| k.tag != tag);
            keys.push(QueryKey {
                tag,
                vr: VR::UI,
                condition: uid_condition(uids),
                items: None,
            });
        }
    }
    for (tag, vr) in search.returned.remove(&level).unwrap_or_default() {
        if !keys.iter().any(|k| k.tag == tag) {
            keys.push(universal(tag, vr));
        }
    }
    let window = archive
        .find_window(query(level, keys, fuzzy), search.offset, limit)
        .await
        .map_err(query_err)?;

    // Attributes of the levels above, from their own entities.
    let mut upper: Vec<(Level, Tag, Vec<(Tag, VR)>)> = Vec::new();
    if level > Level::Study
        && let Some(r) = search
            .returned
            .remove(&Level::Study)
            .filter(|r| !r.is_empty())
    {
        upper.push((Level::Study, tags::STUDY_INSTANCE_UID, r));
    }
    if level > Level::Series
        && let Some(r) = search
            .returned
            .remove(&Level::Series)
            .filter(|r| !r.is_empty())
    {
        upper.push((Level::Series, tags::SERIES_INSTANCE_UID, r));
    }
    let mut cache: HashMap<(Level, String), Option<InMemDicomObject>> = HashMap::new();
    let mut results = Vec::with_capacity(window.matches.len());
    for m in window.matches {
        let mut identifier = m.identifier;
        for (upper_level, uid_tag, returned) in &upper {
            let Some(uid) = identifier
                .get(*uid_tag)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            else {
                continue;
            };
            let key = (*upper_level, uid.clone());
            if !cache.contains_key(&key) {
                let found =
                    upper_identifier(archive, *upper_level, *uid_tag, &uid, returned).await?;
                cache.insert(key.clone(), found);
            }
            if let Some(Some(upper)) = cache.get(&key) {
                for e in upper.iter() {
                    if identifier.get(e.tag()).is_none() {
                        identifier.put(e.clone());
                    }
                }
            }
        }
        results.push(result_json(identifier, level, &base));
    }
    let truncated = window.more && search.limit.is_none_or(|l| l > limit);
    Ok(answer(results, truncated, Some(max)))
}

/// The return keys of the study or series `uid` (one entity: a single-UID query).
async fn upper_identifier(
    archive: &Archive,
    level: Level,
    uid_tag: Tag,
    uid: &str,
    returned: &[(Tag, VR)],
) -> Result<Option<InMemDicomObject>, HttpError> {
    let mut keys = vec![QueryKey {
        tag: uid_tag,
        vr: VR::UI,
        condition: Condition::Single(uid.to_string()),
        items: None,
    }];
    keys.extend(
        returned
            .iter()
            .filter(|(t, _)| *t != uid_tag)
            .map(|(t, vr)| universal(*t, *vr)),
    );
    let window = archive
        .find_window(query(level, keys, false), 0, 1)
        .await
        .map_err(query_err)?;
    Ok(window.matches.into_iter().next().map(|m| m.identifier))
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .filter(|s| !s.is_empty())
}

/// One result: the identifier without QueryRetrieveLevel, with RetrieveURL and
/// InstanceAvailability (every stored object is ONLINE).
fn result_json(mut identifier: InMemDicomObject, level: Level, base: &str) -> serde_json::Value {
    identifier.remove_element(tags::QUERY_RETRIEVE_LEVEL);
    let study = text(&identifier, tags::STUDY_INSTANCE_UID);
    let series = text(&identifier, tags::SERIES_INSTANCE_UID);
    let instance = text(&identifier, tags::SOP_INSTANCE_UID);
    let url = match (level, study, series, instance) {
        (Level::Study | Level::Patient, Some(st), _, _) => Some(format!("{base}/studies/{st}")),
        (Level::Series, Some(st), Some(se), _) => Some(format!("{base}/studies/{st}/series/{se}")),
        (Level::Image, Some(st), Some(se), Some(i)) => {
            Some(format!("{base}/studies/{st}/series/{se}/instances/{i}"))
        }
        _ => None,
    };
    if let Some(url) = url {
        identifier.put(DataElement::new(
            tags::RETRIEVE_URL,
            VR::UR,
            PrimitiveValue::from(url),
        ));
    }
    identifier.put(DataElement::new(
        tags::INSTANCE_AVAILABILITY,
        VR::CS,
        PrimitiveValue::from("ONLINE"),
    ));
    json::dataset_to_json_inline(&identifier)
}

/// The JSON array (200 even when empty: PS3.18 as amended by CP-2473 and RFC 9110 §15.3.5 —
/// a 204 carries no content, while a search that found nothing is a success with an empty
/// list). `truncated`: more matched than the server returns at once (a `Warning` says so).
fn answer(results: Vec<serde_json::Value>, truncated: bool, max: Option<usize>) -> Response {
    let body = serde_json::Value::Array(results).to_string();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(json::MEDIA_TYPE),
    );
    if truncated && let Some(max) = max {
        let warning = format!(
            "299 MIFAS \"The number of results exceeded the maximum supported by the server ({max}). Additional results can be requested.\""
        );
        if let Ok(v) = HeaderValue::from_str(&warning) {
            response.headers_mut().insert(header::WARNING, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(s: &[(&str, &str)]) -> Vec<(String, String)> {
        s.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn attributes_by_keyword_or_tag() {
        assert_eq!(attribute("PatientName"), Some((tags::PATIENT_NAME, VR::PN)));
        assert_eq!(attribute("00100010"), Some((tags::PATIENT_NAME, VR::PN)));
        assert_eq!(
            attribute("0020000d"),
            Some((tags::STUDY_INSTANCE_UID, VR::UI))
        );
        assert_eq!(attribute("NoSuchThing"), None);
    }

    #[test]
    fn parses_matching_and_return_keys() {
        let s = Search::parse(
            &params(&[
                ("PatientName", "SMITH*"),
                ("StudyDate", "20200101-20201231"),
                ("StudyInstanceUID", "1.2.3,1.2.4"),
                ("includefield", "00081030,PatientAge"),
                ("includefield", "Modality"),
                ("limit", "5"),
                ("offset", "10"),
                ("fuzzymatching", "true"),
            ]),
            Level::Study,
        )
        .unwrap();
        assert_eq!((s.limit, s.offset, s.fuzzy), (Some(5), 10, true));
        let study = &s.matching[&Level::Study];
        assert_eq!(study.len(), 3);
        assert_eq!(
            study
                .iter()
                .find(|k| k.tag == tags::STUDY_INSTANCE_UID)
                .unwrap()
                .condition,
            Condition::UidList(vec!["1.2.3".into(), "1.2.4".into()])
        );
        let returned = &s.returned[&Level::Study];
        assert!(returned.contains(&(tags::STUDY_DESCRIPTION, VR::LO)));
        assert!(returned.contains(&(tags::PATIENT_AGE, VR::AS)));
        // Modality is a series attribute: no single value for a study, not returned
        assert!(
            !s.returned
                .values()
                .flatten()
                .any(|(t, _)| *t == tags::MODALITY)
        );
    }

    #[test]
    fn refuses_bad_input_with_its_name() {
        let err = |p: &[(&str, &str)], level| match Search::parse(&params(p), level) {
            Err(HttpError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(&[("limit", "-1")], Level::Study).contains("limit"));
        assert!(err(&[("offset", "x")], Level::Study).contains("offset"));
        assert!(err(&[("Bogus", "1")], Level::Study).contains("Bogus"));
        assert!(err(&[("includefield", "Nope")], Level::Study).contains("Nope"));
        assert!(err(&[("StudyInstanceUID", "1.2.x")], Level::Study).contains("StudyInstanceUID"));
        assert!(err(&[("Modality", "CT")], Level::Study).contains("Modality"));
        assert!(err(&[("fuzzymatching", "yes")], Level::Study).contains("fuzzymatching"));
        let many = vec!["00100010"; 5000].join(",");
        assert!(err(&[("includefield", many.as_str())], Level::Study).contains("includefield"));
        assert!(err(&[("StudyDate", "2020-01-01x")], Level::Study).contains("StudyDate"));
    }

    #[test]
    fn uid_constraints_intersect() {
        assert_eq!(uid_constraint(Some("1.2"), None), Some(vec!["1.2".into()]));
        assert_eq!(
            uid_constraint(
                Some("1.2"),
                Some(Condition::UidList(vec!["1.2".into(), "1.3".into()]))
            ),
            Some(vec!["1.2".into()])
        );
        assert_eq!(
            uid_constraint(Some("1.2"), Some(Condition::Single("1.3".into()))),
            Some(vec![])
        );
        assert_eq!(uid_constraint(None, None), None);
    }
}
