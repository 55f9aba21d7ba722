//! A pack site: objects appended to large pack files on a [`PackFs`] (HDFS or a local
//! directory), one record per object, made durable once per group commit.
//!
//! Why packs: on HDFS every file and every block is a NameNode object and every create/close
//! costs RPCs and a datanode pipeline set-up. One file per 0.5 MB CT slice is the classic
//! small-files problem at 10⁸ instances and a create+close per C-STORE is slow. Appending to a
//! pack that stays open costs one `hsync` per group (made durable and visible to new readers
//! at once), and 10,000 instances of 0.5 MB take 5 files of 1 GiB instead of 10,000.
//!
//! Record: a header (magic, header length, generation, size, SHA-256, SOP Instance UID) then
//! the Part-10 bytes. A locator names the pack and the object bytes' offset and length, so a
//! read is one positional read; the headers make a pack self-describing (listing, reindexing
//! from the site alone). Bytes after the last sync of a crashed writer are never referenced.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;

use super::{
    ListPage, ListedObject, Locator, ObjectKey, PackFs, PackReader, PackWriter, PutSource, Result,
    Site, StorageError,
};

const MAGIC: &[u8; 8] = b"MIFASOB1";
/// magic, header length (u32), generation (u64), size (u64), SHA-256, UID length (u16)
const FIXED_HEADER: usize = 8 + 4 + 8 + 8 + 32 + 2;
/// Largest header: a UID is at most 64 characters.
const MAX_HEADER: usize = FIXED_HEADER + 64;
/// Bytes copied from a spool file per write call.
const COPY_CHUNK: usize = 1 << 20;
/// Readers kept open (one per recently read pack).
const READER_CACHE: usize = 64;

/// A record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub uid: String,
    pub generation: u64,
    pub size: u64,
    pub sha256: [u8; 32],
}

impl RecordHeader {
    fn encode(&self) -> Bytes {
        let len = FIXED_HEADER + self.uid.len();
        let mut b = BytesMut::with_capacity(len);
        b.put_slice(MAGIC);
        b.put_u32_le(len as u32);
        b.put_u64_le(self.generation);
        b.put_u64_le(self.size);
        b.put_slice(&self.sha256);
        b.put_u16_le(self.uid.len() as u16);
        b.put_slice(self.uid.as_bytes());
        b.freeze()
    }

    /// Parse a header at the start of `bytes`; returns it with its length.
    fn decode(bytes: &[u8]) -> Option<(RecordHeader, usize)> {
        if bytes.get(..8)? != MAGIC {
            return None;
        }
        let u32_at = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
        let u64_at = |i: usize| Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
        let len = u32_at(8)? as usize;
        let generation = u64_at(12)?;
        let size = u64_at(20)?;
        let sha256: [u8; 32] = bytes.get(28..60)?.try_into().ok()?;
        let uid_len = u16::from_le_bytes(bytes.get(60..62)?.try_into().ok()?) as usize;
        if len != FIXED_HEADER + uid_len || len > MAX_HEADER {
            return None;
        }
        let uid = std::str::from_utf8(bytes.get(62..62 + uid_len)?).ok()?;
        crate::uid::validate(uid).ok()?;
        Some((
            RecordHeader {
                uid: uid.to_string(),
                generation,
                size,
                sha256,
            },
            len,
        ))
    }
}

/// A parsed locator: `<pack>@<offset>+<len>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PackLocation {
    pack: String,
    offset: u64,
    len: u64,
}

impl PackLocation {
    fn parse(locator: &Locator) -> Option<PackLocation> {
        let (pack, rest) = locator.0.split_once('@')?;
        let (offset, len) = rest.split_once('+')?;
        let ok = !pack.is_empty()
            && pack
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        ok.then_some(PackLocation {
            pack: pack.to_string(),
            offset: offset.parse().ok()?,
            len: len.parse().ok()?,
        })
    }

    fn locator(&self) -> Locator {
        Locator(format!("{}@{}+{}", self.pack, self.offset, self.len))
    }
}

struct OpenPack {
    name: String,
    writer: Box<dyn PackWriter>,
}

/// Objects in pack files on one file system.
pub struct PackSite {
    name: String,
    fs: Arc<dyn PackFs>,
    /// `<root>/packs`
    dir: String,
    pack_max_bytes: u64,
    writer: Mutex<Option<OpenPack>>,
    /// Pack names are `<start time ms>-<sequence>.pack`: unique across restarts, ordered.
    epoch_ms: u64,
    sequence: AtomicU64,
    readers: std::sync::Mutex<HashMap<String, Arc<dyn PackReader>>>,
    /// Packs this process sealed or gave up, and when: compaction leaves them alone for a
    /// while, since the group that filled one may not be indexed yet.
    retired: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

/// How long after it was sealed a pack of this process may be compacted (the index write of
/// its last group takes milliseconds; this is a wide margin).
const COMPACT_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

impl std::fmt::Debug for PackSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackSite")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl PackSite {
    /// A pack site under `root` on `fs`. Packs a crashed predecessor left open are recovered
    /// (HDFS lease recovery) so their synced records stay readable.
    pub async fn open(
        name: &str,
        fs: Arc<dyn PackFs>,
        root: &str,
        pack_max_bytes: u64,
    ) -> Result<PackSite> {
        let dir = format!("{}/packs", root.trim_end_matches('/'));
        let epoch_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let site = PackSite {
            name: name.to_string(),
            fs,
            dir,
            pack_max_bytes: pack_max_bytes.max(1 << 20),
            writer: Mutex::new(None),
            epoch_ms,
            sequence: AtomicU64::new(0),
            readers: std::sync::Mutex::new(HashMap::new()),
            retired: std::sync::Mutex::new(HashMap::new()),
        };
        match site.packs().await {
            Ok(packs) => {
                // Only the newest packs can have been open at a crash (one per process start,
                // plus one abandoned after a failed write); older ones were sealed.
                for pack in packs.iter().rev().take(4) {
                    if let Err(e) = site.fs.recover(&site.path(pack)).await {
                        tracing::warn!(site = %site.name, pack = %pack, error = %e, "cannot recover a pack left open");
                    }
                }
            }
            // A site that is down at start is not fatal: writes go elsewhere, health marks it.
            Err(e) => tracing::warn!(site = %site.name, error = %e, "site not reachable at start"),
        }
        Ok(site)
    }

    fn path(&self, pack: &str) -> String {
        format!("{}/{pack}", self.dir)
    }

    /// Pack names, oldest first.
    async fn packs(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .fs
            .list(&self.dir)
            .await?
            .into_iter()
            .filter(|e| !e.is_dir && e.name.ends_with(".pack"))
            .map(|e| e.name)
            .collect();
        names.sort();
        Ok(names)
    }

    async fn new_pack(&self) -> Result<OpenPack> {
        let seq = self.sequence.fetch_add(1, Ordering::SeqCst);
        let name = format!("{:013}-{seq:06}.pack", self.epoch_ms);
        let writer = self.fs.create(&self.path(&name)).await?;
        tracing::debug!(site = %self.name, pack = %name, "pack started");
        Ok(OpenPack { name, writer })
    }

    /// Append the group to `pack` and make it durable; the locators of the records.
    async fn append(&self, pack: &mut OpenPack, objects: &[PutSource]) -> Result<Vec<Locator>> {
        let mut locators = Vec::with_capacity(objects.len());
        for source in objects {
            let header = RecordHeader {
                uid: source.key.sop_instance_uid().to_string(),
                generation: source.key.generation(),
                size: source.size,
                sha256: source.sha256,
            }
            .encode();
            let offset = pack.writer.written() + header.len() as u64;
            pack.writer.write(header).await?;
            let copied = self.copy_file(pack, source).await?;
            if copied != source.size {
                return Err(StorageError::Io {
                    op: "copy",
                    key: source.key.to_string(),
                    source: std::io::Error::other(format!(
                        "spool file has {copied} bytes, expected {}",
                        source.size
                    )),
                });
            }
            locators.push(
                PackLocation {
                    pack: pack.name.clone(),
                    offset,
                    len: source.size,
                }
                .locator(),
            );
        }
        pack.writer.sync().await?;
        Ok(locators)
    }

    async fn copy_file(&self, pack: &mut OpenPack, source: &PutSource) -> Result<u64> {
        let k = source.key.to_string();
        let mut file = tokio::fs::File::open(&source.path)
            .await
            .map_err(|e| StorageError::io("open", &k, e))?;
        let mut copied = 0u64;
        loop {
            // Sized to what is left: a writer may keep the chunks of its open block (HDFS keeps
            // them to serve reads of that block), and a 1 MiB buffer holding a 2 KB object
            // would pin 1 MiB per object.
            let left = source
                .size
                .saturating_sub(copied)
                .clamp(1, COPY_CHUNK as u64) as usize;
            let mut buf = BytesMut::with_capacity(left);
            let n = file
                .read_buf(&mut buf)
                .await
                .map_err(|e| StorageError::io("read", &k, e))?;
            if n == 0 {
                return Ok(copied);
            }
            copied += n as u64;
            pack.writer.write(buf.freeze()).await?;
        }
    }

    /// Close a pack in the background (sealing it, or giving up on a broken one).
    fn retire(&self, pack: OpenPack, why: &'static str) {
        if let Ok(mut retired) = self.retired.lock() {
            retired.insert(pack.name.clone(), std::time::Instant::now());
        }
        let (site, fs) = (self.name.clone(), self.fs.clone());
        let path = self.path(&pack.name);
        tokio::spawn(async move {
            if let Err(e) = pack.writer.close().await {
                tracing::warn!(site = %site, pack = %path, error = %e, why, "pack close failed; recovering it");
                let _ = fs.recover(&path).await;
            } else {
                tracing::debug!(site = %site, pack = %path, why, "pack closed");
            }
        });
    }

    async fn reader(&self, pack: &str, needed_end: u64) -> Result<Arc<dyn PackReader>> {
        let cached = self.readers.lock().ok().and_then(|r| r.get(pack).cloned());
        if let Some(reader) = cached.filter(|r| r.len() >= needed_end) {
            return Ok(reader);
        }
        // Not open yet, or opened before the bytes we need were synced (the open pack grows).
        let reader: Arc<dyn PackReader> = Arc::from(self.fs.open(&self.path(pack)).await?);
        if let Ok(mut readers) = self.readers.lock() {
            if readers.len() >= READER_CACHE {
                readers.clear();
            }
            readers.insert(pack.to_string(), reader.clone());
        }
        Ok(reader)
    }

    fn location(&self, locator: &Locator) -> Result<PackLocation> {
        PackLocation::parse(locator).ok_or_else(|| StorageError::Corrupt {
            site: self.name.clone(),
            locator: locator.0.clone(),
            reason: "not a pack locator".into(),
        })
    }

    /// The record header in front of an object, checked against its locator.
    async fn header_of(&self, at: &PackLocation) -> Result<RecordHeader> {
        let corrupt = |reason: String| StorageError::Corrupt {
            site: self.name.clone(),
            locator: at.locator().0,
            reason,
        };
        let start = at.offset.saturating_sub(MAX_HEADER as u64);
        let reader = self.reader(&at.pack, at.offset + at.len).await?;
        if reader.len() < at.offset + at.len {
            return Err(corrupt(format!(
                "pack holds {} bytes, the object ends at {}",
                reader.len(),
                at.offset + at.len
            )));
        }
        let bytes = reader.read_at(start, at.offset - start).await?;
        // The header ends right before the object; its length is in the header itself, so try
        // each possible start (a UID is 1..=64 characters).
        for uid_len in 1..=64usize {
            let len = FIXED_HEADER + uid_len;
            let Some(from) = bytes.len().checked_sub(len) else {
                break;
            };
            if let Some((header, hlen)) = RecordHeader::decode(&bytes[from..])
                && hlen == len
            {
                if header.size != at.len {
                    return Err(corrupt(format!(
                        "record says {} bytes, locator {}",
                        header.size, at.len
                    )));
                }
                return Ok(header);
            }
        }
        Err(corrupt("no record header in front of the object".into()))
    }
}

#[async_trait]
impl Site for PackSite {
    fn name(&self) -> &str {
        &self.name
    }

    async fn put_group(&self, objects: &[PutSource]) -> Result<Vec<Locator>> {
        let mut slot = self.writer.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut pack = match slot.take() {
                Some(pack) => pack,
                None => self.new_pack().await?,
            };
            match self.append(&mut pack, objects).await {
                Ok(locators) => {
                    if pack.writer.written() >= self.pack_max_bytes {
                        self.retire(pack, "full");
                    } else {
                        *slot = Some(pack);
                    }
                    return Ok(locators);
                }
                Err(e) => {
                    // The pack's tail is unknown now: never append to it again. Its synced
                    // records stay readable; the whole group is written once more to a new
                    // pack (a new block and pipeline: a datanode that died is left out once
                    // the namenode notices). A site that is away fails the retry quickly at
                    // the namenode, and the ack policy turns to another site.
                    self.retire(pack, "write failed");
                    if attempt > 1 {
                        return Err(e);
                    }
                    tracing::warn!(site = %self.name, error = %e, "pack write failed; writing the group again to a new pack");
                }
            }
        }
    }

    async fn read_at(&self, locator: &Locator, offset: u64, len: u64) -> Result<Bytes> {
        let at = self.location(locator)?;
        let start = offset.min(at.len);
        let len = len.min(at.len - start);
        if len == 0 {
            return Ok(Bytes::new());
        }
        let reader = self.reader(&at.pack, at.offset + at.len).await?;
        let bytes = reader.read_at(at.offset + start, len).await?;
        if (bytes.len() as u64) < len {
            return Err(StorageError::Corrupt {
                site: self.name.clone(),
                locator: locator.0.clone(),
                reason: format!("short read: {} of {len} bytes", bytes.len()),
            });
        }
        Ok(bytes)
    }

    async fn size(&self, locator: &Locator) -> Result<u64> {
        let at = self.location(locator)?;
        self.header_of(&at).await.map(|h| h.size)
    }

    async fn delete(&self, locator: &Locator) -> Result<()> {
        // Records are never rewritten in place; the bytes of a deleted object stay until its
        // pack is compacted.
        self.location(locator).map(|_| ())
    }

    async fn list(&self, cursor: Option<String>, limit: usize) -> Result<ListPage> {
        let limit = limit.max(1);
        let (start_pack, mut offset) = match cursor.as_deref().and_then(|c| c.split_once('@')) {
            Some((pack, offset)) => (Some(pack.to_string()), offset.parse().unwrap_or(0)),
            None => (None, 0),
        };
        let mut objects = Vec::new();
        for pack in self.packs().await? {
            if start_pack.as_ref().is_some_and(|s| pack < *s) {
                continue;
            }
            if start_pack.as_ref() != Some(&pack) {
                offset = 0;
            }
            let reader = self.reader(&pack, 0).await?;
            let end = reader.len();
            while offset < end {
                if objects.len() == limit {
                    return Ok(ListPage {
                        objects,
                        next: Some(format!("{pack}@{offset}")),
                    });
                }
                let head = reader.read_at(offset, MAX_HEADER as u64).await?;
                let Some((header, hlen)) = RecordHeader::decode(&head) else {
                    // An unsynced tail left by a crash: nothing after it was acknowledged.
                    break;
                };
                let at = PackLocation {
                    pack: pack.clone(),
                    offset: offset + hlen as u64,
                    len: header.size,
                };
                if at.offset + at.len > end {
                    break;
                }
                objects.push(ListedObject {
                    key: ObjectKey::for_generation(&header.uid, header.generation),
                    locator: at.locator(),
                    size: header.size,
                    sha256: Some(header.sha256),
                });
                offset = at.offset + at.len;
            }
        }
        Ok(ListPage {
            objects,
            next: None,
        })
    }

    async fn probe(&self) -> Result<()> {
        self.fs.probe().await
    }

    async fn close(&self) -> Result<()> {
        match self.writer.lock().await.take() {
            Some(pack) => pack.writer.close().await,
            None => Ok(()),
        }
    }

    fn local_path(&self, _locator: &Locator) -> Option<PathBuf> {
        None
    }

    async fn compactable(&self) -> Result<Vec<(String, u64)>> {
        let open = self.writer.lock().await.as_ref().map(|p| p.name.clone());
        let recent: Vec<String> = match self.retired.lock() {
            Ok(r) => r
                .iter()
                .filter(|(_, at)| at.elapsed() < COMPACT_AFTER)
                .map(|(n, _)| n.clone())
                .collect(),
            Err(_) => return Ok(Vec::new()),
        };
        // Packs named after this process' start that are neither open nor retired yet are
        // being created right now: leave every pack of this process that is not known sealed.
        let ours = format!("{:013}-", self.epoch_ms);
        Ok(self
            .fs
            .list(&self.dir)
            .await?
            .into_iter()
            .filter(|e| !e.is_dir && e.name.ends_with(".pack"))
            .filter(|e| Some(&e.name) != open.as_ref() && !recent.contains(&e.name))
            .filter(|e| {
                !e.name.starts_with(&ours)
                    || self
                        .retired
                        .lock()
                        .map(|r| r.contains_key(&e.name))
                        .unwrap_or(false)
            })
            .map(|e| (e.name, e.len))
            .collect())
    }

    fn container_of(&self, locator: &Locator) -> Option<(String, u64)> {
        // The record header: the fixed part and the UID, which is in the locator's pack only;
        // count the largest header so live bytes are never underestimated.
        PackLocation::parse(locator).map(|at| (at.pack, at.len + MAX_HEADER as u64))
    }

    async fn remove_container(&self, name: &str) -> Result<()> {
        if let Ok(mut readers) = self.readers.lock() {
            readers.remove(name);
        }
        self.fs.delete(&self.path(name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = RecordHeader {
            uid: "1.2.840.10008.1".into(),
            generation: 3,
            size: 12345,
            sha256: [7; 32],
        };
        let bytes = h.encode();
        assert_eq!(RecordHeader::decode(&bytes), Some((h, bytes.len())));
        let mut bad = bytes.to_vec();
        bad[0] = b'X';
        assert_eq!(RecordHeader::decode(&bad), None);
        assert_eq!(RecordHeader::decode(&bytes[..20]), None);
    }

    fn source(dir: &std::path::Path, uid: &str, bytes: &[u8]) -> PutSource {
        use sha2::Digest;
        let path = dir.join(format!("{uid}.spool"));
        std::fs::write(&path, bytes).unwrap();
        PutSource {
            key: ObjectKey::for_instance(uid),
            path,
            size: bytes.len() as u64,
            sha256: sha2::Sha256::digest(bytes).into(),
            hold: None,
        }
    }

    async fn site(dir: &std::path::Path, pack_max: u64) -> PackSite {
        std::fs::create_dir_all(dir.join("site")).unwrap();
        let fs = Arc::new(super::super::LocalFs::new("t", dir.join("site")));
        PackSite::open("t", fs, "/mifas", pack_max).await.unwrap()
    }

    #[tokio::test]
    async fn groups_are_appended_read_back_and_listed_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        // 1 MiB packs: the third group starts a new pack
        let site = site(dir.path(), 1).await;
        let big = vec![7u8; 700 * 1024];
        let a = source(dir.path(), "1.2.1", b"first object");
        let b = source(dir.path(), "1.2.2", &big);
        let c = source(dir.path(), "1.2.3", &big);
        let la = site.put_group(&[a.clone(), b.clone()]).await.unwrap();
        let lc = site.put_group(std::slice::from_ref(&c)).await.unwrap();
        assert_eq!(
            site.read_at(&la[0], 0, 100).await.unwrap().as_ref(),
            b"first object"
        );
        assert_eq!(site.read_at(&la[0], 6, 3).await.unwrap().as_ref(), b"obj");
        assert_eq!(
            site.read_at(&la[1], 0, u64::MAX).await.unwrap().len(),
            big.len()
        );
        assert_eq!(site.size(&lc[0]).await.unwrap(), big.len() as u64);
        let pack = |l: &Locator| PackLocation::parse(l).unwrap().pack;
        // the group that takes a pack past its limit still goes in; the next starts a new pack
        assert_eq!(pack(&la[0]), pack(&lc[0]));
        let d = source(dir.path(), "1.2.4", b"fourth");
        let ld = site.put_group(std::slice::from_ref(&d)).await.unwrap();
        assert_ne!(pack(&la[0]), pack(&ld[0]), "a full pack is sealed");
        let mut listed = Vec::new();
        let mut cursor = None;
        loop {
            let page = site.list(cursor, 2).await.unwrap();
            listed.extend(page.objects.into_iter().map(|o| (o.key, o.locator, o.size)));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let want = vec![
            (a.key.clone(), la[0].clone(), a.size),
            (b.key.clone(), la[1].clone(), b.size),
            (c.key.clone(), lc[0].clone(), c.size),
            (d.key.clone(), ld[0].clone(), d.size),
        ];
        assert_eq!(listed, want);
    }

    #[tokio::test]
    async fn a_locator_that_does_not_match_its_record_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let site = site(dir.path(), 64).await;
        let a = source(dir.path(), "1.2.1", b"0123456789");
        let l = site.put_group(&[a]).await.unwrap();
        let mut at = PackLocation::parse(&l[0]).unwrap();
        at.len += 1;
        assert!(matches!(
            site.size(&at.locator()).await,
            Err(StorageError::Corrupt { .. })
        ));
        at.len -= 1;
        at.offset -= 1;
        assert!(matches!(
            site.size(&at.locator()).await,
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn locators_round_trip() {
        let at = PackLocation {
            pack: "0001700000000-000001.pack".into(),
            offset: 90,
            len: 524_288,
        };
        assert_eq!(PackLocation::parse(&at.locator()), Some(at));
        assert_eq!(PackLocation::parse(&Locator("../x@1+2".into())), None);
        assert_eq!(PackLocation::parse(&Locator("ab/1.2.dcm".into())), None);
    }
}
