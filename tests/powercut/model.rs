//! The power-cut model of powercut_fs: every node's state as programs see it, and as the last
//! fsync left it; a cut replaces the first with the second. No FUSE here but the attribute type.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, RenameFlags};

pub const ROOT: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    pub perm: u16,
    pub mtime: SystemTime,
    /// Contents as programs see them now.
    pub data: Vec<u8>,
    /// Contents as of the last fsync: what a power cut leaves.
    pub durable_data: Vec<u8>,
    pub entries: BTreeMap<OsString, u64>,
    pub durable_entries: BTreeMap<OsString, u64>,
}

impl Node {
    pub fn new(kind: Kind, perm: u16) -> Node {
        Node {
            kind,
            perm,
            mtime: SystemTime::now(),
            data: Vec::new(),
            durable_data: Vec::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
pub struct State {
    pub nodes: HashMap<u64, Node>,
    pub next_ino: u64,
    pub fsyncs: u64,
    pub fsyncdirs: u64,
    pub enospc: Enospc,
}

/// Which file fsyncs fail with ENOSPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enospc {
    Off,
    All,
    Inode(u64),
}

impl State {
    pub fn new() -> State {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(Kind::Dir, 0o755));
        State {
            nodes,
            next_ino: ROOT + 1,
            fsyncs: 0,
            fsyncdirs: 0,
            enospc: Enospc::Off,
        }
    }

    pub fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let (kind, size, nlink) = match node.kind {
            Kind::File => (FileType::RegularFile, node.data.len() as u64, 1),
            Kind::Dir => (FileType::Directory, 0, 2),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: node.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    pub fn dir_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(n) if n.kind == Kind::Dir => Ok(n),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub fn file_mut(&mut self, ino: u64) -> Result<&mut Node, Errno> {
        match self.nodes.get_mut(&ino) {
            Some(n) if n.kind == Kind::File => Ok(n),
            Some(_) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        let dir = self.nodes.get(&parent).ok_or(Errno::ENOENT)?;
        dir.entries.get(name).copied().ok_or(Errno::ENOENT)
    }

    pub fn make(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64, Errno> {
        let ino = self.next_ino;
        let dir = self.dir_mut(parent)?;
        if dir.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        dir.entries.insert(name.to_owned(), ino);
        dir.mtime = SystemTime::now();
        self.next_ino += 1;
        self.nodes.insert(ino, Node::new(kind, perm));
        Ok(ino)
    }

    pub fn remove(&mut self, parent: u64, name: &OsStr, kind: Kind) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        let node = self.nodes.get(&ino).ok_or(Errno::ENOENT)?;
        match (node.kind, kind) {
            (Kind::Dir, Kind::File) => return Err(Errno::EISDIR),
            (Kind::File, Kind::Dir) => return Err(Errno::ENOTDIR),
            (Kind::Dir, Kind::Dir) if !node.entries.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        let dir = self.dir_mut(parent)?;
        dir.entries.remove(name);
        dir.mtime = SystemTime::now();
        // The node stays: open handles keep reading it, and a durable name may still point here.
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            return Err(Errno::EINVAL);
        }
        let ino = self.lookup(parent, name)?;
        self.dir_mut(new_parent)?;
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if existing == ino {
                return Ok(());
            }
            let moving = self.nodes.get(&ino).map(|n| n.kind);
            let target = self.nodes.get(&existing).ok_or(Errno::ENOENT)?;
            match (moving, target.kind) {
                (Some(Kind::File), Kind::Dir) => return Err(Errno::EISDIR),
                (Some(Kind::Dir), Kind::File) => return Err(Errno::ENOTDIR),
                (Some(Kind::Dir), Kind::Dir) if !target.entries.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
        }
        let now = SystemTime::now();
        let src = self.dir_mut(parent)?;
        src.entries.remove(name);
        src.mtime = now;
        let dst = self.dir_mut(new_parent)?;
        dst.entries.insert(new_name.to_owned(), ino);
        dst.mtime = now;
        Ok(())
    }

    /// The power cut: everything takes its durable state; what no durable name reaches is gone.
    pub fn cut(&mut self) -> (usize, usize) {
        let before = self.nodes.len();
        let mut reachable = vec![ROOT];
        let mut seen = HashSet::new();
        while let Some(ino) = reachable.pop() {
            if !seen.insert(ino) {
                continue;
            }
            if let Some(node) = self.nodes.get(&ino) {
                reachable.extend(node.durable_entries.values().copied());
            }
        }
        self.nodes.retain(|ino, _| seen.contains(ino));
        let mut changed = 0;
        for node in self.nodes.values_mut() {
            if node.data != node.durable_data || node.entries != node.durable_entries {
                changed += 1;
            }
            node.data = node.durable_data.clone();
            node.entries = node.durable_entries.clone();
            // A durable name whose node never existed durably cannot happen: nodes are only
            // dropped here, after the walk over durable names.
        }
        (before - self.nodes.len(), changed)
    }
}
