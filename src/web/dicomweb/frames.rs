//! WADO-RS frames and bulk data (PS3.18 §10.4.1.1.3 and §10.4.1.1.4):
//! `…/instances/{instance}/frames/{list}` and `…/instances/{instance}/bulkdata/{tag}`, as
//! `multipart/related` with one part per frame (or the one value).
//!
//! Media types (PS3.18 Table 8.7.3-2): `application/octet-stream` carries uncompressed frames
//! (Explicit VR Little Endian sample order; compressed objects are decoded); the stored
//! compressed syntax goes out as its own image type (`image/jpeg`, `image/jls`, `image/jp2`,
//! `image/jpx`, `image/jphc`, `image/dicom-rle`). `transfer-syntax=*` takes the frames as
//! stored, whatever they are. Without a `transfer-syntax` parameter an image type means its
//! default syntax (e.g. `image/jp2` is JPEG 2000 lossless).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use dicom_core::Tag;
use dicom_dictionary_std::{tags, uids};

use super::multipart_out::{self, MediaRange};
use super::user::DicomWebUser;
use super::wado::{Target, instance_info};
use crate::archive::frames::{FrameError, FrameForm, FrameSet, can_decode, is_encapsulated};
use crate::web::auth::Role;
use crate::web::{HttpError, WebState};

/// Most frames one request may list (a longer list is 400): bounds the work of one request.
pub const MAX_FRAMES_PER_REQUEST: usize = 10_000;

/// Compressed transfer syntaxes and the media type of their frames (PS3.18 Table 8.7.3-2);
/// the first syntax of each media type is its default.
const FRAME_MEDIA_TYPES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.4.50", "image/jpeg"),
    ("1.2.840.10008.1.2.4.51", "image/jpeg"),
    ("1.2.840.10008.1.2.4.57", "image/jpeg"),
    ("1.2.840.10008.1.2.4.70", "image/jpeg"),
    ("1.2.840.10008.1.2.4.80", "image/jls"),
    ("1.2.840.10008.1.2.4.81", "image/jls"),
    ("1.2.840.10008.1.2.4.90", "image/jp2"),
    ("1.2.840.10008.1.2.4.91", "image/jp2"),
    ("1.2.840.10008.1.2.4.92", "image/jpx"),
    ("1.2.840.10008.1.2.4.93", "image/jpx"),
    ("1.2.840.10008.1.2.4.201", "image/jphc"),
    ("1.2.840.10008.1.2.4.202", "image/jphc"),
    ("1.2.840.10008.1.2.4.203", "image/jphc"),
    ("1.2.840.10008.1.2.5", "image/dicom-rle"),
];

const OCTET_STREAM: &str = "application/octet-stream";

pub fn routes() -> Router<WebState> {
    Router::new()
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
            get(frames),
        )
        .route(
            "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
            get(bulkdata),
        )
}

/// The media type of frames compressed in `ts` (octet-stream for syntaxes without one).
pub fn media_type_of(ts: &str) -> &'static str {
    FRAME_MEDIA_TYPES
        .iter()
        .find(|(t, _)| *t == ts)
        .map_or(OCTET_STREAM, |(_, m)| m)
}

/// The default syntax of an image media type.
fn default_syntax(media_type: &str) -> Option<&'static str> {
    FRAME_MEDIA_TYPES
        .iter()
        .find(|(_, m)| *m == media_type)
        .map(|(t, _)| *t)
}

/// How frames go out: their form, and the `Content-Type` of each part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramePlan {
    pub form: FrameForm,
    /// The response's `type` parameter (the parts' media type without parameters).
    pub media_type: &'static str,
    pub part_type: String,
}

impl FramePlan {
    fn native(ts: &str) -> FramePlan {
        FramePlan {
            form: FrameForm::Native,
            media_type: OCTET_STREAM,
            part_type: format!("{OCTET_STREAM}; transfer-syntax={ts}"),
        }
    }

    fn as_stored(stored: &str) -> FramePlan {
        if !is_encapsulated(stored) {
            return FramePlan::native(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        }
        let media_type = media_type_of(stored);
        FramePlan {
            form: FrameForm::AsStored,
            media_type,
            part_type: format!("{media_type}; transfer-syntax={stored}"),
        }
    }
}

/// The first accepted form we can send frames stored in `stored` in.
pub fn frame_plan(ranges: &[MediaRange], stored: &str) -> Option<FramePlan> {
    let native_ok = !is_encapsulated(stored) || can_decode(stored);
    let native = |ts: &str| native_ok.then(|| FramePlan::native(ts));
    if ranges.is_empty() {
        return native(uids::EXPLICIT_VR_LITTLE_ENDIAN);
    }
    ranges.iter().find_map(|range| {
        if range.is_default() {
            return native(uids::EXPLICIT_VR_LITTLE_ENDIAN);
        }
        let part_type = range.part_type()?;
        let ts = range.transfer_syntax();
        if part_type == OCTET_STREAM {
            return match ts {
                None => native(uids::EXPLICIT_VR_LITTLE_ENDIAN),
                Some("*") => Some(FramePlan::as_stored(stored)),
                Some(t)
                    if t == uids::EXPLICIT_VR_LITTLE_ENDIAN
                        || t == uids::IMPLICIT_VR_LITTLE_ENDIAN =>
                {
                    native(t)
                }
                Some(t) if t == stored => Some(FramePlan::as_stored(stored)),
                Some(_) => None,
            };
        }
        if !is_encapsulated(stored) {
            return None;
        }
        let stored_type = media_type_of(stored);
        let type_matches = part_type == stored_type || part_type == "image/*";
        let syntax_matches = match ts {
            None => part_type == "image/*" || default_syntax(part_type) == Some(stored),
            Some(t) => t == "*" || t == stored,
        };
        (type_matches && syntax_matches).then(|| FramePlan::as_stored(stored))
    })
}

/// What a 406 for frames stored in `stored` offers instead.
fn offer(stored: &str) -> String {
    let mut out = Vec::new();
    if !is_encapsulated(stored) || can_decode(stored) {
        out.push(format!(
            "multipart/related; type=\"{OCTET_STREAM}\" (uncompressed, transfer-syntax={})",
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        ));
    }
    if is_encapsulated(stored) {
        out.push(format!(
            "multipart/related; type=\"{}\"; transfer-syntax={stored} (as stored)",
            media_type_of(stored)
        ));
    }
    out.join(" or ")
}

fn not_acceptable(what: &str, info_ts: &str, headers: &HeaderMap) -> HttpError {
    HttpError::NotAcceptable(format!(
        "cannot send {what} (stored as {info_ts}) as any of: {}; it can be sent as {}",
        multipart_out::accept_text(headers),
        offer(info_ts)
    ))
}

/// A frame list: comma-separated numbers from 1 (PS3.18 §10.4.1.1.3).
pub fn parse_frame_list(list: &str) -> Result<Vec<u32>, HttpError> {
    let mut numbers = Vec::new();
    for piece in list.split(',') {
        let piece = piece.trim();
        let n: u32 = piece.parse().map_err(|_| {
            HttpError::BadRequest(format!(
                "frame list {list:?}: {piece:?} is not a frame number (comma-separated numbers from 1)"
            ))
        })?;
        if n == 0 {
            return Err(HttpError::BadRequest(format!(
                "frame list {list:?}: frame numbers start at 1"
            )));
        }
        numbers.push(n);
        if numbers.len() > MAX_FRAMES_PER_REQUEST {
            return Err(HttpError::BadRequest(format!(
                "frame list: at most {MAX_FRAMES_PER_REQUEST} frames per request"
            )));
        }
    }
    Ok(numbers)
}

impl From<FrameError> for HttpError {
    fn from(e: FrameError) -> HttpError {
        match e {
            FrameError::Retrieve(e) => HttpError::from(e),
            FrameError::NotFound(_)
            | FrameError::NoPixelData(_)
            | FrameError::OutOfRange { .. }
            | FrameError::NoElement { .. } => HttpError::NotFound(e.to_string()),
            FrameError::NotBulk { .. } => HttpError::BadRequest(e.to_string()),
            other => HttpError::Internal(other.to_string()),
        }
    }
}

/// The frames as a multipart response.
fn frames_response(plan: FramePlan, set: FrameSet) -> Response {
    let FramePlan {
        media_type,
        part_type,
        ..
    } = plan;
    multipart_out::response(media_type, move |w| async move {
        for frame in set.frames {
            w.part(&part_type, frame).await?;
        }
        Ok(())
    })
}

async fn frames(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series, instance, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    let target = Target::instance(&study, &series, &instance);
    target.check()?;
    let numbers = parse_frame_list(&list)?;
    let archive = state.archive()?;
    let info = instance_info(archive, target).await?;
    crate::web::audit_hooks::viewed(
        &state,
        &user.actor(),
        &study,
        Some(&series),
        Some(&instance),
    );
    if let Some(&past) = numbers.iter().find(|&&n| n > info.frames) {
        return Err(HttpError::NotFound(format!(
            "frame {past}: instance {instance} has {} frame(s), numbered from 1",
            info.frames
        )));
    }
    let ranges = multipart_out::accept(&headers);
    let plan = frame_plan(&ranges, &info.transfer_syntax).ok_or_else(|| {
        not_acceptable(
            &format!("frames of {instance}"),
            &info.transfer_syntax,
            &headers,
        )
    })?;
    let set = archive.frames(&instance, numbers, plan.form).await?;
    Ok(frames_response(plan, set))
}

/// An 8-hex-digit tag of a bulk data URI, e.g. `7FE00010`.
pub fn parse_tag(text: &str) -> Result<Tag, HttpError> {
    let bad = || {
        HttpError::BadRequest(format!(
            "bulk data tag {text:?} is not 8 hexadecimal digits (e.g. 7FE00010)"
        ))
    };
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let value = u32::from_str_radix(text, 16).map_err(|_| bad())?;
    Ok(Tag((value >> 16) as u16, (value & 0xFFFF) as u16))
}

async fn bulkdata(
    user: DicomWebUser,
    State(state): State<WebState>,
    Path((study, series, instance, tag)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    user.require(Role::Viewer)?;
    let target = Target::instance(&study, &series, &instance);
    target.check()?;
    let tag = parse_tag(&tag)?;
    let archive = state.archive()?;
    let info = instance_info(archive, target).await?;
    crate::web::audit_hooks::viewed(
        &state,
        &user.actor(),
        &study,
        Some(&series),
        Some(&instance),
    );
    let ranges = multipart_out::accept(&headers);
    if tag == tags::PIXEL_DATA && is_encapsulated(&info.transfer_syntax) {
        // Encapsulated pixel data has no single value: its frames, as for /frames.
        let plan = frame_plan(&ranges, &info.transfer_syntax).ok_or_else(|| {
            not_acceptable(
                &format!("pixel data of {instance}"),
                &info.transfer_syntax,
                &headers,
            )
        })?;
        let set = archive
            .frames(&instance, (1..=info.frames).collect(), plan.form)
            .await?;
        return Ok(frames_response(plan, set));
    }
    let octet_ok = ranges.is_empty()
        || ranges
            .iter()
            .any(|r| r.is_default() || r.part_type() == Some(OCTET_STREAM));
    if !octet_ok {
        return Err(HttpError::NotAcceptable(format!(
            "bulk data is sent as multipart/related; type=\"{OCTET_STREAM}\", not as any of: {}",
            multipart_out::accept_text(&headers)
        )));
    }
    let value = archive.bulk_value(&instance, tag).await?;
    let part_type = if tag == tags::PIXEL_DATA {
        format!(
            "{OCTET_STREAM}; transfer-syntax={}",
            uids::EXPLICIT_VR_LITTLE_ENDIAN
        )
    } else {
        OCTET_STREAM.to_string()
    };
    Ok(multipart_out::response(OCTET_STREAM, move |w| async move {
        w.part(&part_type, value).await
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::dicomweb::multipart_out::parse_accept_value;

    const JPEG: &str = "1.2.840.10008.1.2.4.50";
    const J2K_LOSSY: &str = "1.2.840.10008.1.2.4.91";
    const JLS: &str = "1.2.840.10008.1.2.4.80";

    #[test]
    fn frame_media_types() {
        let explicit = uids::EXPLICIT_VR_LITTLE_ENDIAN;
        // Default: uncompressed; compressed stored frames are decoded.
        assert_eq!(
            frame_plan(&[], JPEG).map(|p| p.form),
            Some(FrameForm::Native)
        );
        let octet = parse_accept_value("multipart/related; type=\"application/octet-stream\"");
        assert_eq!(
            frame_plan(&octet, explicit).map(|p| p.form),
            Some(FrameForm::Native)
        );
        // The stored compressed syntax, by its media type.
        let jpeg = parse_accept_value(&format!(
            "multipart/related; type=\"image/jpeg\"; transfer-syntax={JPEG}"
        ));
        let plan = frame_plan(&jpeg, JPEG).expect("as stored");
        assert_eq!(plan.form, FrameForm::AsStored);
        assert_eq!(
            plan.part_type,
            format!("image/jpeg; transfer-syntax={JPEG}")
        );
        assert_eq!(frame_plan(&jpeg, explicit), None);
        // image/jp2 without a syntax means lossless: not a lossy stored object.
        let jp2 = parse_accept_value("multipart/related; type=\"image/jp2\"");
        assert_eq!(frame_plan(&jp2, J2K_LOSSY), None);
        let jp2_lossy = parse_accept_value(&format!(
            "multipart/related; type=\"image/jp2\"; transfer-syntax={J2K_LOSSY}"
        ));
        assert!(frame_plan(&jp2_lossy, J2K_LOSSY).is_some());
        // Octet-stream with transfer-syntax=* (OHIF): as stored, labelled with its type.
        let any = parse_accept_value(
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
        );
        assert_eq!(
            frame_plan(&any, JLS).map(|p| p.media_type),
            Some("image/jls")
        );
        // JPEG-LS cannot be decoded here: uncompressed frames of it are refused.
        assert_eq!(frame_plan(&octet, JLS), None);
        assert!(offer(JLS).contains("image/jls"), "{}", offer(JLS));
    }

    #[test]
    fn frame_lists_and_tags() {
        assert_eq!(parse_frame_list("1,3, 2").expect("list"), vec![1, 3, 2]);
        for bad in ["0", "", "1,,2", "a", "-1", "1.5"] {
            assert!(parse_frame_list(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_tag("7FE00010").expect("tag"), tags::PIXEL_DATA);
        assert_eq!(parse_tag("7fe00010").expect("tag"), tags::PIXEL_DATA);
        for bad in ["7FE0001", "7FE000100", "7FE0001G", "(7FE0,0010)"] {
            assert!(parse_tag(bad).is_err(), "{bad}");
        }
    }
}
