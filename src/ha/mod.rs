//! The HA monitor for the HDFS namenode VMs (issue 11, DESIGN.md §7): probes of hosts and
//! namenodes ([`probe`], over HTTP and over Hadoop RPC through our small IPC client [`ipc`]),
//! and the failover state machine ([`failover`]: detect, fence, promote, restart elsewhere),
//! pure logic driven by probe results and a clock. A separate module from the archive: it
//! shares only the configuration and the metrics.

pub mod control;
pub mod driver;
pub mod failover;
pub mod ipc;
pub mod monitor;
pub mod probe;
pub mod status;
pub mod store;

pub use monitor::{HaError, HaHandle};
