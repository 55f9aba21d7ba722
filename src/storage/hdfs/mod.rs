//! [`PackFs`] on one HDFS cluster, through hdfs-native: one [`Client`] per site, configured from
//! the site's own `[[storage.sites]]` entry only, every call bounded by the site's timeout.

mod ctx;
mod io;
mod tail;

/// Checks against a live cluster (the integration harness and `examples/hdfs_check` call them).
pub mod checks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hdfs_native::{Client, ClientBuilder, WriteOptions};

use super::packfs::{FsEntry, PackFs, PackReader, PackWriter};
use super::site::SiteUrl;
use super::{Result, StorageError};
use crate::config::SiteConfig;
use ctx::Ctx;
use io::{HdfsReader, HdfsWriter};
use tail::Tails;

/// hdfs-native reads `core-site.xml`/`hdfs-site.xml` from `HADOOP_CONF_DIR` (or
/// `$HADOOP_HOME/etc/hadoop`) unless a config directory is given, and then only the files that
/// exist in it. A path below `/dev/null` can never hold them, so with it as the "directory" no
/// global Hadoop configuration leaks into a site: each site is exactly its TOML entry.
const NO_CONF_DIR: &str = "/dev/null";

/// One HDFS cluster (a single namenode or an HA nameservice).
pub struct HdfsFs {
    site: String,
    client: Client,
    timeout: Duration,
    write_options: WriteOptions,
    /// The files this process is writing, for readers of their synced but unreadable tail.
    tails: Arc<Tails>,
}

impl std::fmt::Debug for HdfsFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HdfsFs")
            .field("site", &self.site)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The Hadoop client settings of one site: HA nameservice, failover bound, pipeline recovery,
/// then the site's own `hadoop` keys on top.
pub(crate) fn client_config(
    site: &SiteConfig,
    authority: &str,
    namenodes: &[String],
) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut set = |k: String, v: String| {
        map.insert(k, v);
    };
    if !namenodes.is_empty() {
        let ns = authority;
        let ids: Vec<String> = (0..namenodes.len()).map(|i| format!("nn{i}")).collect();
        set("dfs.nameservices".into(), ns.into());
        set(format!("dfs.ha.namenodes.{ns}"), ids.join(","));
        for (id, addr) in ids.iter().zip(namenodes) {
            set(format!("dfs.namenode.rpc-address.{ns}.{id}"), addr.clone());
        }
        set(
            format!("dfs.client.failover.proxy.provider.{ns}"),
            "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider".into(),
        );
    }
    // hdfs-native's default (15 failovers with exponential sleeps) takes minutes to give up on
    // a dead namenode; the site's timeout should decide instead.
    set(
        "dfs.client.failover.max.attempts".into(),
        site.failover_attempts.to_string(),
    );
    // Pipeline recovery (hdfs-native 0.14.8, hdfs/block_writer.rs `recover`): when a datanode
    // of the write pipeline fails, the writer drops it and goes on with the others; it asks the
    // namenode for a replacement only if the policy says so (DEFAULT: replication >= 3 and
    // either half the pipeline is gone or the block was appended/hflushed). With replication 2
    // DEFAULT never replaces, so a 2-datanode site keeps writing on the survivor. ALWAYS would
    // fail there (no spare datanode) unless best-effort, which makes a failed replacement a
    // warning instead of a failed write: set it, so a bigger site replaces where it can and
    // every site keeps writing on what is left (the namenode re-replicates later).
    // Measured on MiniDFSCluster 3.4.1 (2 datanodes, replication 2): a datanode killed in the
    // middle of a write is dropped and the write, hsync and close go on (~40 ms). What this
    // does NOT cover: a NEW block whose pipeline starts at a dead datanode the namenode still
    // believes alive (by default for ~10 minutes) fails with "connection refused" — hdfs-native
    // does not abandon the block and ask for other datanodes as the Java client does. The
    // caller's retry on a new file helps on bigger sites; the cluster-side fix is
    // dfs.namenode.avoid.write.stale.datanode=true (stale after 30 s of silence by default).
    set(
        "dfs.client.block.write.replace-datanode-on-failure.enable".into(),
        "true".into(),
    );
    set(
        "dfs.client.block.write.replace-datanode-on-failure.policy".into(),
        "DEFAULT".into(),
    );
    set(
        "dfs.client.block.write.replace-datanode-on-failure.best-effort".into(),
        "true".into(),
    );
    // A datanode that stops answering must be noticed (and dropped from the pipeline) well
    // within one call's timeout, not after hdfs-native's default 60 s.
    let socket_ms = (site.timeout_secs.saturating_mul(1000) / 2).clamp(1000, 60_000);
    set("dfs.client.socket-timeout".into(), socket_ms.to_string());
    for (k, v) in &site.hadoop {
        set(k.clone(), v.clone());
    }
    map
}

impl HdfsFs {
    /// Build the site's client. No network traffic happens here: hdfs-native connects on the
    /// first call, so a site that is down at start-up still gets a client (its calls answer
    /// [`StorageError::Unavailable`] until it is back).
    pub fn connect(site: &SiteConfig) -> Result<HdfsFs> {
        let invalid = |reason: String| StorageError::Io {
            op: "configure site",
            key: site.name.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, reason),
        };
        let (authority, namenodes) = match SiteUrl::parse(&site.url, &site.namenodes) {
            Ok(SiteUrl::Hdfs {
                authority,
                namenodes,
            }) => (authority, namenodes),
            Ok(SiteUrl::File(_)) => return Err(invalid(format!("{} is not hdfs://", site.url))),
            Err(e) => return Err(invalid(e)),
        };
        let mut builder = ClientBuilder::new()
            .with_url(format!("hdfs://{authority}"))
            .with_config_dir(NO_CONF_DIR)
            .with_config(client_config(site, &authority, &namenodes));
        if let Some(user) = &site.user {
            builder = builder.with_user(user.clone());
        }
        let client = builder.build().map_err(|e| invalid(e.to_string()))?;
        let mut write_options = WriteOptions::default().overwrite(false).create_parent(true);
        if site.replication > 0 {
            write_options = write_options.replication(site.replication);
        }
        if site.block_size_mb > 0 {
            write_options = write_options.block_size(site.block_size_mb.saturating_mul(1 << 20));
        }
        Ok(HdfsFs {
            site: site.name.clone(),
            client,
            timeout: Duration::from_secs(site.timeout_secs.max(1)),
            write_options,
            tails: Arc::default(),
        })
    }

    pub fn site(&self) -> &str {
        &self.site
    }

    fn ctx(&self, op: &'static str, path: &str) -> Ctx {
        Ctx {
            site: self.site.clone(),
            timeout: self.timeout,
            op,
            path: path.to_string(),
        }
    }
}

#[async_trait]
impl PackFs for HdfsFs {
    async fn create(&self, path: &str) -> Result<Box<dyn PackWriter>> {
        let ctx = self.ctx("create", path);
        let writer = ctx
            .run(self.client.create(path, &self.write_options))
            .await?;
        // The block size decides which bytes readers cannot get from HDFS yet (see tail.rs);
        // the cluster's default when the site does not set one. Unknown: keep every byte.
        let block_size = match self.write_options.block_size {
            Some(b) => b,
            None => match ctx.run(self.client.get_file_info(path)).await {
                Ok(status) => status.blocksize.unwrap_or(0),
                Err(e) => {
                    let mut w = writer;
                    let _ = tokio::time::timeout(self.timeout, w.close()).await;
                    return Err(e);
                }
            },
        };
        let tail = self.tails.register(path, block_size);
        Ok(Box::new(HdfsWriter::new(
            ctx,
            writer,
            Arc::clone(&self.tails),
            tail,
        )))
    }

    async fn open(&self, path: &str) -> Result<Box<dyn PackReader>> {
        let ctx = self.ctx("open", path);
        // tail first: bytes it marks synced were synced before the reader's length is taken
        let tail = self.tails.get(path);
        let reader = ctx.run(self.client.read(path)).await?;
        Ok(Box::new(HdfsReader::new(
            self.ctx("read", path),
            self.client.clone(),
            reader,
            tail,
        )))
    }

    async fn len(&self, path: &str) -> Result<u64> {
        let status = self
            .ctx("stat", path)
            .run(self.client.get_file_info(path))
            .await?;
        Ok(status.length as u64)
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.ctx("rename", from)
            .run(self.client.rename(from, to, false))
            .await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self
            .ctx("delete", path)
            .run(self.client.delete(path, false))
            .await
        {
            // false: there was nothing to delete
            Ok(_) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, dir: &str) -> Result<Vec<FsEntry>> {
        let statuses = match self
            .ctx("list", dir)
            .run(self.client.list_status(dir, false))
            .await
        {
            Ok(s) => s,
            Err(StorageError::NotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries: Vec<FsEntry> = statuses
            .into_iter()
            .map(|s| FsEntry {
                name: s.path.rsplit('/').next().unwrap_or(&s.path).to_string(),
                len: s.length as u64,
                is_dir: s.isdir,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn recover(&self, path: &str) -> Result<()> {
        // recover_lease answers false while the namenode has the datanodes recover the last
        // block (a heartbeat or two); poll, within one timeout for the whole recovery.
        let ctx = self.ctx("recover lease", path);
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            if ctx.run(self.client.recover_lease(path)).await? {
                self.tails.recovered(path);
                return Ok(());
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(ctx.unavailable(format!(
                    "lease recovery of {path} not finished within {} s",
                    self.timeout.as_secs()
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    async fn probe(&self) -> Result<()> {
        self.ctx("probe", "/")
            .run(self.client.get_file_info("/"))
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests;
