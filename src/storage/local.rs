//! Objects as files under one directory. A spooled file is fsynced before it is renamed in, so
//! every file under the root is complete (a crash can lose a name, never leave a torn object
//! under one); the names become durable with the fsync of their directories in [`sync`].
//!
//! [`sync`]: ObjectStore::sync

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{ObjectKey, ObjectStore, Result, StorageError};

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

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_file(&self, key: &ObjectKey, spooled: &Path) -> Result<()> {
        let target = self.path(key);
        let (from, k) = (spooled.to_owned(), key.to_string());
        blocking(move || {
            // Data first: most of it was written back while it arrived (the spool starts
            // writeback per chunk), so this waits for the tail and the inode only.
            std::fs::File::open(&from)
                .and_then(|f| f.sync_all())
                .map_err(|e| StorageError::io("fsync", &k, e))?;
            std::fs::rename(&from, &target).map_err(|e| StorageError::io("rename into", &k, e))
        })
        .await
    }

    async fn sync(&self, keys: &[ObjectKey]) -> Result<()> {
        // The files' data was made durable by put_file; what is left is their names. The first
        // directory fsync commits the journal with every rename of the group.
        let dirs: BTreeSet<PathBuf> = keys
            .iter()
            .filter_map(|k| self.path(k).parent().map(Path::to_owned))
            .collect();
        blocking(move || {
            for dir in dirs {
                fsync_dir(&dir).map_err(|e| {
                    StorageError::io("fsync directory", &dir.display().to_string(), e)
                })?;
            }
            Ok(())
        })
        .await
    }

    async fn get_range(&self, key: &ObjectKey, offset: u64, len: u64) -> Result<Vec<u8>> {
        let (path, k) = (self.path(key), key.to_string());
        blocking(move || {
            let mut file =
                std::fs::File::open(&path).map_err(|e| StorageError::io("open", &k, e))?;
            let size = file
                .metadata()
                .map_err(|e| StorageError::io("stat", &k, e))?
                .len();
            let start = offset.min(size);
            let len = len.min(size - start);
            file.seek(SeekFrom::Start(start))
                .map_err(|e| StorageError::io("seek", &k, e))?;
            let mut buf = Vec::with_capacity(len as usize);
            file.take(len)
                .read_to_end(&mut buf)
                .map_err(|e| StorageError::io("read", &k, e))?;
            Ok(buf)
        })
        .await
    }

    async fn size(&self, key: &ObjectKey) -> Result<u64> {
        let (path, k) = (self.path(key), key.to_string());
        blocking(move || {
            Ok(std::fs::metadata(&path)
                .map_err(|e| StorageError::io("stat", &k, e))?
                .len())
        })
        .await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool> {
        let path = self.path(key);
        blocking(move || Ok(path.is_file())).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let (path, k) = (self.path(key), key.to_string());
        blocking(move || std::fs::remove_file(&path).map_err(|e| StorageError::io("delete", &k, e)))
            .await
    }

    async fn missing(&self, keys: Vec<ObjectKey>) -> Result<Vec<ObjectKey>> {
        let root = self.root.clone();
        blocking(move || {
            Ok(keys
                .into_iter()
                .filter(|k| !root.join(k.as_str()).is_file())
                .collect())
        })
        .await
    }

    fn local_path(&self, key: &ObjectKey) -> Option<PathBuf> {
        Some(self.path(key))
    }

    async fn list(&self) -> Result<Vec<ObjectKey>> {
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
}
