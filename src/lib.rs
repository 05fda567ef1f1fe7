//! binlog-server: pulls MySQL/MariaDB binary logs over the replication protocol into durable,
//! byte-identical local files, and runs many such tasks behind an HTTP control plane.
//!
//! Start at `app::run` (assembly) and `docs/architecture.md` (the map and the invariants).

pub mod actors;
pub mod api;
pub mod app;
pub mod binlog;
pub mod cli_docs;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod data_lock;
pub mod doctor;
pub mod domain;
pub mod fsmode;
pub mod import;
pub mod layout;
pub mod meta;
pub mod overview;
pub mod pitr;
pub mod placement;
pub mod queries;
pub mod rate_limit;
pub mod reconcile;
pub mod relay;
pub mod relay_auth;
pub mod retry;
pub mod rsa_key;
pub mod sd_notify;
pub mod secret;
pub mod source;
mod string_enum;
pub mod telemetry;
pub mod tls_cert;
pub mod upload;
