//! Importing existing binlog files into a task's archive (files a `mysqlbinlog --raw` loop, a
//! backup tool or a copy of a server's data directory kept before binlog-server ran).
//!
//! Two pure decisions and their table tests: [`verify`] (is this a whole, intact binlog file,
//! and what does it hold) and [`lineage`] (may these files join this task's archive, and where);
//! [`run`] carries them out (staging, fsync, rename, catalogue) and [`source`] says what an
//! import over the API may read.

pub mod lineage;
pub mod run;
pub mod source;
pub mod verify;
