//! `[ha]`: the HA monitor of the HDFS namenode VMs (issue 11, DESIGN.md §7). The monitor runs
//! inside `mifas serve` when this table is present, or alone with `mifas ha-monitor`.

use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;
use crate::ha::failover::{ClusterSpec, FailoverConfig, NamenodeSpec, SiteSpec};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// Where the monitor keeps its state and event log (sled) and its control socket.
    /// Default: `<storage.data_dir>/ha`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// `[ha.timing]`: detection, fencing, promotion and restart timings (milliseconds and
    /// counts); every key has a default.
    #[serde(default)]
    pub timing: FailoverConfig,
    /// TCP connect timeout of the Hadoop RPC client, ms.
    #[serde(default = "default_rpc_connect")]
    pub rpc_connect_timeout_ms: u64,
    /// The user named to the namenodes over Hadoop RPC (the namenode's superuser when
    /// permissions are on). Default: HADOOP_USER_NAME, else the process user.
    #[serde(default)]
    pub rpc_user: Option<String>,
    /// Request source of our transitions: "user" (automatic failover off in hdfs-site.xml,
    /// which is how a cluster watched by MIFAS instead of ZKFC runs), "forced" or "zkfc".
    #[serde(default = "default_request_source")]
    pub request_source: String,
    /// Address of the monitor's own HTTP page and /metrics under `mifas ha-monitor` (inside
    /// `mifas serve` the portal's listener serves them). Empty: none.
    #[serde(default = "default_http_bind")]
    pub http_bind: String,
    pub driver: VmDriverConfig,
    /// Physical hosts (hypervisors); at least 3.
    #[serde(rename = "host")]
    pub hosts: Vec<HaHost>,
    #[serde(rename = "site")]
    pub sites: Vec<HaSite>,
}

fn default_rpc_connect() -> u64 {
    300
}
fn default_request_source() -> String {
    "user".into()
}
fn default_http_bind() -> String {
    "127.0.0.1:8090".into()
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaHost {
    pub name: String,
    /// `host:port` the liveness probe connects to (e.g. its SSH port). A refused connection
    /// counts as alive (only a running kernel refuses); a timeout as a failed probe.
    pub probe: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaSite {
    /// The HDFS site's name (as in `[[storage.sites]]`, when it is one of ours).
    pub name: String,
    /// The VM believed active at the first start (a preference; the probes decide).
    #[serde(default)]
    pub believed_active: Option<String>,
    #[serde(rename = "namenode")]
    pub namenodes: Vec<HaNamenode>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaNamenode {
    /// The VM's name, as the VM driver knows it; unique over all sites.
    pub vm: String,
    /// The host it runs on at the first start (afterwards the monitor remembers moves).
    pub host: String,
    /// Namenode RPC address `host:port` (HAServiceProtocol is served there).
    pub rpc: String,
    /// Namenode HTTP address `host:port` (JMX and /isActive); optional.
    #[serde(default)]
    pub http: Option<String>,
}

/// How the monitor powers VMs off and starts them elsewhere: shell command templates run with
/// `/bin/sh -c`, with `{vm}`, `{host}` (where the VM is believed to run), `{on_host}` (restart
/// target), `{site}` substituted (shell-quoted). Exit status 0 is success.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDriverConfig {
    /// "virsh" (libvirt), "onevm" (OpenNebula) or "command" (your own templates). For virsh and
    /// onevm the templates below have defaults; any of them may be overridden.
    pub kind: String,
    /// Must exit 0 only when the VM is off (it is the fence of last resort).
    #[serde(default)]
    pub power_off: Option<String>,
    /// Stops the VM if it still runs, then starts it on `{on_host}`.
    #[serde(default)]
    pub restart: Option<String>,
    /// libvirt connection URI template for the virsh defaults.
    #[serde(default = "default_virsh_uri")]
    pub virsh_uri: String,
}

fn default_virsh_uri() -> String {
    "qemu+ssh://root@{host}/system".into()
}

/// The two templates of a driver after defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverTemplates {
    pub power_off: String,
    pub restart: String,
}

impl VmDriverConfig {
    /// The templates in effect: the kind's defaults, overridden by what is configured.
    pub fn templates(&self) -> Result<DriverTemplates, String> {
        let (power_off, restart) = match self.kind.as_str() {
            "virsh" => {
                let uri = |h: &str| self.virsh_uri.replace("{host}", h);
                (
                    // destroy is an immediate power-off; "not running" is already off
                    format!(
                        "virsh -c {} destroy {{vm}} || virsh -c {} domstate {{vm}} | grep -q 'shut off'",
                        uri("{host}"),
                        uri("{host}")
                    ),
                    // shared storage, the domain defined on every host: stop where it was (the
                    // old host may be dead), start on the target
                    format!(
                        "virsh -c {} destroy {{vm}} >/dev/null 2>&1; virsh -c {} start {{vm}}",
                        uri("{host}"),
                        uri("{on_host}")
                    ),
                )
            }
            "onevm" => (
                "onevm poweroff --hard {vm}".to_string(),
                // a powered-off VM is redeployed on the target host, then resumed
                "onevm poweroff --hard {vm} >/dev/null 2>&1; onevm deploy {vm} {on_host} || onevm migrate {vm} {on_host}; onevm resume {vm}".to_string(),
            ),
            "command" => (String::new(), String::new()),
            other => {
                return Err(format!(
                    "unknown driver kind {other:?} (virsh, onevm, command)"
                ));
            }
        };
        let power_off = self.power_off.clone().unwrap_or(power_off);
        let restart = self.restart.clone().unwrap_or(restart);
        if power_off.trim().is_empty() {
            return Err("power_off: a command template is required for kind = \"command\"".into());
        }
        if restart.trim().is_empty() {
            return Err("restart: a command template is required for kind = \"command\"".into());
        }
        Ok(DriverTemplates { power_off, restart })
    }
}

impl HaConfig {
    /// The cluster the failover machine watches.
    pub fn cluster(&self) -> ClusterSpec {
        ClusterSpec {
            hosts: self.hosts.iter().map(|h| h.name.clone()).collect(),
            sites: self
                .sites
                .iter()
                .filter(|s| s.namenodes.len() == 2)
                .map(|s| SiteSpec {
                    name: s.name.clone(),
                    namenodes: [0, 1].map(|i| NamenodeSpec {
                        vm: s.namenodes[i].vm.clone(),
                        host: s.namenodes[i].host.clone(),
                    }),
                    believed_active: s.believed_active.clone(),
                })
                .collect(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| Err(ConfigError::Invalid { key, message });
        if let Err(e) = self.timing.validate() {
            return invalid("ha".into(), e.to_string());
        }
        if self.rpc_connect_timeout_ms == 0
            || self.rpc_connect_timeout_ms >= self.timing.probe_timeout_ms
        {
            return invalid(
                "ha.rpc_connect_timeout_ms".into(),
                "must be at least 1 and shorter than ha.probe_timeout_ms".into(),
            );
        }
        if let Err(e) = self.request_source.parse::<crate::ha::ipc::RequestSource>() {
            return invalid("ha.request_source".into(), e);
        }
        if !self.http_bind.is_empty() && self.http_bind.parse::<std::net::SocketAddr>().is_err() {
            return invalid(
                "ha.http_bind".into(),
                format!("{:?} is not an address:port", self.http_bind),
            );
        }
        if let Err(e) = self.driver.templates() {
            return invalid("ha.driver".into(), e);
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if h.name.trim().is_empty() {
                return invalid(format!("ha.host[{i}].name"), "must not be empty".into());
            }
            if !h.probe.contains(':') {
                return invalid(
                    format!("ha.host[{i}].probe"),
                    format!("{:?} is not host:port", h.probe),
                );
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            if s.namenodes.len() != 2 {
                return invalid(
                    format!("ha.site[{i}].namenode"),
                    format!(
                        "site {:?} lists {} namenodes; an HA site has exactly 2",
                        s.name,
                        s.namenodes.len()
                    ),
                );
            }
            for (j, n) in s.namenodes.iter().enumerate() {
                if !n.rpc.contains(':') {
                    return invalid(
                        format!("ha.site[{i}].namenode[{j}].rpc"),
                        format!("{:?} is not host:port", n.rpc),
                    );
                }
            }
        }
        if let Err(e) = self.cluster().validate() {
            return invalid("ha".into(), e.to_string());
        }
        Ok(())
    }
}
