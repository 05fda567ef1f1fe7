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
pub mod rsa;
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
