//! A storage site: one place that holds copies of objects (the embedded local store, a local
//! directory of pack files, or one HDFS cluster). The archive writes groups of spooled objects to
//! sites and reads them back by locator; which sites hold what is the index's business.

use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectKey, Result};

/// Where one copy of an object lives on one site, as the site spelled it when it stored it:
/// a file key for the local store, `pack@offset+len` for a pack site. Opaque to everyone else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Locator(pub String);

impl std::fmt::Display for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One object to put: a complete Part-10 file on local disk and what we know of it.
#[derive(Debug, Clone)]
pub struct PutSource {
    pub key: ObjectKey,
    pub path: PathBuf,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Keeps the file in place while anyone still copies it (the owner removes it when the
    /// last clone drops): copies to further sites may outlive the acknowledgement.
    pub hold: Option<Keepalive>,
}

/// A shared owner of whatever removes a source file when dropped.
#[derive(Clone)]
pub struct Keepalive(pub std::sync::Arc<dyn std::any::Any + Send + Sync>);

impl std::fmt::Debug for Keepalive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keepalive")
    }
}

/// A page of a site's listing.
#[derive(Debug, Clone, Default)]
pub struct ListPage {
    pub objects: Vec<ListedObject>,
    /// Pass back to get the next page; `None` at the end.
    pub next: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: ObjectKey,
    pub locator: Locator,
    pub size: u64,
    /// The SHA-256 the site recorded with the object, when it keeps one (pack records do).
    pub sha256: Option<[u8; 32]>,
}

#[async_trait]
pub trait Site: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;

    /// Called once per object as soon as it is spooled, before the group commit: a site may
    /// start making the bytes durable here (the local store fsyncs the spool file so the
    /// group's barrier only has names left to sync). Default: nothing.
    async fn prepare(&self, _source: &PutSource) -> Result<()> {
        Ok(())
    }

    /// Store a group of objects durably: when this returns Ok, every object is on stable
    /// storage of the site under the returned locators (same order as `objects`). On Err,
    /// none of them may be referenced; the site may keep unreferenced bytes.
    /// The local store *moves* the files (they are gone afterwards); other sites copy.
    async fn put_group(&self, objects: &[PutSource]) -> Result<Vec<Locator>>;

    /// Bytes `[offset, offset + len)` of the object at `locator`, clamped to its end.
    async fn read_at(&self, locator: &Locator, offset: u64, len: u64) -> Result<Bytes>;

    /// The size of the object at `locator` (checks that it is there).
    async fn size(&self, locator: &Locator) -> Result<u64>;

    /// Forget the object at `locator` (a pack site marks its bytes garbage for compaction).
    async fn delete(&self, locator: &Locator) -> Result<()>;

    /// The objects stored on the site, one page at a time (for reconciliation, reindexing).
    async fn list(&self, cursor: Option<String>, limit: usize) -> Result<ListPage>;

    /// A cheap round trip to the site (latency probe, up/down).
    async fn probe(&self) -> Result<()>;

    /// Finish writing (seal an open pack) at shutdown.
    async fn close(&self) -> Result<()> {
        Ok(())
    }

    /// The path of the object when it is a whole file on this machine.
    fn local_path(&self, _locator: &Locator) -> Option<PathBuf> {
        None
    }

    /// Containers holding several objects (pack files) that compaction may rewrite: (name,
    /// bytes). Never the one being written, nor one that may hold objects whose placements are
    /// not indexed yet. Sites without containers have none.
    async fn compactable(&self) -> Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }

    /// The container an object's copy lives in, and the bytes it takes there.
    fn container_of(&self, _locator: &Locator) -> Option<(String, u64)> {
        None
    }

    /// Remove a container whose live objects were all copied elsewhere on the site.
    async fn remove_container(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

/// A parsed site URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteUrl {
    /// `file:///dir`: pack files in a local directory.
    File(PathBuf),
    /// `hdfs://authority`: one namenode (`host:port`) or an HA nameservice whose namenodes are
    /// listed in `namenodes`.
    Hdfs {
        authority: String,
        namenodes: Vec<String>,
    },
}

impl SiteUrl {
    pub fn parse(url: &str, namenodes: &[String]) -> std::result::Result<SiteUrl, String> {
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err("a file:// URL needs an absolute path (file:///dir)".into());
            }
            if !namenodes.is_empty() {
                return Err("namenodes are for hdfs:// sites only".into());
            }
            return Ok(SiteUrl::File(PathBuf::from(path)));
        }
        if let Some(rest) = url.strip_prefix("hdfs://") {
            let authority = rest.trim_end_matches('/');
            if authority.is_empty() || authority.contains('/') {
                return Err("expected hdfs://host:port or hdfs://nameservice".into());
            }
            let has_port = authority
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            if !has_port && namenodes.is_empty() {
                return Err(
                    "hdfs://nameservice needs a namenodes list; a single namenode is hdfs://host:port"
                        .into(),
                );
            }
            if has_port && !namenodes.is_empty() {
                return Err("namenodes go with hdfs://nameservice (no port)".into());
            }
            for nn in namenodes {
                let ok = nn
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
                if !ok {
                    return Err(format!("namenode {nn:?} is not host:port"));
                }
            }
            return Ok(SiteUrl::Hdfs {
                authority: authority.to_string(),
                namenodes: namenodes.to_vec(),
            });
        }
        Err("expected hdfs://host:port, hdfs://nameservice or file:///dir".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_urls() {
        assert_eq!(
            SiteUrl::parse("file:///srv/a", &[]),
            Ok(SiteUrl::File("/srv/a".into()))
        );
        assert!(SiteUrl::parse("file://rel", &[]).is_err());
        assert!(SiteUrl::parse("hdfs://nn:8020", &[]).is_ok());
        assert!(SiteUrl::parse("hdfs://ns", &[]).is_err());
        let nns = vec!["a:8020".to_string(), "b:8020".to_string()];
        assert!(SiteUrl::parse("hdfs://ns", &nns).is_ok());
        assert!(SiteUrl::parse("hdfs://ns", &["a".to_string()]).is_err());
        assert!(SiteUrl::parse("s3://x", &[]).is_err());
    }
}
