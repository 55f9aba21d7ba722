//! The failover state machine (SKELETON: filled in by the issue-11 work).
