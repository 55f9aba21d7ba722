//! Probes of hosts and namenodes (SKELETON: filled in by the issue-11 work).
