//! QIDO-RS (PS3.18 10.6): search for studies, series and instances, matched by the C-FIND
//! engine (`Index::find` through the archive), answered as a DICOM JSON array.
//!
//! A search at a level below the study that matches on attributes of a higher level (e.g.
//! `/series?PatientName=SMITH*` or `/instances?Modality=CT`) is relational: the higher level is
//! searched first with its own indexes (patient name, study date …), and the lower level is
//! then searched within the UIDs found. Attributes of a higher level in the results (e.g. the
//! study attributes of `/series` results) come from that level's own entity (cached per UID
//! for the answer), never from a lower level's header.

mod params;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

use super::json;
use super::metadata::{base_url, check_uid, require_json};
use super::user::DicomWebUser;
use crate::archive::Archive;
use crate::query::{Condition, Level, Model, Query, QueryError, QueryKey};
use crate::web::auth::Role;
use crate::web::{HttpError, WebState};
use params::Search;

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
    let Some(mut keys) = target_keys(archive, &scope, &mut search).await? else {
        return Ok(answer(Vec::new(), false, max));
    };
    for (tag, vr) in search.returned.remove(&level).unwrap_or_default() {
        if !keys.iter().any(|k| k.tag == tag) {
            keys.push(universal(tag, vr));
        }
    }
    let window = archive
        .find_window(query(level, keys, search.fuzzy), search.offset, limit)
        .await
        .map_err(query_err)?;
    crate::web::audit_hooks::searched(&state, &user.actor(), uri);

    // Attributes of the levels above, from their own entities.
    let mut upper = Vec::new();
    for (upper_level, uid_tag) in [
        (Level::Study, tags::STUDY_INSTANCE_UID),
        (Level::Series, tags::SERIES_INSTANCE_UID),
    ] {
        if level > upper_level
            && let Some(returned) = search
                .returned
                .remove(&upper_level)
                .filter(|r| !r.is_empty())
        {
            upper.push(UpperLevel {
                level: upper_level,
                uid_tag,
                returned,
            });
        }
    }
    let mut cache: HashMap<(Level, String), Option<InMemDicomObject>> = HashMap::new();
    let mut results = Vec::with_capacity(window.matches.len());
    for m in window.matches {
        let mut identifier = m.identifier;
        for u in &upper {
            let Some(uid) = text(&identifier, u.uid_tag) else {
                continue;
            };
            let key = (u.level, uid);
            if !cache.contains_key(&key) {
                let found = upper_identifier(archive, u, &key.1).await?;
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
    // More matched than this server returns at once (not merely more than the client asked).
    let truncated = window.more && search.limit.is_none_or(|l| l > limit);
    Ok(answer(results, truncated, max))
}

/// A level above the searched one whose attributes the results carry.
struct UpperLevel {
    level: Level,
    uid_tag: Tag,
    returned: Vec<(Tag, VR)>,
}

fn uid_key(tag: Tag, uids: &[String]) -> QueryKey {
    QueryKey {
        tag,
        vr: VR::UI,
        condition: uid_condition(uids),
        items: None,
    }
}

/// The matching keys of the searched level's query: its own conditions, and the Study and
/// Series Instance UIDs the path and the levels above allow (each level above with conditions
/// of its own is searched first, with its own indexes). `None`: nothing can match.
async fn target_keys(
    archive: &Archive,
    scope: &Scope,
    search: &mut Search,
) -> Result<Option<Vec<QueryKey>>, HttpError> {
    let level = scope.level;
    let fuzzy = search.fuzzy;
    let mut study_keys = search.matching.remove(&Level::Study).unwrap_or_default();
    let mut series_keys = search.matching.remove(&Level::Series).unwrap_or_default();
    let image_keys = search.matching.remove(&Level::Image).unwrap_or_default();
    if level == Level::Study {
        if let Some(uids) = uid_constraint(
            None,
            take_condition(&mut study_keys, tags::STUDY_INSTANCE_UID),
        ) {
            study_keys.push(uid_key(tags::STUDY_INSTANCE_UID, &uids));
        }
        return Ok(Some(study_keys));
    }
    let mut study_uids = uid_constraint(
        scope.study.as_deref(),
        take_condition(&mut study_keys, tags::STUDY_INSTANCE_UID),
    );
    if !study_keys.is_empty() && study_uids.as_ref().is_none_or(|u| !u.is_empty()) {
        if let Some(uids) = &study_uids {
            study_keys.push(uid_key(tags::STUDY_INSTANCE_UID, uids));
        }
        let found = archive
            .find_keys(query(Level::Study, study_keys, fuzzy))
            .await
            .map_err(query_err)?;
        study_uids = Some(found);
    }
    let mut keys = Vec::new();
    let mut series_uids = None;
    if level == Level::Series {
        keys.extend(series_keys);
    } else {
        series_uids = uid_constraint(
            scope.series.as_deref(),
            take_condition(&mut series_keys, tags::SERIES_INSTANCE_UID),
        );
        let possible = study_uids.as_ref().is_none_or(|u| !u.is_empty())
            && series_uids.as_ref().is_none_or(|u| !u.is_empty());
        if !series_keys.is_empty() && possible {
            if let Some(uids) = &study_uids {
                series_keys.push(uid_key(tags::STUDY_INSTANCE_UID, uids));
            }
            if let Some(uids) = &series_uids {
                series_keys.push(uid_key(tags::SERIES_INSTANCE_UID, uids));
            }
            let found = archive
                .find_keys(query(Level::Series, series_keys, fuzzy))
                .await
                .map_err(query_err)?;
            series_uids = Some(found);
        }
        keys.extend(image_keys);
    }
    for (tag, uids) in [
        (tags::STUDY_INSTANCE_UID, study_uids),
        (tags::SERIES_INSTANCE_UID, series_uids),
    ] {
        if let Some(uids) = uids {
            if uids.is_empty() {
                return Ok(None);
            }
            keys.retain(|k| k.tag != tag);
            keys.push(uid_key(tag, &uids));
        }
    }
    Ok(Some(keys))
}

/// The return keys of the study or series `uid` (one entity: a single-UID query).
async fn upper_identifier(
    archive: &Archive,
    upper: &UpperLevel,
    uid: &str,
) -> Result<Option<InMemDicomObject>, HttpError> {
    let mut keys = vec![QueryKey {
        tag: upper.uid_tag,
        vr: VR::UI,
        condition: Condition::Single(uid.to_string()),
        items: None,
    }];
    keys.extend(
        upper
            .returned
            .iter()
            .filter(|(t, _)| *t != upper.uid_tag)
            .map(|(t, vr)| universal(*t, *vr)),
    );
    let window = archive
        .find_window(query(upper.level, keys, false), 0, 1)
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
fn answer(results: Vec<serde_json::Value>, truncated: bool, max: usize) -> Response {
    let body = serde_json::Value::Array(results).to_string();
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(json::MEDIA_TYPE),
    );
    if truncated {
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
