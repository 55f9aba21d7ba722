//! What the monitor watches: the physical hosts and, per HDFS site, its two namenode VMs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use thiserror::Error;

/// The thesis' requirement (§3.1): with fewer than three hosts a VM lost with its host has no
/// host to restart on that is not the surviving namenode's.
pub const MIN_HOSTS: usize = 3;

/// The cluster as configured: hosts and sites. Validated by [`ClusterSpec::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// Physical hosts (hypervisors), by name, in the order used to break placement ties.
    pub hosts: Vec<String>,
    pub sites: Vec<SiteSpec>,
}

/// One HDFS site with its two namenode VMs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteSpec {
    pub name: String,
    pub namenodes: [NamenodeSpec; 2],
    /// The VM believed active at start, if the operator knows. Only a preference: the probes
    /// decide, and this one is promoted first when both come up as standby.
    pub believed_active: Option<String>,
}

/// One namenode VM: its name (as the VM driver and the probes know it) and current host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamenodeSpec {
    pub vm: String,
    pub host: String,
}

/// A cluster description the machine refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    #[error("ha: {found} host(s) configured; at least {MIN_HOSTS} are required (thesis §3.1)")]
    TooFewHosts { found: usize },
    #[error("ha: host {0:?} is listed twice")]
    DuplicateHost(String),
    #[error("ha: no HDFS site is configured")]
    NoSites,
    #[error("ha: site {0:?} is listed twice")]
    DuplicateSite(String),
    #[error("ha: VM {0:?} is listed twice (VM names are unique over all sites)")]
    DuplicateVm(String),
    #[error("ha: VM {vm:?} is on host {host:?}, which is not in the host list")]
    UnknownHost { vm: String, host: String },
    #[error(
        "ha: site {site:?}: both namenode VMs are on host {host:?}; a host failure would take both"
    )]
    SameHost { site: String, host: String },
    #[error("ha: site {site:?}: believed_active {vm:?} is not one of its namenode VMs")]
    UnknownBelievedActive { site: String, vm: String },
    #[error("ha: the saved monitor state is inconsistent: {0}")]
    BadState(String),
}

impl ClusterSpec {
    /// Checks the invariants the machine relies on: at least [`MIN_HOSTS`] distinct hosts,
    /// unique site and VM names (probes and results name VMs only), every VM on a known host,
    /// and the two namenodes of a site on different hosts.
    pub fn validate(&self) -> Result<(), ModelError> {
        let mut hosts = BTreeSet::new();
        for h in &self.hosts {
            if !hosts.insert(h.as_str()) {
                return Err(ModelError::DuplicateHost(h.clone()));
            }
        }
        if hosts.len() < MIN_HOSTS {
            return Err(ModelError::TooFewHosts { found: hosts.len() });
        }
        if self.sites.is_empty() {
            return Err(ModelError::NoSites);
        }
        let mut sites = BTreeSet::new();
        let mut vms = BTreeSet::new();
        for site in &self.sites {
            if !sites.insert(site.name.as_str()) {
                return Err(ModelError::DuplicateSite(site.name.clone()));
            }
            for nn in &site.namenodes {
                if !vms.insert(nn.vm.as_str()) {
                    return Err(ModelError::DuplicateVm(nn.vm.clone()));
                }
                if !hosts.contains(nn.host.as_str()) {
                    return Err(ModelError::UnknownHost {
                        vm: nn.vm.clone(),
                        host: nn.host.clone(),
                    });
                }
            }
            let [a, b] = &site.namenodes;
            if a.host == b.host {
                return Err(ModelError::SameHost {
                    site: site.name.clone(),
                    host: a.host.clone(),
                });
            }
            if let Some(vm) = &site.believed_active
                && !site.namenodes.iter().any(|n| &n.vm == vm)
            {
                return Err(ModelError::UnknownBelievedActive {
                    site: site.name.clone(),
                    vm: vm.clone(),
                });
            }
        }
        Ok(())
    }
}
