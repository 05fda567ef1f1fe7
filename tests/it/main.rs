//! The single integration-test binary: one module per area, the harness in `common`.
//!
//! Every file directly under `tests/` would link a binary of its own, and linking dominates the
//! build on two cores, so areas are modules here instead.

mod common;
mod harness_selftest;

// Service skeleton: HTTP API, command line and configuration, MySQL metadata store.
mod api;
mod api_abuse;
mod api_fuzz;
mod cli;
mod code_map;
mod meta_mysql;
mod security;

// Replication core.
mod disk_full;
mod doctor;
mod hostile_source;
mod import;
mod import_api;
mod metrics;
mod pitr;
mod pitr_failover;
mod power_cut;
mod relay;
mod relay_mysql;
mod replica_source;
mod replication_checksum;
mod replication_crash;
mod replication_faults;
mod replication_identity;
mod replication_lifecycle;
mod replication_modes;
mod replication_replay;
mod retry_policy;
mod secrets;
mod semi_sync;
mod source_matrix;
mod storage_faults;
mod tls;
mod tls_listener;
mod tracing;

// Upload to S3-compatible storage, retention.
mod upload;

// Cluster mode: nodes on one metadata database, leases, failover.
mod cluster;

// Operator UI in a browser.
mod ui_e2e;

// From a fresh machine to a running service: the set-up script, the Debian package.
mod package;
mod setup_deps;
