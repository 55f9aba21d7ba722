//! WADO-RS retrieve of studies, series and instances (PS3.18 §10.4) as
//! `multipart/related; type="application/dicom"`: one Part-10 file per part, streamed from the
//! archive's retrieval API (the instances fetched ahead from every site holding copies,
//! co-allocated) while the response is sent.
//!
//! Transfer syntax (PS3.18 §8.7.3.5.2): `transfer-syntax=*` or the stored syntax sends the
//! stored file byte for byte; no parameter means Explicit VR Little Endian (the default since
//! DICOM 2016c); Explicit or Implicit VR Little Endian are made by decoding the stored object
//! (one object in memory at a time, as for C-MOVE/C-GET). Anything else is 406 with the
//! syntaxes we could send. Also the lookups the other WADO-RS files share: UID checks and
//! which instance a path names.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::FileMetaTableBuilder;

use super::multipart_out::{self, MediaRange, PartError, PartWriter};
use super::user::DicomWebUser;
use crate::archive::frames::can_decode;
use crate::archive::{
    Archive, IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, RetrieveItem, convert_object,
};
use crate::query::{Condition, Level, Model, Query, QueryKey};
use crate::web::auth::Role;
use crate::web::{HttpError, WebState};

/// The uncompressed syntaxes we can convert any decodable object to, in our preference order.
pub const CONVERTIBLE: [&str; 2] = [
    uids::EXPLICIT_VR_LITTLE_ENDIAN,
    uids::IMPLICIT_VR_LITTLE_ENDIAN,
];

pub fn routes() -> Router<WebState> {
    Router::new()
        .route("/studies/{study}", get(study))
        .route("/studies/{study}/series/{series}", get(series))
        .route(
            "/studies/{study}/series/{series}/instances/{instance}",
            get(instance),
        )
}

async fn study(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path(study): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    retrieve(&state, &user, Target::study(&study), &headers).await
}

async fn series(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    retrieve(&state, &user, Target::series(&study, &series), &headers).await
}

async fn instance(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series, instance)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let target = Target::instance(&study, &series, &instance);
    retrieve(&state, &user, target, &headers).await
}

/// What a WADO-RS path names: a study, a series of it, or an instance of that series.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub study: &'a str,
    pub series: Option<&'a str>,
    pub instance: Option<&'a str>,
}

impl<'a> Target<'a> {
    pub fn study(study: &'a str) -> Target<'a> {
        Target {
            study,
            series: None,
            instance: None,
        }
    }

    pub fn series(study: &'a str, series: &'a str) -> Target<'a> {
        Target {
            study,
            series: Some(series),
            instance: None,
        }
    }

    pub fn instance(study: &'a str, series: &'a str, instance: &'a str) -> Target<'a> {
        Target {
            study,
            series: Some(series),
            instance: Some(instance),
        }
    }

    /// 400 unless every UID of the path is a valid UID (they become index keys).
    pub fn check(&self) -> Result<(), HttpError> {
        check_uid("study", self.study)?;
        if let Some(series) = self.series {
            check_uid("series", series)?;
        }
        if let Some(instance) = self.instance {
            check_uid("instance", instance)?;
        }
        Ok(())
    }

    /// What the 404 names.
    pub fn describe(&self) -> String {
        match (self.series, self.instance) {
            (None, _) => format!("study {}", self.study),
            (Some(se), None) => format!("series {se} of study {}", self.study),
            (Some(se), Some(i)) => format!("instance {i} of series {se} of study {}", self.study),
        }
    }

    /// A Study Root query selecting the target's instances (the path's hierarchy must hold:
    /// an instance of another series does not match), returning `returned` too.
    pub fn query(&self, returned: &[(Tag, VR)]) -> Query {
        let single = |tag, value: &str| QueryKey {
            tag,
            vr: VR::UI,
            condition: Condition::Single(value.to_string()),
            items: None,
        };
        let mut keys = vec![single(tags::STUDY_INSTANCE_UID, self.study)];
        let mut level = Level::Study;
        if let Some(series) = self.series {
            keys.push(single(tags::SERIES_INSTANCE_UID, series));
            level = Level::Series;
        }
        if let Some(instance) = self.instance {
            keys.push(single(tags::SOP_INSTANCE_UID, instance));
            level = Level::Image;
        }
        if !returned.is_empty() {
            // Return keys are read from instance headers: ask at the instance level.
            level = Level::Image;
        }
        for &(tag, vr) in returned {
            if !keys.iter().any(|k| k.tag == tag) {
                keys.push(QueryKey {
                    tag,
                    vr,
                    condition: Condition::Universal,
                    items: None,
                });
            }
        }
        Query {
            model: Model::StudyRoot,
            level,
            keys,
            case_insensitive_names: true,
            fuzzy_names: false,
            combined_datetime: false,
            unsupported_matching_keys: false,
        }
    }

    /// The target's instances, in index order; 404 when there are none.
    pub async fn items(&self, archive: &Archive) -> Result<Vec<RetrieveItem>, HttpError> {
        let items = archive.instances_to_retrieve(self.query(&[])).await?;
        if items.is_empty() {
            return Err(HttpError::NotFound(self.describe()));
        }
        Ok(items)
    }
}

/// One instance a frames, bulk data or rendered request is about.
#[derive(Debug, Clone)]
pub struct InstanceInfo {
    pub uid: String,
    pub transfer_syntax: String,
    /// Number of Frames (1 when absent).
    pub frames: u32,
    pub rows: u32,
    pub columns: u32,
}

/// Attributes [`instance_info`] reads from the index.
const INFO_KEYS: &[(Tag, VR)] = &[
    (tags::SOP_INSTANCE_UID, VR::UI),
    (tags::NUMBER_OF_FRAMES, VR::IS),
    (tags::ROWS, VR::US),
    (tags::COLUMNS, VR::US),
];

/// The target's instance (for a study or series, the middle one of its images, a
/// representative for `/rendered` and `/thumbnail`), from the index alone; 404 when the
/// target does not exist.
pub async fn instance_info(
    archive: &Archive,
    target: Target<'_>,
) -> Result<InstanceInfo, HttpError> {
    let matches = archive
        .find_all(target.query(INFO_KEYS))
        .await
        .map_err(|e| HttpError::Internal(e.to_string()))?;
    let number = |m: &crate::query::Match, tag: Tag| -> Option<u32> {
        m.identifier
            .get(tag)?
            .to_str()
            .ok()?
            .trim_matches(|c: char| c == ' ' || c == '\0')
            .parse()
            .ok()
    };
    // Prefer images (a report or other non-image object in the middle of a study would draw
    // only the placeholder); an instance target has one match either way.
    let images: Vec<&crate::query::Match> = matches
        .iter()
        .filter(|m| number(m, tags::ROWS).is_some_and(|r| r > 0))
        .collect();
    let pool: Vec<&crate::query::Match> = if images.is_empty() {
        matches.iter().collect()
    } else {
        images
    };
    let chosen = *pool
        .get(pool.len() / 2)
        .ok_or_else(|| HttpError::NotFound(target.describe()))?;
    let number = |tag: Tag| number(chosen, tag);
    let uid = chosen.key.clone();
    let status = archive
        .file_status(&uid)
        .await?
        .ok_or_else(|| HttpError::NotFound(target.describe()))?;
    Ok(InstanceInfo {
        transfer_syntax: status.transfer_syntax,
        frames: number(tags::NUMBER_OF_FRAMES)
            .filter(|n| *n > 0)
            .unwrap_or(1),
        rows: number(tags::ROWS).unwrap_or(0),
        columns: number(tags::COLUMNS).unwrap_or(0),
        uid,
    })
}

/// 400 naming the path segment when `uid` is not a UID.
pub fn check_uid(what: &str, uid: &str) -> Result<(), HttpError> {
    crate::uid::validate(uid)
        .map_err(|e| HttpError::BadRequest(format!("{what} UID {uid:?} is not a UID: {e}")))
}

/// How one instance goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The stored Part-10 file, byte for byte.
    AsStored,
    /// Decoded and written in this (uncompressed) transfer syntax.
    Convert(String),
}

/// `wanted` for an object stored in `stored`, if we can make it.
fn choose(wanted: &str, stored: &str) -> Option<Plan> {
    if wanted == stored {
        Some(Plan::AsStored)
    } else if CONVERTIBLE.contains(&wanted) && can_decode(stored) {
        Some(Plan::Convert(wanted.to_string()))
    } else {
        None
    }
}

/// The first accepted form we can send an object stored in `stored` in.
pub fn plan(ranges: &[MediaRange], stored: &str) -> Option<Plan> {
    if ranges.is_empty() {
        return choose(uids::EXPLICIT_VR_LITTLE_ENDIAN, stored);
    }
    ranges.iter().find_map(|range| {
        let wanted = if range.is_default() {
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        } else if range.part_type() == Some("application/dicom") {
            match range.transfer_syntax() {
                None => uids::EXPLICIT_VR_LITTLE_ENDIAN,
                Some("*") => return Some(Plan::AsStored),
                Some(ts) => ts,
            }
        } else {
            return None;
        };
        choose(wanted, stored)
    })
}

/// The syntaxes an object stored in `stored` can be sent in (for a 406).
pub fn sendable(stored: &str) -> Vec<String> {
    let mut out = vec![format!("{stored} (as stored, or transfer-syntax=*)")];
    if can_decode(stored) {
        out.extend(
            CONVERTIBLE
                .iter()
                .filter(|ts| **ts != stored)
                .map(|ts| ts.to_string()),
        );
    }
    out
}

async fn retrieve(
    state: &WebState,
    user: &DicomWebUser,
    target: Target<'_>,
    headers: &HeaderMap,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    target.check()?;
    let archive = state.archive()?.clone();
    let items = target.items(&archive).await?;
    crate::web::audit_hooks::sent(state, &user.actor(), crate::web::audit_hooks::uids(&items));
    let ranges = multipart_out::accept(headers);
    let mut plans = Vec::with_capacity(items.len());
    for item in &items {
        let Some(plan) = plan(&ranges, &item.transfer_syntax) else {
            return Err(HttpError::NotAcceptable(format!(
                "cannot send instance {} (stored as {}) as any of: {}; it can be sent as \
                 multipart/related; type=\"application/dicom\" with transfer-syntax {}",
                item.sop_instance_uid,
                item.transfer_syntax,
                multipart_out::accept_text(headers),
                sendable(&item.transfer_syntax).join(", ")
            )));
        };
        plans.push(plan);
    }
    Ok(multipart_out::response("application/dicom", move |w| {
        send_instances(archive, items, plans, w)
    }))
}

fn part_type(ts: &str) -> String {
    format!("application/dicom; transfer-syntax={ts}")
}

/// Write each instance as one part, in the order of `items`.
async fn send_instances(
    archive: Archive,
    items: Vec<RetrieveItem>,
    plans: Vec<Plan>,
    w: PartWriter,
) -> Result<(), PartError> {
    let mut queue = archive.open_datasets(&items);
    for (item, plan) in items.iter().zip(plans) {
        let uid = &item.sop_instance_uid;
        let failed = |e: String| PartError(format!("instance {uid}: {e}"));
        let (_, object) = queue
            .next_object()
            .await
            .ok_or_else(|| failed("the retrieve queue ended early".into()))?;
        let mut object = object.map_err(|e| failed(e.to_string()))?;
        match plan {
            Plan::AsStored => {
                w.begin(&part_type(&item.transfer_syntax)).await?;
                // One chunk is held back until the next one (or the end, with the object's
                // SHA-256 verified) has arrived: a corrupt copy cuts the response before the
                // part is complete.
                let mut held: Option<Bytes> = None;
                while let Some(chunk) = object.next_chunk().await {
                    let chunk = chunk.map_err(|e| failed(e.to_string()))?;
                    if let Some(previous) = held.replace(chunk) {
                        w.data(previous).await?;
                    }
                }
                if let Some(last) = held {
                    w.data(last).await?;
                }
                w.end().await?;
            }
            Plan::Convert(ts) => {
                let dataset = convert_object(object, uid, &ts)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                let file = part10(item, &ts, dataset).map_err(failed)?;
                w.part(&part_type(&ts), file).await?;
            }
        }
    }
    Ok(())
}

/// A Part-10 file around a data set written in `ts`: preamble, `DICM`, our file meta group.
fn part10(item: &RetrieveItem, ts: &str, dataset: Vec<u8>) -> Result<Bytes, String> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(item.sop_class_uid.as_str())
        .media_storage_sop_instance_uid(item.sop_instance_uid.as_str())
        .transfer_syntax(ts)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION_NAME)
        .build()
        .map_err(|e| format!("file meta: {e}"))?;
    let mut out = Vec::with_capacity(dataset.len() + 512);
    out.resize(128, 0);
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| format!("file meta: {e}"))?;
    out.extend_from_slice(&dataset);
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::dicomweb::multipart_out::parse_accept_value;

    const JPEG: &str = uids::JPEG_BASELINE8_BIT;

    #[test]
    fn transfer_syntax_negotiation() {
        let explicit = uids::EXPLICIT_VR_LITTLE_ENDIAN;
        // No Accept, or no parameter: Explicit VR Little Endian, converted when stored otherwise.
        assert_eq!(plan(&[], explicit), Some(Plan::AsStored));
        assert_eq!(plan(&[], JPEG), Some(Plan::Convert(explicit.into())));
        let star =
            parse_accept_value("multipart/related; type=\"application/dicom\"; transfer-syntax=*");
        assert_eq!(plan(&star, JPEG), Some(Plan::AsStored));
        let implicit = parse_accept_value(
            "multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2",
        );
        assert_eq!(
            plan(&implicit, JPEG),
            Some(Plan::Convert("1.2.840.10008.1.2".into()))
        );
        // We cannot compress: a JPEG request for a native object has no plan.
        let jpeg = parse_accept_value(&format!(
            "multipart/related; type=\"application/dicom\"; transfer-syntax={JPEG}"
        ));
        assert_eq!(plan(&jpeg, explicit), None);
        assert_eq!(plan(&jpeg, JPEG), Some(Plan::AsStored));
        assert_eq!(plan(&parse_accept_value("text/plain"), explicit), None);
        // A later range that works is taken.
        let both = parse_accept_value(&format!(
            "multipart/related; type=application/dicom; transfer-syntax={JPEG}, \
             multipart/related; type=application/dicom; transfer-syntax={explicit}"
        ));
        assert_eq!(plan(&both, explicit), Some(Plan::AsStored));
    }

    /// The whole HTTP router — every DICOMweb part (QIDO, metadata, retrieve, frames, rendered,
    /// STOW) with the portal — builds without a route conflict (axum panics on one).
    #[test]
    fn routes_do_not_conflict() {
        let _ = crate::web::router(crate::web::WebState::default());
    }

    #[test]
    fn part10_wraps_the_data_set() {
        let item = RetrieveItem::for_test("1.2.3.4", uids::CT_IMAGE_STORAGE, JPEG);
        let file =
            part10(&item, uids::EXPLICIT_VR_LITTLE_ENDIAN, vec![8, 0, 0x18, 0]).expect("part 10");
        assert_eq!(&file[128..132], b"DICM");
        let meta = dicom_object::FileMetaTable::from_reader(&file[128..]).expect("meta");
        assert_eq!(meta.transfer_syntax(), uids::EXPLICIT_VR_LITTLE_ENDIAN);
        assert_eq!(meta.media_storage_sop_instance_uid(), "1.2.3.4");
        assert!(file.ends_with(&[8, 0, 0x18, 0]));
    }
}
