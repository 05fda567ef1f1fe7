//! Tells the service manager how start-up and shutdown go (systemd's `Type=notify`, see
//! sd_notify(3)): one datagram of `KEY=VALUE` lines to the unix socket `$NOTIFY_SOCKET` names, a
//! file path or, after `@`, an abstract socket name.
//!
//! Without `$NOTIFY_SOCKET` (not started by a service manager) every call does nothing. A message
//! that cannot be sent must never stop the service: callers log the error and carry on (systemd
//! then times the start out, which says more than a service that refuses to run).

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for a `Type=notify` service.
pub const ENV: &str = "NOTIFY_SOCKET";

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{ENV}={0:?} is neither a socket path nor an @abstract name")]
    Unsupported(String),
    #[error("{ENV} {socket}: {source}")]
    Send { socket: String, source: io::Error },
}

/// Where notifications go; `None` when no service manager asked for them.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(SocketAddr, String)>,
}

impl Notifier {
    /// Reads `$NOTIFY_SOCKET` once, at start-up.
    pub fn from_env() -> Result<Notifier, NotifyError> {
        Notifier::from_value(std::env::var_os(ENV).as_deref())
    }

    /// A notifier that sends nothing.
    pub fn off() -> Notifier {
        Notifier { target: None }
    }

    /// The notifier for a `$NOTIFY_SOCKET` value (`None` or empty: notifications are off).
    pub fn from_value(value: Option<&OsStr>) -> Result<Notifier, NotifyError> {
        use std::os::unix::ffi::OsStrExt;
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            return Ok(Notifier::off());
        };
        let shown = value.to_string_lossy().into_owned();
        let unsupported = || NotifyError::Unsupported(shown.clone());
        let addr = match value.as_bytes() {
            [b'/', ..] => SocketAddr::from_pathname(value).map_err(|_| unsupported())?,
            [b'@', name @ ..] => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).map_err(|_| unsupported())?
            }
            // systemd also knows vsock: addresses (virtual machines); we do not.
            _ => return Err(unsupported()),
        };
        Ok(Notifier { target: Some((addr, shown)) })
    }

    /// Whether a service manager asked for notifications.
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Start-up is complete: the listener is bound and the metadata store is open.
    pub fn ready(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&[("READY", "1"), ("STATUS", status)])
    }

    /// The ordered shutdown has begun.
    pub fn stopping(&self, status: &str) -> Result<(), NotifyError> {
        self.send(&[("STOPPING", "1"), ("STATUS", status)])
    }

    fn send(&self, fields: &[(&str, &str)]) -> Result<(), NotifyError> {
        let Some((addr, shown)) = &self.target else {
            return Ok(());
        };
        let message = encode(fields);
        let sent = UnixDatagram::unbound().and_then(|socket| socket.send_to_addr(message.as_bytes(), addr));
        match sent {
            Ok(n) if n == message.len() => Ok(()),
            Ok(n) => Err(NotifyError::Send {
                socket: shown.clone(),
                source: io::Error::other(format!("sent {n} of {} bytes", message.len())),
            }),
            Err(source) => Err(NotifyError::Send { socket: shown.clone(), source }),
        }
    }
}

/// One `KEY=VALUE` line per field; a newline inside a value would start a forged field, so
/// values are cut to one line.
fn encode(fields: &[(&str, &str)]) -> String {
    fields.iter().map(|(k, v)| format!("{k}={}\n", v.lines().next().unwrap_or_default())).collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.recv(&mut buf).expect("a notification within 5 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn ready_and_stopping_reach_a_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_value(Some(path.as_os_str())).unwrap();
        assert!(n.is_enabled());
        n.ready("listening on 127.0.0.1:8080").unwrap();
        assert_eq!(receive(&manager), "READY=1\nSTATUS=listening on 127.0.0.1:8080\n");
        n.stopping("stopping tasks").unwrap();
        assert_eq!(receive(&manager), "STOPPING=1\nSTATUS=stopping tasks\n");
    }

    #[test]
    fn an_at_sign_names_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("binlog-server-sd-notify-test-{}", std::process::id());
        let manager = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        let n = Notifier::from_value(Some(OsStr::new(&format!("@{name}")))).unwrap();
        n.ready("up").unwrap();
        assert_eq!(receive(&manager), "READY=1\nSTATUS=up\n");
    }

    #[test]
    fn without_the_variable_nothing_is_sent_and_nothing_fails() {
        for value in [None, Some(OsStr::new(""))] {
            let n = Notifier::from_value(value).unwrap();
            assert!(!n.is_enabled());
            n.ready("up").unwrap();
            n.stopping("down").unwrap();
        }
    }

    #[test]
    fn an_unknown_address_form_is_an_error_not_a_silent_no_op() {
        let err = Notifier::from_value(Some(OsStr::new("vsock:2:1234"))).unwrap_err();
        assert!(err.to_string().contains("vsock:2:1234"), "{err}");
    }

    #[test]
    fn a_socket_nobody_listens_on_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone");
        let err = Notifier::from_value(Some(path.as_os_str())).unwrap().ready("up").unwrap_err();
        assert!(matches!(err, NotifyError::Send { .. }), "{err}");
        assert!(err.to_string().contains("gone"), "names the socket: {err}");
    }

    #[test]
    fn a_newline_in_a_status_cannot_forge_a_field() {
        assert_eq!(encode(&[("STATUS", "a\nREADY=1")]), "STATUS=a\n");
        assert_eq!(encode(&[("READY", "1"), ("STATUS", "")]), "READY=1\nSTATUS=\n");
    }
}
