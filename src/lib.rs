//! MIFAS: a DICOM archive (PACS) in Rust.
//!
//! Layout (data flows one way: network → services → archive → index + storage):
//! - [`config`]: one TOML file → typed configuration.
//! - [`audit`]: the IHE ATNA audit trail (PS3.15 A.5 messages as syslog); used by `dimse` and
//!   `web`, depends on neither.
//! - [`dimse`]: DICOM upper layer and DIMSE services (C-ECHO, C-STORE).
//! - [`archive`]: ingest pipeline, durability contract and reconciliation; the only caller of
//!   [`index`] and [`storage`].
//! - [`index`]: the sled index; executes queries.
//! - [`query`]: the query model (levels, keys, conditions, matching rules), free of storage so
//!   both the network layer and the web can use it.
//! - [`storage`]: object stores (local disk now; HDFS sites later).
//! - [`dictionary`]: data tables from `dictionaries/`.
//! - [`ha`]: the HA monitor of the HDFS namenodes (probes, failover state machine).
//! - [`render`]: pixel data → JPEG/PNG for previews and thumbnails.
//! - [`web`]: the HTTP listener: the portal, `/metrics`, `/healthz`.

pub mod archive;
pub mod audit;
pub mod cli;
pub mod config;
pub mod dictionary;
pub mod dimse;
#[doc(hidden)]
pub mod fuzzing;
pub mod ha;
pub mod index;
pub mod query;
pub mod render;
pub mod storage;
pub mod tls;
pub mod uid;
pub mod web;
