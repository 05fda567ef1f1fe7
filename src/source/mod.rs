//! The replica side of the MySQL/MariaDB replication protocol: connect and authenticate
//! (`conn`), identify the source and ask for the binlog in each flavor's dialect (`dump`), and
//! read the raw event stream (`packet`).
//!
//! The bytes of every event are handed on exactly as the source sent them. This module never
//! parses an event beyond what framing needs (that is `binlog/`), never writes files, and never
//! logs a password.

pub mod conn;
pub mod dump;
pub mod packet;
pub use crate::rsa_key as rsa;
pub mod semisync;
pub mod tls;

use crate::domain::TaskErrorCode;
use crate::retry::FailureClass;

/// A failure talking to the source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("network error: {0}")]
    Io(#[source] std::io::Error),
    #[error("timed out {0}")]
    Timeout(String),
    #[error("source error {code} ({state}): {message}")]
    Server { code: u16, state: String, message: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("binary logging is disabled on the source (log_bin is OFF)")]
    LogBinOff,
    #[error("{0}")]
    InvalidStart(String),
}

/// MySQL/MariaDB server error codes the failure policy cares about.
pub mod codes {
    pub const ER_DBACCESS_DENIED: u16 = 1044;
    pub const ER_ACCESS_DENIED: u16 = 1045;
    pub const ER_SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub const ER_NOT_SUPPORTED_AUTH_MODE: u16 = 1251;
    pub const ER_ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
    pub const ER_MASTER_FATAL_ERROR_READING_BINLOG: u16 = 1236;
    pub const ER_NO_BINARY_LOGGING: u16 = 1381;
    pub const ER_MASTER_HAS_PURGED_REQUIRED_GTIDS: u16 = 1789;
    pub const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
    pub const ER_PARSE_ERROR: u16 = 1064;
}

impl SourceError {
    /// The task error code and whether the failure may pass by itself (RETRY_BACKOFF) or needs
    /// an operator (FAILED).
    pub fn classify(&self) -> FailureClass {
        use codes::*;
        match self {
            SourceError::Io(_) | SourceError::Timeout(_) => FailureClass::retryable(TaskErrorCode::SourceUnreachable),
            SourceError::Protocol(_) => FailureClass::retryable(TaskErrorCode::SourceProtocolError),
            SourceError::Tls(_) | SourceError::Unsupported(_) => {
                FailureClass::permanent(TaskErrorCode::SourceProtocolError)
            }
            SourceError::LogBinOff => FailureClass::permanent(TaskErrorCode::SourceLogBinOff),
            SourceError::InvalidStart(_) => FailureClass::permanent(TaskErrorCode::InvalidStartPosition),
            SourceError::Server { code, message, .. } => match *code {
                ER_ACCESS_DENIED
                | ER_DBACCESS_DENIED
                | ER_SPECIFIC_ACCESS_DENIED
                | ER_ACCESS_DENIED_NO_PASSWORD
                | ER_NOT_SUPPORTED_AUTH_MODE => FailureClass::permanent(TaskErrorCode::SourceAccessDenied),
                ER_NO_BINARY_LOGGING => FailureClass::permanent(TaskErrorCode::SourceLogBinOff),
                ER_MASTER_HAS_PURGED_REQUIRED_GTIDS => FailureClass::permanent(TaskErrorCode::SourceBinlogPurged),
                ER_MASTER_FATAL_ERROR_READING_BINLOG => classify_1236(message),
                _ => FailureClass::retryable(TaskErrorCode::SourceUnreachable),
            },
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.classify().is_retryable()
    }
}

/// Error 1236 covers purged files, impossible positions and transient read errors; the text is
/// all that tells them apart.
fn classify_1236(message: &str) -> FailureClass {
    let m = message.to_ascii_lowercase();
    if m.contains("binary log is not open") {
        FailureClass::permanent(TaskErrorCode::SourceLogBinOff)
    } else if m.contains("could not find first log file name")
        || m.contains("purged")
        || m.contains("could not find gtid state")
        || m.contains("could not open log file")
        || m.contains("binlog file") && m.contains("not found")
    {
        FailureClass::permanent(TaskErrorCode::SourceBinlogPurged)
    } else if m.contains("impossible position")
        || m.contains("bogus data")
        || m.contains("truncated in the middle of event")
        || m.contains("wrong offset")
        || m.contains("beyond")
        || m.contains("not present in the current binlog")
        || m.contains("is not valid")
        || m.contains("gtid") && m.contains("not in")
        // MySQL's ER_SLAVE_HAS_MORE_GTIDS_THAN_MASTER: the start set is ahead of the source.
        || m.contains("more gtids than the master")
    {
        FailureClass::permanent(TaskErrorCode::InvalidStartPosition)
    } else {
        FailureClass::retryable(TaskErrorCode::SourceProtocolError)
    }
}

/// Where a MariaDB source's file ends in an event that never ended: the source crashed while
/// writing it. MariaDB keeps such a tail after its crash recovery (MySQL cuts it back) and
/// opens a new file; every dump by position that reaches the tail is refused with 1236 "binlog
/// truncated in the middle of event", so a copy resumed there would stop for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The source's file with the torn tail.
    pub file: crate::binlog::name::BinlogFileName,
    /// Where the incomplete event starts: the source sends nothing of this file past it.
    pub at: u64,
}

/// Decides whether a failed dump hit a torn tail that can be left behind, and where it is.
///
/// Only MariaDB, only 1236 "truncated in the middle of event", and only when the message names
/// the file and position of the event it could not read (MariaDB's "the last event read from
/// 'F' at P"). What to do then is the caller's: resume by GTID from the checkpoint, so that the
/// source's own GTID bookkeeping decides where the next transaction is, as it does for its
/// MariaDB replicas (`StreamTracker::continuing_past` checks where that is).
pub fn torn_tail(flavor: crate::domain::Flavor, err: &SourceError) -> Option<TornTail> {
    let SourceError::Server { code: codes::ER_MASTER_FATAL_ERROR_READING_BINLOG, message, .. } = err else {
        return None;
    };
    if flavor != crate::domain::Flavor::Mariadb || !message.contains("truncated in the middle of event") {
        return None;
    }
    const LAST_EVENT: &str = "the last event read from '";
    let rest = &message[message.find(LAST_EVENT)? + LAST_EVENT.len()..];
    let (name, rest) = rest.split_once("' at ")?;
    let digits: &str = &rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len())];
    let at = digits.parse().ok()?;
    let file = crate::binlog::name::BinlogFileName::parse(name).ok()?;
    Some(TornTail { file, at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::name::BinlogFileName;

    fn server(code: u16, message: &str) -> SourceError {
        SourceError::Server { code, state: "HY000".into(), message: message.into() }
    }

    #[test]
    fn failure_policy_table() {
        assert_eq!(
            server(1045, "Access denied for user 'repl'").classify(),
            FailureClass::permanent(TaskErrorCode::SourceAccessDenied)
        );
        assert_eq!(
            server(1227, "need REPLICATION SLAVE").classify(),
            FailureClass::permanent(TaskErrorCode::SourceAccessDenied)
        );
        assert_eq!(
            server(1381, "You are not using binary logging").classify(),
            FailureClass::permanent(TaskErrorCode::SourceLogBinOff)
        );
        assert_eq!(
            server(1236, "Could not find first log file name in binary log index file").classify(),
            FailureClass::permanent(TaskErrorCode::SourceBinlogPurged)
        );
        assert_eq!(
            server(1236, "Client requested master to start replication from impossible position").classify(),
            FailureClass::permanent(TaskErrorCode::InvalidStartPosition)
        );
        assert_eq!(
            server(1053, "Server shutdown in progress").classify(),
            FailureClass::retryable(TaskErrorCode::SourceUnreachable)
        );
        assert_eq!(
            server(1236, "Binary log is not open").classify(),
            FailureClass::permanent(TaskErrorCode::SourceLogBinOff)
        );
        assert_eq!(
            server(1236, "Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.").classify(),
            FailureClass::permanent(TaskErrorCode::SourceBinlogPurged)
        );
        assert_eq!(
            server(1236, "binlog truncated in the middle of event; consider out of disk space on master").classify(),
            FailureClass::permanent(TaskErrorCode::InvalidStartPosition)
        );
        assert_eq!(
            server(1236, "Slave has more GTIDs than the master has, using the master's SERVER_UUID.").classify(),
            FailureClass::permanent(TaskErrorCode::InvalidStartPosition)
        );
        // Another replica with our server_id took over: transient (and logged loudly).
        assert!(server(4052, "A slave with the same server_uuid/server_id is already connected").is_retryable());
        assert!(SourceError::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)).is_retryable());
        assert!(!SourceError::LogBinOff.is_retryable());
    }
    #[test]
    fn torn_tail_table() {
        use crate::domain::Flavor::{Mariadb, Mysql};
        // MariaDB 10.11's text, as a dump from mariadb-bin.000001:708 got it after a crash.
        let torn = "binlog truncated in the middle of event; consider out of disk space on master; the first \
                    event 'mariadb-bin.000001' at 708, the last event read from 'mariadb-bin.000001' at 708, the \
                    last byte read from 'mariadb-bin.000001' at 727.";
        let at = |file: &str, at: u64| Some(TornTail { file: BinlogFileName::parse(file).unwrap(), at });
        let cases: Vec<(crate::domain::Flavor, SourceError, Option<TornTail>)> = vec![
            (Mariadb, server(1236, torn), at("mariadb-bin.000001", 708)),
            // Events read past the start before the torn one: the tail is where reading stopped.
            (
                Mariadb,
                server(
                    1236,
                    &torn.replace("read from 'mariadb-bin.000001' at 708", "read from 'mariadb-bin.000001' at 9120"),
                ),
                at("mariadb-bin.000001", 9120),
            ),
            // MySQL cuts a torn tail back at its crash recovery: never left behind.
            (Mysql, server(1236, torn), None),
            // Another 1236, another code, a message without the position: not a torn tail.
            (Mariadb, server(1236, "Client requested master to start replication from impossible position"), None),
            (
                Mariadb,
                server(1236, "binlog truncated in the middle of event; consider out of disk space on master"),
                None,
            ),
            (Mariadb, server(1235, torn), None),
            (Mariadb, SourceError::Protocol(torn.into()), None),
            // A name that is no binlog file name is not believed.
            (Mariadb, server(1236, &torn.replace("read from 'mariadb-bin.000001'", "read from '../x'")), None),
            (Mariadb, server(1236, &torn.replace("000001' at 708, the last byte", "000001' at , the last byte")), None),
        ];
        for (flavor, err, want) in cases {
            assert_eq!(torn_tail(flavor, &err), want, "{flavor:?} {err}");
        }
        // And the failure stays what it was when nobody leaves the tail behind.
        assert_eq!(server(1236, torn).classify(), FailureClass::permanent(TaskErrorCode::InvalidStartPosition));
    }
}
