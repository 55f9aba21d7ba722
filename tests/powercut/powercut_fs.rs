//! powercut_fs: a FUSE file system that keeps everything in memory and can lose, on command,
//! whatever was not made durable — a power cut, which `kill -9` is not (after kill -9 the page
//! cache still holds every write, so a test would pass with every fsync removed).
//!
//! Usage: `powercut_fs <mountpoint>`. It mounts, prints `READY` on stdout, then obeys lines on
//! stdin:
//!   `cut`    power cut: unmount, throw away everything not durable, mount the durable state
//!            again (fresh kernel caches), print `READY` again.
//!   `stats`  print `STATS fsync=<n> fsyncdir=<n> files=<n> dirs=<n>`.
//!   `enospc all` / `enospc <inode>` / `enospc off`: from now on fsync of every file (or of the
//!            file with that inode number, as `stat` shows it) fails with ENOSPC and persists
//!            nothing — the disk-full that thin provisioning or delayed allocation reports only
//!            at fsync; `off` ends it. Answers `OK`.
//!   `quit` or end of input: unmount and exit.
//! Anything it cannot do (mount, unmount) is printed on stderr with a non-zero exit.
//!
//! The durability model, POSIX's minimum (stricter than ext4's ordered mode):
//! - a file's contents and size are durable when that file is fsynced (fsync or fdatasync);
//! - a directory's entries (create, mkdir, unlink, rmdir, rename into or out of it) are durable
//!   when that directory is fsynced. A rename between two directories is durable in the target
//!   when the target is fsynced and out of the source when the source is: a cut in between can
//!   leave both names (a journaling file system would not; the looser model is harder on the
//!   program under test, never easier);
//! - modes and times are not modelled (they survive as they are);
//! - a file whose name is durable but whose data never was comes back with its last fsynced
//!   contents, empty if none — the "zero-length file after a crash" of delayed allocation.
//!
//! Hard links, symbolic links, extended attributes and special files are not supported.

mod model;

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    SessionACL, TimeOrNow, WriteFlags,
};

use model::{Enospc, Kind, State};

/// Attributes may be cached this long by the kernel: only we change them, through the kernel.
const TTL: Duration = Duration::from_secs(1);
/// Linux open(2) flags that matter here (the kernel passes them through `create`/`open`).
const O_TRUNC: i32 = 0o1000;
const O_EXCL: i32 = 0o200;

/// The file system as the kernel sees it; the state outlives each mount.
struct PowercutFs {
    state: Arc<Mutex<State>>,
}

impl PowercutFs {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would already have killed the session thread.
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

fn new_perm(mode: u32, umask: u32) -> u16 {
    ((mode & !umask) & 0o7777) as u16
}

impl Filesystem for PowercutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let state = self.state();
        match state
            .lookup(parent.0, name)
            .and_then(|ino| state.attr(ino).ok_or(Errno::ENOENT))
        {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let Some(node) = state.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(size) = size {
            if node.kind == Kind::Dir {
                return reply.error(Errno::EISDIR);
            }
            let Ok(size) = usize::try_from(size) else {
                return reply.error(Errno::EFBIG);
            };
            node.data.resize(size, 0);
            node.mtime = SystemTime::now();
        }
        if let Some(mode) = mode {
            node.perm = (mode & 0o7777) as u16;
        }
        match mtime {
            Some(TimeOrNow::SpecificTime(t)) => node.mtime = t,
            Some(TimeOrNow::Now) => node.mtime = SystemTime::now(),
            None => {}
        }
        match state.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.state();
        let made = state.make(parent.0, name, Kind::Dir, new_perm(mode, umask));
        match made.and_then(|ino| state.attr(ino).ok_or(Errno::ENOENT)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, Kind::File) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent.0, name, Kind::Dir) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .state()
            .rename(parent.0, name, newparent.0, newname, flags)
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let ino = match state.lookup(parent.0, name) {
            Ok(_) if flags & O_EXCL != 0 => return reply.error(Errno::EEXIST),
            Ok(ino) => {
                match state.file_mut(ino) {
                    Ok(node) if flags & O_TRUNC != 0 => node.data.clear(),
                    Ok(_) => {}
                    Err(e) => return reply.error(e),
                }
                ino
            }
            Err(_) => match state.make(parent.0, name, Kind::File, new_perm(mode, umask)) {
                Ok(ino) => ino,
                Err(e) => return reply.error(e),
            },
        };
        match state.attr(ino) {
            Some(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let Some(node) = state.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if node.kind == Kind::File && flags.0 & O_TRUNC != 0 {
            node.data.clear();
        }
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.state();
        match state.file_mut(ino.0) {
            Ok(node) => {
                let len = node.data.len();
                let start = usize::try_from(offset).unwrap_or(len).min(len);
                let end = start.saturating_add(size as usize).min(len);
                reply.data(&node.data[start..end]);
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        match state.file_mut(ino.0) {
            Ok(node) => {
                let Ok(start) = usize::try_from(offset) else {
                    return reply.error(Errno::EFBIG);
                };
                let end = start + data.len();
                if node.data.len() < end {
                    node.data.resize(end, 0);
                }
                node.data[start..end].copy_from_slice(data);
                node.mtime = SystemTime::now();
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        state.fsyncs += 1;
        if state.enospc == Enospc::All || state.enospc == Enospc::Inode(ino.0) {
            return reply.error(Errno::ENOSPC);
        }
        match state.file_mut(ino.0) {
            Ok(node) => {
                node.durable_data = node.data.clone();
                reply.ok();
            }
            // fsync on a directory opened as a file: the kernel sends fsyncdir for those, but
            // be lenient and treat it the same.
            Err(_) => match state.dir_mut(ino.0) {
                Ok(dir) => {
                    dir.durable_entries = dir.entries.clone();
                    reply.ok();
                }
                Err(e) => reply.error(e),
            },
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        state.fsyncdirs += 1;
        match state.dir_mut(ino.0) {
            Ok(dir) => {
                dir.durable_entries = dir.entries.clone();
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.state();
        let Some(dir) = state.nodes.get(&ino.0).filter(|n| n.kind == Kind::Dir) else {
            return reply.error(Errno::ENOTDIR);
        };
        let mut all: Vec<(u64, FileType, OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, child) in &dir.entries {
            let kind = match state.nodes.get(child).map(|n| n.kind) {
                Some(Kind::Dir) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((*child, kind, name.clone()));
        }
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(skip) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Plenty of room: the limits under test are the archive's own.
        let blocks = 1 << 24;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        // Only plain preallocation (mode 0): the file grows, zero-filled, like a write.
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut state = self.state();
        match state.file_mut(ino.0) {
            Ok(node) => {
                let Some(end) = offset
                    .checked_add(length)
                    .and_then(|e| usize::try_from(e).ok())
                else {
                    return reply.error(Errno::EFBIG);
                };
                if node.data.len() < end {
                    node.data.resize(end, 0);
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }
}

fn mount(state: &Arc<Mutex<State>>, mountpoint: &Path) -> std::io::Result<BackgroundSession> {
    let mut config = Config::default();
    // No AutoUnmount: its fusermount3 helper would own the unmount, and a power cut must
    // unmount and mount again within this process. The test unmounts lazily if we die.
    config.mount_options = vec![MountOption::FSName("powercut".into())];
    // Only the mounting user (the test, and the mifas it starts) uses it: no allow_other,
    // which a non-root user could only ask for with user_allow_other in /etc/fuse.conf.
    config.acl = SessionACL::Owner;
    config.n_threads = Some(2);
    fuser::spawn_mount(
        PowercutFs {
            state: state.clone(),
        },
        mountpoint,
        &config,
    )
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The test reads these lines; a closed stdout means it is gone and we stop at end of input.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let Some(mountpoint) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: powercut_fs <mountpoint>");
        std::process::exit(2);
    };
    let state = Arc::new(Mutex::new(State::new()));
    let mut session = match mount(&state, &mountpoint) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("powercut_fs: cannot mount at {}: {e}", mountpoint.display());
            std::process::exit(1);
        }
    };
    say("READY");
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "cut" => {
                if let Err(e) = session.umount_and_join() {
                    eprintln!("powercut_fs: cannot unmount {}: {e}", mountpoint.display());
                    std::process::exit(1);
                }
                let (dropped, changed) = match state.lock() {
                    Ok(mut s) => s.cut(),
                    Err(p) => p.into_inner().cut(),
                };
                eprintln!(
                    "powercut_fs: power cut: {dropped} nodes lost, {changed} rolled back to their durable state"
                );
                session = match mount(&state, &mountpoint) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("powercut_fs: cannot mount again: {e}");
                        std::process::exit(1);
                    }
                };
                say("READY");
            }
            "stats" => {
                let s = match state.lock() {
                    Ok(s) => s,
                    Err(p) => p.into_inner(),
                };
                let dirs = s.nodes.values().filter(|n| n.kind == Kind::Dir).count();
                say(&format!(
                    "STATS fsync={} fsyncdir={} files={} dirs={}",
                    s.fsyncs,
                    s.fsyncdirs,
                    s.nodes.len() - dirs,
                    dirs
                ));
            }
            cmd if cmd.starts_with("enospc ") => {
                let arg = cmd["enospc ".len()..].trim();
                let mode = match arg {
                    "off" => Some(Enospc::Off),
                    "all" => Some(Enospc::All),
                    n => n.parse().ok().map(Enospc::Inode),
                };
                match mode {
                    Some(mode) => {
                        match state.lock() {
                            Ok(mut s) => s.enospc = mode,
                            Err(p) => p.into_inner().enospc = mode,
                        }
                        say("OK");
                    }
                    None => eprintln!("powercut_fs: enospc takes off, all or an inode number"),
                }
            }
            "quit" => break,
            "" => {}
            other => eprintln!("powercut_fs: unknown command {other:?}"),
        }
    }
    if let Err(e) = session.umount_and_join() {
        eprintln!("powercut_fs: cannot unmount {}: {e}", mountpoint.display());
        std::process::exit(1);
    }
}
