//! Objects as files under one directory. A spooled file is fsynced before it is renamed in, so
//! every file under the root is complete (a crash can lose a name, never leave a torn object
//! under one); the names become durable with the fsync of their directories in [`sync`].
//!
//! [`sync`]: ObjectStore::sync

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use bytes::Bytes;

use super::{ListPage, ListedObject, Locator, ObjectKey, PutSource, Result, Site, StorageError};

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// Run blocking file-system work off the async runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))?
}

/// Make the names in a directory durable.
pub fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl LocalStore {
    /// Open (creating if needed) a store rooted at `root`, with its 256 fan-out directories made
    /// up front so a put never has to create (and fsync) a directory.
    pub fn open(root: &Path) -> Result<LocalStore> {
        let mk = |p: &Path| {
            std::fs::create_dir_all(p)
                .map_err(|e| StorageError::io("create directory", &p.display().to_string(), e))
        };
        mk(root)?;
        let mut created = false;
        for i in 0..=255u8 {
            let dir = root.join(format!("{i:02x}"));
            if !dir.is_dir() {
                mk(&dir)?;
                created = true;
            }
        }
        if created {
            fsync_dir(root)
                .map_err(|e| StorageError::io("fsync", &root.display().to_string(), e))?;
        }
        Ok(LocalStore {
            root: root.to_owned(),
        })
    }

    pub fn path(&self, key: &ObjectKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

impl LocalStore {
    pub async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        let path = self.path(key);
        blocking(move || Ok(path.is_file())).await
    }

    /// Those of `keys` that the store does not hold (for reconciliation, in batches).
    pub async fn missing(&self, keys: Vec<ObjectKey>) -> Result<Vec<ObjectKey>> {
        let root = self.root.clone();
        blocking(move || {
            Ok(keys
                .into_iter()
                .filter(|k| !root.join(k.as_str()).is_file())
                .collect())
        })
        .await
    }

    pub async fn delete_key(&self, key: &ObjectKey) -> Result<()> {
        let (path, k) = (self.path(key), key.to_string());
        blocking(move || std::fs::remove_file(&path).map_err(|e| StorageError::io("delete", &k, e)))
            .await
    }

    /// Every key in the store (for reconciliation).
    pub async fn list_keys(&self) -> Result<Vec<ObjectKey>> {
        let root = self.root.clone();
        blocking(move || {
            let mut keys = Vec::new();
            let read = |p: &Path| {
                std::fs::read_dir(p)
                    .map_err(|e| StorageError::io("list", &p.display().to_string(), e))
            };
            for dir in read(&root)? {
                let dir =
                    dir.map_err(|e| StorageError::io("list", &root.display().to_string(), e))?;
                if !dir.path().is_dir() {
                    continue;
                }
                let prefix = dir.file_name().to_string_lossy().into_owned();
                for file in read(&dir.path())? {
                    let file = file.map_err(|e| StorageError::io("list", &prefix, e))?;
                    let name = format!("{prefix}/{}", file.file_name().to_string_lossy());
                    if let Some(key) = ObjectKey::parse(&name) {
                        keys.push(key);
                    }
                }
            }
            keys.sort();
            Ok(keys)
        })
        .await
    }

    fn key_of(&self, locator: &Locator) -> Result<ObjectKey> {
        ObjectKey::parse(&locator.0).ok_or_else(|| StorageError::Corrupt {
            site: LOCAL_SITE.into(),
            locator: locator.0.clone(),
            reason: "not a key of the local store".into(),
        })
    }
}

/// The name of the embedded store as a site (placements, metrics, the portal).
pub const LOCAL_SITE: &str = "local";

#[async_trait]
impl Site for LocalStore {
    fn name(&self) -> &str {
        LOCAL_SITE
    }

    async fn prepare(&self, source: &PutSource) -> Result<()> {
        // Data first, per object and in parallel across associations: most of it was written
        // back while it arrived (the spool starts writeback per chunk), so this waits for the
        // tail and the inode only. The group commit then has only names to make durable.
        let (from, k) = (source.path.clone(), source.key.to_string());
        blocking(move || {
            std::fs::File::open(&from)
                .and_then(|f| f.sync_all())
                .map_err(|e| StorageError::io("fsync", &k, e))
        })
        .await
    }

    async fn put_group(&self, objects: &[PutSource]) -> Result<Vec<Locator>> {
        // The files were fsynced by `prepare` (or are already stored objects being re-indexed:
        // renaming a file onto itself is a no-op). Every file under the root is complete; the
        // names become durable with one fsync per directory touched — the first commits the
        // journal with every rename of the group.
        let moves: Vec<(PathBuf, PathBuf, String)> = objects
            .iter()
            .map(|o| (o.path.clone(), self.path(&o.key), o.key.to_string()))
            .collect();
        let locators = objects.iter().map(|o| Locator(o.key.to_string())).collect();
        blocking(move || {
            let mut dirs = BTreeSet::new();
            for (from, to, k) in &moves {
                std::fs::rename(from, to).map_err(|e| StorageError::io("rename into", k, e))?;
                if let Some(dir) = to.parent() {
                    dirs.insert(dir.to_owned());
                }
            }
            for dir in dirs {
                fsync_dir(&dir).map_err(|e| {
                    StorageError::io("fsync directory", &dir.display().to_string(), e)
                })?;
            }
            Ok(())
        })
        .await?;
        Ok(locators)
    }

    async fn read_at(&self, locator: &Locator, offset: u64, len: u64) -> Result<Bytes> {
        let key = self.key_of(locator)?;
        let (path, k) = (self.path(&key), key.to_string());
        blocking(move || {
            use std::os::unix::fs::FileExt;
            let file = std::fs::File::open(&path).map_err(|e| StorageError::io("open", &k, e))?;
            let size = file
                .metadata()
                .map_err(|e| StorageError::io("stat", &k, e))?
                .len();
            let start = offset.min(size);
            let len = len.min(size - start) as usize;
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = file
                    .read_at(&mut buf[done..], start + done as u64)
                    .map_err(|e| StorageError::io("read", &k, e))?;
                if n == 0 {
                    buf.truncate(done);
                    break;
                }
                done += n;
            }
            Ok(Bytes::from(buf))
        })
        .await
    }

    async fn size(&self, locator: &Locator) -> Result<u64> {
        let key = self.key_of(locator)?;
        let (path, k) = (self.path(&key), key.to_string());
        blocking(move || {
            Ok(std::fs::metadata(&path)
                .map_err(|e| StorageError::io("stat", &k, e))?
                .len())
        })
        .await
    }

    async fn delete(&self, locator: &Locator) -> Result<()> {
        let key = self.key_of(locator)?;
        self.delete_key(&key).await
    }

    async fn list(&self, cursor: Option<String>, limit: usize) -> Result<ListPage> {
        // Keys sort by fan-out directory then name; a page resumes after the cursor key.
        let keys = self.list_keys().await?;
        let start = match &cursor {
            Some(c) => keys.partition_point(|k| k.as_str() <= c.as_str()),
            None => 0,
        };
        let page: Vec<ObjectKey> = keys.into_iter().skip(start).take(limit.max(1)).collect();
        let mut objects = Vec::with_capacity(page.len());
        for key in &page {
            let locator = Locator(key.to_string());
            match self.size(&locator).await {
                Ok(size) => objects.push(ListedObject {
                    key: key.clone(),
                    locator,
                    size,
                    sha256: None,
                }),
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let next = (page.len() == limit.max(1))
            .then(|| page.last().map(|k| k.to_string()))
            .flatten();
        Ok(ListPage { objects, next })
    }

    async fn probe(&self) -> Result<()> {
        let root = self.root.clone();
        blocking(move || {
            std::fs::metadata(&root)
                .map(|_| ())
                .map_err(|e| StorageError::io("stat", &root.display().to_string(), e))
        })
        .await
    }

    fn local_path(&self, locator: &Locator) -> Option<PathBuf> {
        ObjectKey::parse(&locator.0).map(|k| self.path(&k))
    }
}
