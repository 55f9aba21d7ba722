//! `[ha]`: the HA monitor of the HDFS namenode VMs (issue 11, DESIGN.md §7).

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {}

impl HaConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
