//! The actor tree: `Supervisor` -> one `TaskActor` per running task -> its `ReplicationActor`,
//! `FileWriterActor` and `UploadActor`.
//!
//! Each actor lives in its own file (or folder, split by concern) with its messages beside it;
//! its decisions live in pure modules (`reconcile`, `retry`, `placement`, `task::record`). Children report upward through
//! `Recipient`s so a test can stand in for a parent. Nothing in here blocks an async executor
//! thread: file I/O runs on the writer's own thread, metadata calls through `Store::call`.

pub mod cluster_link;
pub mod coordinator;
pub mod file_writer;
pub mod replication;
pub mod supervisor;
pub mod task;
pub mod upload;

pub use supervisor::{ControlError, Supervisor};
