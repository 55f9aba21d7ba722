//! A small Hadoop IPC client for HAServiceProtocol (SKELETON: filled in by the issue-11 work).
