//! The C-STORE order (DESIGN.md §3): validate, store durably, index, and only then report
//! success.

use std::io::{Seek, SeekFrom};
use std::time::{SystemTime, UNIX_EPOCH};

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::{TransferSyntax, TransferSyntaxIndex};
use dicom_object::{InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_transfer_syntax_registry::entries::{
    EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN,
};

use super::spool::Spooled;
use super::structure::{Encoding, StructureCheck};
use super::{Archive, IngestError, IngestRequest, Spool};
use crate::config::DuplicatePolicy;
use crate::index::{Applied, InstanceEntry, ObjectFacts, text};
use crate::query::charset::dataset::{DefaultCharacterSet, relies_on_default};
use crate::storage::{Keepalive, Locator, ObjectKey, PutSource};
use crate::uid;

/// What happened to an object that was not refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    Stored,
    /// Replaced an object with the same SOP Instance UID (policy `replace`).
    Replaced,
    /// Already stored; the new copy was dropped (policy `ignore`).
    DuplicateIgnored,
}

fn check_uid(attribute: &'static str, value: &str) -> Result<(), IngestError> {
    uid::validate(value).map_err(|reason| IngestError::InvalidUid {
        attribute,
        value: value.chars().take(80).collect(),
        reason,
    })
}

/// Checks on what the sender announced, before any byte is spooled.
pub(crate) fn check_request(request: &IngestRequest) -> Result<(), IngestError> {
    check_uid("Affected SOP Class UID", &request.sop_class_uid)?;
    check_uid("Affected SOP Instance UID", &request.sop_instance_uid)?;
    check_uid("Transfer Syntax UID", &request.transfer_syntax)?;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IngestError> + Send + 'static,
) -> Result<T, IngestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| IngestError::Spool(std::io::Error::other(e.to_string())))?
}

impl Archive {
    /// Whether any site still holds one of these copies (an index entry whose copies are all
    /// gone is no duplicate).
    async fn any_copy_exists(&self, placements: &[(String, crate::index::Placement)]) -> bool {
        for (site_name, placement) in placements {
            if let Some(site) = self.inner.sites.get(site_name)
                && site.size(&Locator(placement.locator.clone())).await.is_ok()
            {
                return true;
            }
        }
        // No placement at all: an entry from before placements existed, or a site that left
        // the configuration; treat it as stored rather than overwrite it silently.
        placements.is_empty()
    }

    /// The data set is complete: make it durable and indexed, or refuse it leaving nothing behind.
    pub async fn commit(&self, spool: Spool) -> Result<IngestOutcome, IngestError> {
        let spooled = spool.finish().await?;
        self.store_spooled(spooled).await
    }

    pub(crate) async fn store_spooled(
        &self,
        spooled: Spooled,
    ) -> Result<IngestOutcome, IngestError> {
        let t0 = std::time::Instant::now();
        let max_depth = self.inner.max_sequence_depth;
        let default_charset = self.inner.default_charset.clone();
        let (mut spooled, entry, relied_on_default) = blocking(move || {
            let (entry, relied) = parse_and_validate(&spooled, max_depth, &default_charset)?;
            Ok((spooled, entry, relied))
        })
        .await?;
        if relied_on_default && spooled.request.charset_notice.first() {
            // Once per association (import run, STOW request): a modality that omits
            // (0008,0005) omits it in every object it sends.
            tracing::warn!(
                sop_instance_uid = %spooled.request.sop_instance_uid,
                default_character_set = %self.inner.default_charset.term(),
                "data set has text beyond ASCII but no Specific Character Set (0008,0005): indexed as dicom.default_character_set, stored unchanged (logged once per association)"
            );
        }
        let t1 = std::time::Instant::now();
        let uid = spooled.request.sop_instance_uid.clone();
        let index = &self.inner.index;
        let _uid_lock = self.inner.uid_locks.lock(&uid).await;
        // The generation the index points at, if any; a replacement goes to the next one so the
        // durable, indexed copy stays untouched until the new one is durable and indexed.
        let live = index.instance(&uid)?.map(|record| {
            ObjectKey::parse(&record.object_key).unwrap_or_else(|| ObjectKey::for_instance(&uid))
        });
        let old_placements = match live {
            Some(_) => index.placements(&uid)?,
            None => Vec::new(),
        };
        let key = match &live {
            None => ObjectKey::for_instance(&uid),
            Some(live) => {
                // An index entry whose object is gone (lost after a failed commit) is no
                // duplicate: the new copy takes its place whatever the policy.
                if self.any_copy_exists(&old_placements).await {
                    match self.inner.duplicate_policy {
                        DuplicatePolicy::Ignore => {
                            tracing::info!(sop_instance_uid = %uid, "already stored; duplicate ignored");
                            return Ok(IngestOutcome::DuplicateIgnored);
                        }
                        DuplicatePolicy::Reject => return Err(IngestError::Duplicate(uid)),
                        DuplicatePolicy::Replace => {}
                    }
                }
                live.next_generation()
            }
        };
        // Quota bytes stay reserved until the commit has counted them in the index totals.
        let _reservation = spooled.reservation.take();
        let path = spooled.guard.path.clone();
        // The spool file goes when the last holder is done: this commit, or a copy to a site
        // the ack policy did not wait for, still running after the acknowledgement.
        let hold = std::sync::Arc::new(spooled.guard);
        let source = PutSource {
            key: key.clone(),
            path,
            size: spooled.size,
            sha256: spooled.sha256,
            hold: Some(Keepalive(hold.clone())),
        };
        // The local store fsyncs the data here, in this association's task: a crash never
        // leaves a torn object under a key, and the group commit only has names to sync.
        self.inner.sites.prepare(&source).await?;
        drop(spooled.file);
        let t2 = std::time::Instant::now();
        // The spool file stays guarded until the commit is over: sites other than the local
        // store copy it, and it must go whether or not they managed to.
        let committed = self.inner.committer.commit(source, entry).await;
        drop(hold);
        let applied = committed?;
        // Only now, with the new generation durable and indexed, the old one can go. Losing
        // this delete to a crash leaves an un-indexed generation that reconciliation removes.
        if live.is_some_and(|old| old != key) {
            for (site_name, placement) in old_placements {
                let Some(site) = self.inner.sites.get(&site_name) else {
                    continue;
                };
                let locator = Locator(placement.locator);
                match site.delete(&locator).await {
                    Ok(()) | Err(crate::storage::StorageError::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(site = %site_name, object = %locator, error = %e, "cannot remove the replaced generation")
                    }
                }
            }
        }
        tracing::debug!(
            sop_instance_uid = %uid,
            object = %key,
            bytes = spooled.size,
            parse_us = (t1 - t0).as_micros() as u64,
            store_us = (t2 - t1).as_micros() as u64,
            commit_us = t2.elapsed().as_micros() as u64,
            "object durable and indexed"
        );
        match applied {
            Applied::Inserted => Ok(IngestOutcome::Stored),
            Applied::Replaced => Ok(IngestOutcome::Replaced),
        }
    }
}

fn transfer_syntax(uid: &str) -> Result<&'static TransferSyntax, IngestError> {
    TransferSyntaxRegistry
        .get(uid)
        .ok_or_else(|| IngestError::Unreadable(format!("unknown transfer syntax {uid}")))
}

/// How the data set of a transfer syntax is encoded, for the structure walk; `None` for
/// deflated data sets, which are walked after inflating them (see [`walk_file`]).
pub(crate) fn dataset_encoding(ts_uid: &str) -> Result<Option<Encoding>, IngestError> {
    let ts = transfer_syntax(ts_uid)?;
    if is_deflated(ts) {
        return Ok(None);
    }
    // dicom-encoding does not expose the VR mode; Implicit VR Little Endian is the registry's
    // only implicit-VR syntax.
    Ok(Some(Encoding {
        explicit_vr: ts.uid() != IMPLICIT_VR_LITTLE_ENDIAN.uid(),
        big_endian: ts.endianness() == dicom_encoding::transfer_syntax::Endianness::Big,
    }))
}

fn is_deflated(ts: &TransferSyntax) -> bool {
    matches!(ts.codec(), dicom_encoding::Codec::Dataset(_))
}

/// Check the data set's structure (truncation and nesting bombs show here), parse its header,
/// check it against the announcement and build the index entry; also whether its text was read
/// with the default character set (none declared, text beyond ASCII).
pub(crate) fn parse_and_validate(
    spooled: &Spooled,
    max_depth: usize,
    default_charset: &DefaultCharacterSet,
) -> Result<(InstanceEntry, bool), IngestError> {
    let request = &spooled.request;
    let walked;
    let structure = match &spooled.structure {
        Some(check) => check,
        None => {
            walked = walk_file(spooled, max_depth)?;
            &walked
        }
    };
    structure.result().map_err(IngestError::Unreadable)?;
    let ts = transfer_syntax(&request.transfer_syntax)?;
    // The header captured from a deflated data set was captured inflated.
    let header_ts = if is_deflated(ts) {
        transfer_syntax(EXPLICIT_VR_LITTLE_ENDIAN.uid())?
    } else {
        ts
    };
    let object = match structure.header() {
        Some(bytes) => InMemDicomObject::read_dataset_with_ts(bytes, header_ts)
            .map_err(|e| IngestError::Unreadable(error_chain(&e)))?,
        None => OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(&spooled.guard.path)
            .map_err(|e| IngestError::Unreadable(error_chain(&e)))?
            .into_inner(),
    };
    let header: &InMemDicomObject = &object;
    let required = |tag: Tag, name: &'static str| -> Result<String, IngestError> {
        let value = text(header, tag);
        if value.is_empty() {
            return Err(IngestError::MissingAttribute(name));
        }
        check_uid(name, &value)?;
        Ok(value)
    };
    let sop_instance = required(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    if sop_instance != request.sop_instance_uid {
        return Err(IngestError::DatasetMismatch(format!(
            "SOPInstanceUID {sop_instance} in the data set, {} in the command",
            request.sop_instance_uid
        )));
    }
    let sop_class = required(tags::SOP_CLASS_UID, "SOPClassUID")?;
    if sop_class != request.sop_class_uid {
        return Err(IngestError::DatasetMismatch(format!(
            "SOPClassUID {sop_class} in the data set, {} in the command",
            request.sop_class_uid
        )));
    }
    required(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    required(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let facts = ObjectFacts {
        sop_class_uid: sop_class,
        sop_instance_uid: sop_instance.clone(),
        transfer_syntax: request.transfer_syntax.clone(),
        size: spooled.size,
        sha256: spooled.sha256,
        object_key: ObjectKey::for_instance(&sop_instance).to_string(),
        source_aet: request.source_aet.clone(),
        received_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let relied_on_default = relies_on_default(header);
    let entry = InstanceEntry::from_header(header, facts, default_charset)
        .map_err(|e| IngestError::Unreadable(e.to_string()))?;
    Ok((entry, relied_on_default))
}

/// The structure walk for an object that did not arrive through a spool (read from its file),
/// or whose data set is deflated (walked as it inflates: memory stays bounded whatever the
/// inflated size).
fn walk_file(spooled: &Spooled, max_depth: usize) -> Result<StructureCheck, IngestError> {
    let mut file = spooled.file.try_clone().map_err(IngestError::spool)?;
    file.seek(SeekFrom::Start(spooled.dataset_offset))
        .map_err(IngestError::spool)?;
    let file = std::io::BufReader::new(file);
    match dataset_encoding(&spooled.request.transfer_syntax)? {
        Some(encoding) => StructureCheck::read_from(encoding, max_depth, file),
        None => StructureCheck::read_from(
            Encoding::EXPLICIT_LE,
            max_depth,
            flate2::bufread::DeflateDecoder::new(file),
        ),
    }
    .map_err(|e| IngestError::Unreadable(format!("cannot read the data set: {e}")))
}

/// An error with its sources, on one line.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
