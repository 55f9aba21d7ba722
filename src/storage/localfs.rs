//! [`PackFs`] over a local directory (`file:///dir` sites): the same semantics as HDFS —
//! create-new, append, sync, positional reads, rename without overwrite — so the pack layout is
//! exercised on local disk too. Blocking calls run on tokio's blocking pool.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::packfs::{FsEntry, PackFs, PackReader, PackWriter};
use super::{Result, StorageError, fsync_dir};

/// Pack files under one local directory. The root itself is never created: a missing root
/// (an unmounted disk) makes the site unavailable instead of filling the disk underneath.
#[derive(Debug, Clone)]
pub struct LocalFs {
    site: String,
    root: PathBuf,
}

impl LocalFs {
    pub fn new(site: &str, root: impl Into<PathBuf>) -> LocalFs {
        LocalFs {
            site: site.to_string(),
            root: root.into(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `/a/b` → `<root>/a/b`. Only plain names: no `..`, so nothing outside the root.
    fn resolve(&self, path: &str) -> Result<PathBuf> {
        let mut out = self.root.clone();
        for c in Path::new(path).components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => out.push(name),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(StorageError::Io {
                        op: "resolve",
                        key: path.to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            "'..' is not allowed in a site path",
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    fn root_missing(&self, e: &std::io::Error) -> Option<StorageError> {
        (e.kind() == std::io::ErrorKind::NotFound && !self.root.is_dir()).then(|| {
            StorageError::Unavailable {
                site: self.site.clone(),
                reason: format!("root {} is not a directory", self.root.display()),
            }
        })
    }

    /// Map an I/O error of `op` on `path`: a vanished root is the site being unavailable,
    /// disk-full is Full, a missing file NotFound.
    fn err(&self, op: &'static str, path: &str, e: std::io::Error) -> StorageError {
        self.root_missing(&e)
            .unwrap_or_else(|| StorageError::io(op, path, e))
    }
}

/// Run blocking file-system work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<std::io::Result<T>> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Task(e.to_string()))
}

/// Create the directories between `root` (which must exist) and `dir`, fsyncing each new one
/// and its parent so the new names survive a crash.
fn make_dirs(root: &Path, dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if !root.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("site root {} is missing", root.display()),
        ));
    }
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.is_dir() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    std::fs::create_dir_all(dir)?;
    for m in missing.iter().rev() {
        fsync_dir(m)?;
        if let Some(p) = m.parent() {
            fsync_dir(p)?;
        }
    }
    Ok(())
}

#[async_trait]
impl PackFs for LocalFs {
    async fn create(&self, path: &str) -> Result<Box<dyn PackWriter>> {
        let full = self.resolve(path)?;
        let root = self.root.clone();
        let target = full.clone();
        let file = blocking(move || {
            if let Some(parent) = target.parent() {
                make_dirs(&root, parent)?;
            }
            File::options().write(true).create_new(true).open(&target)
        })
        .await?
        .map_err(|e| self.err("create", path, e))?;
        Ok(Box::new(LocalWriter {
            key: path.to_string(),
            path: full,
            file: Arc::new(file),
            written: 0,
            dir_synced: false,
        }))
    }

    async fn open(&self, path: &str) -> Result<Box<dyn PackReader>> {
        let full = self.resolve(path)?;
        let (file, len) = blocking(move || {
            let file = File::open(&full)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await?
        .map_err(|e| self.err("open", path, e))?;
        Ok(Box::new(LocalReader {
            site: self.site.clone(),
            key: path.to_string(),
            file: Arc::new(file),
            len,
        }))
    }

    async fn len(&self, path: &str) -> Result<u64> {
        let full = self.resolve(path)?;
        blocking(move || std::fs::metadata(&full).map(|m| m.len()))
            .await?
            .map_err(|e| self.err("stat", path, e))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let src = self.resolve(from)?;
        let dst = self.resolve(to)?;
        blocking(move || {
            rename_noreplace(&src, &dst)?;
            // the rename is durable only once both directories are
            if let Some(d) = dst.parent() {
                fsync_dir(d)?;
            }
            match (src.parent(), dst.parent()) {
                (Some(s), Some(d)) if s != d => fsync_dir(s),
                _ => Ok(()),
            }
        })
        .await?
        .map_err(|e| self.err("rename", from, e))
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let full = self.resolve(path)?;
        // No directory fsync: a deleted pack coming back after a crash is unreferenced garbage,
        // which the pack layer tolerates anyway.
        match blocking(move || std::fs::remove_file(&full)).await? {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<FsEntry>> {
        let full = self.resolve(dir)?;
        let listed = blocking(move || {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(&full)? {
                let entry = entry?;
                // Names that are not UTF-8 are not ours.
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let meta = entry.metadata()?;
                entries.push(FsEntry {
                    name,
                    len: meta.len(),
                    is_dir: meta.is_dir(),
                });
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await?;
        match listed {
            Ok(entries) => Ok(entries),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.root.is_dir() => {
                Ok(Vec::new())
            }
            Err(e) => Err(self.err("list", dir, e)),
        }
    }

    async fn recover(&self, _path: &str) -> Result<()> {
        // A local file has no lease: whatever reached the disk is readable.
        Ok(())
    }

    async fn probe(&self) -> Result<()> {
        let root = self.root.clone();
        let meta = blocking(move || std::fs::metadata(&root)).await?;
        match meta {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(StorageError::Unavailable {
                site: self.site.clone(),
                reason: format!("root {} is not a directory", self.root.display()),
            }),
            Err(e) => Err(StorageError::Unavailable {
                site: self.site.clone(),
                reason: format!("root {}: {e}", self.root.display()),
            }),
        }
    }
}

/// Rename that fails with AlreadyExists instead of replacing `dst`: renameat2(NOREPLACE), or
/// link + unlink where the file system does not support the flag.
fn rename_noreplace(src: &Path, dst: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    match renameat_with(CWD, src, CWD, dst, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            std::fs::hard_link(src, dst)?;
            std::fs::remove_file(src)
        }
        Err(e) => Err(e.into()),
    }
}

struct LocalWriter {
    key: String,
    path: PathBuf,
    file: Arc<File>,
    written: u64,
    /// The file's directory entry has been fsynced (once is enough).
    dir_synced: bool,
}

#[async_trait]
impl PackWriter for LocalWriter {
    async fn write(&mut self, bytes: Bytes) -> Result<()> {
        let file = Arc::clone(&self.file);
        let at = self.written;
        let n = bytes.len() as u64;
        // positional: the file's offset is ours alone, no shared cursor
        blocking(move || file.write_all_at(&bytes, at))
            .await?
            .map_err(|e| StorageError::io("write", &self.key, e))?;
        self.written += n;
        Ok(())
    }

    async fn sync(&mut self) -> Result<()> {
        let file = Arc::clone(&self.file);
        let dir = (!self.dir_synced)
            .then(|| self.path.parent().map(Path::to_path_buf))
            .flatten();
        blocking(move || {
            file.sync_data()?;
            match dir {
                Some(d) => fsync_dir(&d),
                None => Ok(()),
            }
        })
        .await?
        .map_err(|e| StorageError::io("sync", &self.key, e))?;
        self.dir_synced = true;
        Ok(())
    }

    async fn close(mut self: Box<Self>) -> Result<()> {
        self.sync().await
    }

    fn written(&self) -> u64 {
        self.written
    }
}

struct LocalReader {
    site: String,
    key: String,
    file: Arc<File>,
    len: u64,
}

#[async_trait]
impl PackReader for LocalReader {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes> {
        let end = offset.saturating_add(len).min(self.len);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let want = (end - offset) as usize;
        let file = Arc::clone(&self.file);
        let read = blocking(move || {
            let mut buf = vec![0u8; want];
            file.read_exact_at(&mut buf, offset).map(|()| buf)
        })
        .await?;
        match read {
            Ok(buf) => Ok(Bytes::from(buf)),
            // shorter than when opened: someone truncated a pack
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(StorageError::Corrupt {
                site: self.site.clone(),
                locator: format!("{}@{offset}+{want}", self.key),
                reason: "file shorter than when opened".into(),
            }),
            Err(e) => Err(StorageError::io("read", &self.key, e)),
        }
    }
}

#[cfg(test)]
#[path = "localfs_tests.rs"]
mod tests;
