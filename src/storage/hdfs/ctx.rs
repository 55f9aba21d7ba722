//! One bounded call to an HDFS site and the sorting of hdfs-native's errors into ours.

use std::future::Future;
use std::time::Duration;

use hdfs_native::HdfsError;

use crate::storage::{Result, StorageError};

/// Java exception classes the namenode answers with that we tell apart.
const FILE_NOT_FOUND: &str = "java.io.FileNotFoundException";
const STANDBY: &str = "org.apache.hadoop.ipc.StandbyException";
/// The namenode asks to be asked again later (safe mode after a restart, mostly).
const RETRIABLE: &str = "org.apache.hadoop.ipc.RetriableException";
const SAFE_MODE: &str = "org.apache.hadoop.hdfs.server.namenode.SafeModeException";
const QUOTA_EXCEEDED: &[&str] = &[
    "org.apache.hadoop.hdfs.protocol.DSQuotaExceededException",
    "org.apache.hadoop.hdfs.protocol.NSQuotaExceededException",
];

/// What a call is about, to bound it and to name it in errors.
#[derive(Clone)]
pub(super) struct Ctx {
    pub(super) site: String,
    pub(super) timeout: Duration,
    pub(super) op: &'static str,
    pub(super) path: String,
}

impl Ctx {
    pub(super) async fn run<T>(
        &self,
        fut: impl Future<Output = hdfs_native::Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(self.unavailable(format!(
                "{} {}: no answer within {} s",
                self.op,
                self.path,
                self.timeout.as_secs()
            ))),
        }
    }

    pub(super) fn unavailable(&self, reason: String) -> StorageError {
        StorageError::Unavailable {
            site: self.site.clone(),
            reason,
        }
    }

    fn io(&self, kind: std::io::ErrorKind, e: HdfsError) -> StorageError {
        StorageError::io(self.op, &self.path, std::io::Error::new(kind, e))
    }

    /// Sort hdfs-native's errors into ours: what says "the site is not there / not working"
    /// becomes Unavailable (the caller goes elsewhere or retries later), what says "the bytes
    /// are bad" Corrupt, a missing file NotFound, the rest Io.
    fn error(&self, e: HdfsError) -> StorageError {
        use std::io::ErrorKind as K;
        match e {
            HdfsError::FileNotFound(_) => StorageError::NotFound(self.path.clone()),
            HdfsError::RPCError(ref class, _) if class == FILE_NOT_FOUND => {
                StorageError::NotFound(self.path.clone())
            }
            HdfsError::AlreadyExists(_) => self.io(K::AlreadyExists, e),
            HdfsError::RPCError(ref class, _) if QUOTA_EXCEEDED.contains(&class.as_str()) => {
                self.io(K::QuotaExceeded, e)
            }
            // Failovers exhausted on standby namenodes: no active namenode.
            HdfsError::RPCError(ref class, _) | HdfsError::FatalRPCError(ref class, _)
                if class == STANDBY =>
            {
                self.unavailable(format!("{} {}: {e}", self.op, self.path))
            }
            // A namenode in safe mode (just restarted, waiting for block reports) serves reads
            // but refuses writes for a while: the site cannot store now.
            HdfsError::RPCError(ref class, _) if class == RETRIABLE || class == SAFE_MODE => {
                self.unavailable(format!("{} {}: {e}", self.op, self.path))
            }
            // "could only be written to 0 of the 1 minReplication nodes": no datanode takes
            // the block (all dead or full) — the site cannot store now.
            HdfsError::RPCError(_, ref msg) if msg.contains("could only be written to") => {
                self.unavailable(format!("{} {}: {e}", self.op, self.path))
            }
            HdfsError::ChecksumError => StorageError::Corrupt {
                site: self.site.clone(),
                locator: self.path.clone(),
                reason: e.to_string(),
            },
            // Connection-level trouble with the namenode or every datanode of a block.
            HdfsError::IOError(_)
            | HdfsError::DataTransferError(_)
            | HdfsError::BlocksNotFound(_)
            | HdfsError::FatalRPCError(..)
            | HdfsError::InvalidRPCResponse(_) => {
                self.unavailable(format!("{} {}: {e}", self.op, self.path))
            }
            HdfsError::InvalidPath(_) | HdfsError::InvalidArgument(_) => {
                self.io(K::InvalidInput, e)
            }
            HdfsError::IsADirectoryError(_) => self.io(K::IsADirectory, e),
            other => self.io(K::Other, other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            site: "s".into(),
            timeout: Duration::from_secs(1),
            op: "create",
            path: "/p".into(),
        }
    }

    fn rpc(class: &str) -> HdfsError {
        HdfsError::RPCError(class.into(), "msg".into())
    }

    #[test]
    fn errors_sorted_by_what_the_caller_does_next() {
        let c = ctx();
        let unavailable = |e| matches!(c.error(e), StorageError::Unavailable { .. });
        assert!(unavailable(rpc(STANDBY)));
        assert!(unavailable(rpc(RETRIABLE)));
        assert!(unavailable(rpc(SAFE_MODE)));
        assert!(unavailable(HdfsError::IOError(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(unavailable(HdfsError::DataTransferError(
            "all nodes failed".into()
        )));
        assert!(unavailable(HdfsError::RPCError(
            "org.apache.hadoop.ipc.RemoteException".into(),
            "File /p could only be written to 0 of the 1 minReplication nodes".into()
        )));
        assert!(matches!(
            c.error(rpc(FILE_NOT_FOUND)),
            StorageError::NotFound(_)
        ));
        assert!(matches!(
            c.error(HdfsError::FileNotFound("/p".into())),
            StorageError::NotFound(_)
        ));
        assert!(matches!(
            c.error(rpc(QUOTA_EXCEEDED[0])),
            StorageError::Full { .. }
        ));
        assert!(matches!(
            c.error(HdfsError::ChecksumError),
            StorageError::Corrupt { .. }
        ));
        match c.error(HdfsError::AlreadyExists("/p".into())) {
            StorageError::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
            }
            other => panic!("{other:?}"),
        }
    }
}
