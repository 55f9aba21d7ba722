//! `[dicomweb]`: DICOMweb (PS3.18) served under `/dicom-web` on the HTTP port.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DicomWebConfig {
    /// Origins a browser may call DICOMweb from (CORS). Empty: CORS off (same origin only).
    /// `"*"` allows any origin.
    pub cors_allow_origins: Vec<String>,
    /// Largest STOW-RS request body, in MiB; larger ones get HTTP 413.
    pub stow_max_mb: u64,
    /// Most parts (instances) one STOW-RS request may carry; more: HTTP 400. Bounds the
    /// response, which lists every part.
    pub stow_max_parts: usize,
    /// Most results one QIDO-RS request returns (a `limit` above it is lowered to it).
    pub qido_max_results: usize,
}

impl Default for DicomWebConfig {
    fn default() -> Self {
        DicomWebConfig {
            cors_allow_origins: Vec::new(),
            stow_max_mb: 4096,
            stow_max_parts: 10_000,
            qido_max_results: 1000,
        }
    }
}

impl DicomWebConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.qido_max_results == 0 {
            return Err(ConfigError::Invalid {
                key: "dicomweb.qido_max_results".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.stow_max_mb == 0 {
            return Err(ConfigError::Invalid {
                key: "dicomweb.stow_max_mb".into(),
                message: "must be at least 1".into(),
            });
        }
        if self.stow_max_parts == 0 {
            return Err(ConfigError::Invalid {
                key: "dicomweb.stow_max_parts".into(),
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}
