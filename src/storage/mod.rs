//! The storage boundary: sites that hold copies of objects ([`Site`]), written in durable groups,
//! read by locator with positional reads. The embedded default is one local store; configured
//! sites are pack sites (a local directory or an HDFS cluster) behind the same trait, with the
//! ack policy deciding how many must hold an object before it is acknowledged ([`Sites`]).

pub mod coalloc;
mod hdfs;
pub mod health;
mod local;
mod localfs;
mod pack;
mod packfs;
mod site;
mod sites;

pub use coalloc::{CoAllocator, ObjectSources, ObjectStream, ObjectsStream};
pub use hdfs::{HdfsFs, checks as hdfs_checks};
pub use health::{SiteHealth, SiteSnapshot, SiteState};
pub use local::{LOCAL_SITE, LocalStore, fsync_dir};
pub use localfs::LocalFs;
pub use pack::{PackSite, RecordHeader};
pub use packfs::{FsEntry, PackFs, PackReader, PackWriter};
pub use site::{Keepalive, ListPage, ListedObject, Locator, PutSource, Site, SiteUrl};
pub use sites::{AckFailure, GroupPut, LateWrites, Sites};

use std::sync::Arc;

use crate::config::SiteConfig;

/// Errors of a store, named after the operation; disk-full is its own variant because it maps to
/// "out of resources" for the peer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no space left for {key}: {source}")]
    Full { key: String, source: std::io::Error },
    #[error("cannot {op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        source: std::io::Error,
    },
    #[error("object {0} not found")]
    NotFound(String),
    #[error("background task failed: {0}")]
    Task(String),
    /// The site cannot be reached or did not answer in time (namenode down, timeout, refused
    /// connection): the caller tries another site or queues the work.
    #[error("site {site} unavailable: {reason}")]
    Unavailable { site: String, reason: String },
    /// Fewer sites than the ack policy requires could store a group.
    #[error("{0}")]
    AckNotMet(AckFailure),
    /// The site answered, but with bytes that are not what we stored (short read, bad pack
    /// record, checksum mismatch).
    #[error("site {site}: corrupt object {locator}: {reason}")]
    Corrupt {
        site: String,
        locator: String,
        reason: String,
    },
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn io(op: &'static str, key: &str, source: std::io::Error) -> StorageError {
        if is_disk_full(&source) {
            StorageError::Full {
                key: key.to_string(),
                source,
            }
        } else if source.kind() == std::io::ErrorKind::NotFound {
            StorageError::NotFound(key.to_string())
        } else {
            StorageError::Io {
                op,
                key: key.to_string(),
                source,
            }
        }
    }
}

/// Open one configured site: pack files on HDFS or in a local directory.
pub async fn open_site(config: &SiteConfig) -> Result<Arc<dyn Site>> {
    let url = SiteUrl::parse(&config.url, &config.namenodes).map_err(|reason| {
        StorageError::Unavailable {
            site: config.name.clone(),
            reason,
        }
    })?;
    let fs: Arc<dyn PackFs> = match url {
        SiteUrl::File(dir) => Arc::new(LocalFs::new(&config.name, dir)),
        SiteUrl::Hdfs { .. } => Arc::new(HdfsFs::connect(config)?),
    };
    let site = PackSite::open(
        &config.name,
        fs,
        &config.root,
        config.pack_max_mb.saturating_mul(1 << 20),
    )
    .await?;
    Ok(Arc::new(site))
}

/// ENOSPC and EDQUOT both mean "no room for this object".
pub fn is_disk_full(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::StorageFull
            | std::io::ErrorKind::QuotaExceeded
            | std::io::ErrorKind::FileTooLarge
    )
}

/// The key of an object in every store: `<2 hex>/<SOP Instance UID>.dcm` for generation 0 and
/// `<2 hex>/<SOP Instance UID>.g<N>.dcm` for generation N, the prefix being the first byte of
/// SHA-256 of the UID so objects spread over 256 directories. A replaced instance gets a new
/// generation, so the durable, indexed copy is never overwritten in place: the index record
/// names the generation it points at (`InstanceRecord::object_key`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Generation 0 (the key every object had before generations existed).
    /// The caller must have validated `sop_instance_uid` (digits and dots only).
    pub fn for_instance(sop_instance_uid: &str) -> ObjectKey {
        ObjectKey::for_generation(sop_instance_uid, 0)
    }

    /// The caller must have validated `sop_instance_uid` (digits and dots only).
    pub fn for_generation(sop_instance_uid: &str, generation: u64) -> ObjectKey {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(sop_instance_uid.as_bytes());
        if generation == 0 {
            ObjectKey(format!("{:02x}/{sop_instance_uid}.dcm", digest[0]))
        } else {
            ObjectKey(format!(
                "{:02x}/{sop_instance_uid}.g{generation}.dcm",
                digest[0]
            ))
        }
    }

    /// Parse a stored key back (e.g. from a directory listing or an index record); `None` if
    /// it is not one of ours.
    pub fn parse(key: &str) -> Option<ObjectKey> {
        let (dir, file) = key.split_once('/')?;
        let (uid, generation) = split_file_name(file)?;
        let ok = dir.len() == 2
            && dir.bytes().all(|b| b.is_ascii_hexdigit())
            && crate::uid::validate(uid).is_ok();
        ok.then(|| ObjectKey::for_generation(uid, generation))
            .filter(|k| k.0 == key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn sop_instance_uid(&self) -> &str {
        let file = self.0.split_once('/').map(|(_, f)| f).unwrap_or(&self.0);
        split_file_name(file).map(|(uid, _)| uid).unwrap_or(file)
    }

    pub fn generation(&self) -> u64 {
        let file = self.0.split_once('/').map(|(_, f)| f).unwrap_or(&self.0);
        split_file_name(file).map(|(_, g)| g).unwrap_or(0)
    }

    /// The key of the next generation of the same instance.
    pub fn next_generation(&self) -> ObjectKey {
        ObjectKey::for_generation(self.sop_instance_uid(), self.generation() + 1)
    }
}

/// `<uid>.dcm` → (uid, 0); `<uid>.g<N>.dcm` → (uid, N). A UID holds only digits and dots, so
/// `.g` cannot be part of it.
fn split_file_name(file: &str) -> Option<(&str, u64)> {
    let stem = file.strip_suffix(".dcm")?;
    match stem.rsplit_once(".g") {
        Some((uid, n)) => {
            let generation: u64 = n.parse().ok()?;
            // one spelling per generation: no "g0", no leading zeros, no sign
            (generation > 0 && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0'))
                .then_some((uid, generation))
        }
        None => Some((stem, 0)),
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = ObjectKey::for_instance("1.2.3.4");
        assert_eq!(key.sop_instance_uid(), "1.2.3.4");
        assert_eq!(ObjectKey::parse(key.as_str()), Some(key.clone()));
        assert!(key.as_str().ends_with("/1.2.3.4.dcm"));
        assert_eq!(ObjectKey::parse("zz/1.2.3.dcm"), None);
        assert_eq!(ObjectKey::parse("00/../x.dcm"), None);
        // a file in the wrong fan-out directory is not one of ours
        let wrong = format!(
            "{}/1.2.3.4.dcm",
            if key.as_str().starts_with("00") {
                "01"
            } else {
                "00"
            }
        );
        assert_eq!(ObjectKey::parse(&wrong), None);
    }

    #[test]
    fn generations_have_their_own_keys() {
        let g0 = ObjectKey::for_instance("1.2.3.4");
        assert_eq!(g0.generation(), 0);
        let g1 = g0.next_generation();
        assert_ne!(g1, g0);
        assert_eq!((g1.sop_instance_uid(), g1.generation()), ("1.2.3.4", 1));
        assert!(g1.as_str().ends_with("/1.2.3.4.g1.dcm"));
        assert_eq!(ObjectKey::parse(g1.as_str()), Some(g1.clone()));
        let g12 = ObjectKey::for_generation("1.2.3.4", 12);
        assert_eq!(
            ObjectKey::parse(g12.as_str()).map(|k| k.generation()),
            Some(12)
        );
        let dir = &g0.as_str()[..2];
        for bad in [
            "1.2.3.4.g0.dcm",
            "1.2.3.4.g01.dcm",
            "1.2.3.4.g.dcm",
            "1.2.3.4.g+1.dcm",
        ] {
            assert_eq!(ObjectKey::parse(&format!("{dir}/{bad}")), None, "{bad}");
        }
    }
}
