//! The server side of the MySQL client/server protocol, as bytes: the greeting, OK/ERR/EOF,
//! text result sets, and parsing what a client answers to the greeting. Pure code, table-tested;
//! the connection (`relay::session`) only writes what these return.

use mysql_common::constants::CapabilityFlags;

use crate::source::conn::read_lenenc_int;

/// `SERVER_STATUS_AUTOCOMMIT`.
const STATUS_AUTOCOMMIT: u16 = 0x0002;
/// utf8mb4_general_ci.
const COLLATION: u8 = 45;

/// What the relay announces, TLS aside (`greeting` adds CLIENT_SSL when `relay.tls` is set). No
/// DEPRECATE_EOF (result sets end with EOF packets, which every client and replica reads).
pub fn server_capabilities() -> CapabilityFlags {
    CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_FOUND_ROWS
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_CONNECT_WITH_DB
        | CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_MULTI_RESULTS
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_CONNECT_ATTRS
}

/// The initial handshake packet (protocol 10) with a 20-byte `nonce`; `tls` offers CLIENT_SSL.
pub fn greeting(server_version: &str, connection_id: u32, nonce: &[u8; 20], plugin: &str, tls: bool) -> Vec<u8> {
    let mut caps = server_capabilities();
    if tls {
        caps |= CapabilityFlags::CLIENT_SSL;
    }
    let caps = caps.bits();
    let mut p = Vec::with_capacity(128);
    p.push(10);
    p.extend_from_slice(server_version.as_bytes());
    p.push(0);
    p.extend_from_slice(&connection_id.to_le_bytes());
    p.extend_from_slice(&nonce[..8]);
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(COLLATION);
    p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0u8; 10]);
    p.extend_from_slice(&nonce[8..]);
    p.push(0);
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

/// What a client answered to the greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: CapabilityFlags,
    pub user: String,
    pub auth: Vec<u8>,
    pub database: Option<String>,
    pub plugin: Option<String>,
}

/// Why a handshake response cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    #[error("the client asked for TLS, which this relay listener does not offer (relay.tls is not set)")]
    TlsRequested,
    #[error("this relay accepts TLS connections only (relay.tls is set): connect with SSL")]
    TlsRequired,
    #[error("the client predates protocol 4.1")]
    Protocol320,
    #[error("malformed handshake response: {0}")]
    Malformed(&'static str),
}

fn take_cstr<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = p.iter().position(|&b| b == 0)?;
    let (s, rest) = p.split_at(end);
    *p = &rest[1..];
    Some(s)
}

/// The client's answer to the greeting (or, after an SSL request, its first packet inside TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientHello {
    /// The SSL request (32 bytes with CLIENT_SSL): the TLS handshake comes next, then the
    /// handshake response inside TLS.
    SslRequest,
    Response(HandshakeResponse),
}

/// Decides about a client's answer: an SSL request is taken only when TLS is offered and not
/// yet in place; with TLS offered, a handshake response sent in clear is refused (the relay
/// then requires TLS, as a server with `require_secure_transport`).
pub fn client_hello(pkt: &[u8], tls_offered: bool, in_tls: bool) -> Result<ClientHello, HandshakeError> {
    let ssl_request = pkt.len() == 32
        && CapabilityFlags::from_bits_truncate(u32::from_le_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]))
            .contains(CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SSL);
    match (ssl_request, tls_offered, in_tls) {
        (true, true, false) => Ok(ClientHello::SslRequest),
        (true, true, true) => Err(HandshakeError::Malformed("a second SSL request inside TLS")),
        (true, false, _) => Err(HandshakeError::TlsRequested),
        (false, true, false) => match parse_handshake_response(pkt) {
            Ok(_) => Err(HandshakeError::TlsRequired),
            Err(e) => Err(e),
        },
        (false, _, _) => parse_handshake_response(pkt).map(ClientHello::Response),
    }
}

/// Parses a HandshakeResponse41.
pub fn parse_handshake_response(pkt: &[u8]) -> Result<HandshakeResponse, HandshakeError> {
    if pkt.len() < 4 {
        return Err(HandshakeError::Malformed("too short"));
    }
    let caps = CapabilityFlags::from_bits_truncate(u32::from_le_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]));
    if !caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return Err(HandshakeError::Protocol320);
    }
    if pkt.len() < 32 {
        return Err(HandshakeError::Malformed("too short"));
    }
    if caps.contains(CapabilityFlags::CLIENT_SSL) && pkt.len() == 32 {
        return Err(HandshakeError::TlsRequested);
    }
    let mut p = &pkt[32..];
    let user = take_cstr(&mut p).ok_or(HandshakeError::Malformed("user name"))?;
    let auth = if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) {
        let n = read_lenenc_int(&mut p).ok_or(HandshakeError::Malformed("auth data length"))? as usize;
        if p.len() < n {
            return Err(HandshakeError::Malformed("auth data"));
        }
        let (a, rest) = p.split_at(n);
        p = rest;
        a
    } else if caps.contains(CapabilityFlags::CLIENT_SECURE_CONNECTION) {
        let (&n, rest) = p.split_first().ok_or(HandshakeError::Malformed("auth data length"))?;
        if rest.len() < n as usize {
            return Err(HandshakeError::Malformed("auth data"));
        }
        let (a, rest) = rest.split_at(n as usize);
        p = rest;
        a
    } else {
        take_cstr(&mut p).ok_or(HandshakeError::Malformed("auth data"))?
    };
    let mut database = None;
    if caps.contains(CapabilityFlags::CLIENT_CONNECT_WITH_DB) && !p.is_empty() {
        database = take_cstr(&mut p).map(|d| String::from_utf8_lossy(d).into_owned());
    }
    let mut plugin = None;
    if caps.contains(CapabilityFlags::CLIENT_PLUGIN_AUTH) && !p.is_empty() {
        plugin = take_cstr(&mut p).map(|d| String::from_utf8_lossy(d).into_owned());
    }
    Ok(HandshakeResponse {
        capabilities: caps,
        user: String::from_utf8_lossy(user).into_owned(),
        auth: auth.to_vec(),
        database,
        plugin,
    })
}

/// An auth switch request to `plugin` with a fresh nonce.
pub fn auth_switch(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    let mut p = vec![0xFE];
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p.extend_from_slice(nonce);
    p.push(0);
    p
}

/// caching_sha2_password: the fast authentication succeeded (OK follows).
pub const FAST_AUTH_OK: [u8; 2] = [0x01, 0x03];

pub fn ok() -> Vec<u8> {
    let mut p = vec![0x00, 0, 0];
    p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
    p.extend_from_slice(&0u16.to_le_bytes());
    p
}

pub fn eof() -> Vec<u8> {
    let mut p = vec![0xFE];
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&STATUS_AUTOCOMMIT.to_le_bytes());
    p
}

/// An ERR packet. The message is cut to keep the packet reasonable.
pub fn err(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut p = vec![0xFF];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    let mut st = [b'H', b'Y', b'0', b'0', b'0'];
    for (d, s) in st.iter_mut().zip(state.bytes()) {
        *d = s;
    }
    p.extend_from_slice(&st);
    let msg = message.as_bytes();
    p.extend_from_slice(&msg[..msg.len().min(2000)]);
    p
}

pub fn put_lenenc_int(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xFA => out.push(v as u8),
        0xFB..=0xFFFF => {
            out.push(0xFC);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xFD);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xFE);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A text result set as the packets to send, in order.
pub fn result_set(columns: &[String], rows: &[Vec<Option<String>>]) -> Vec<Vec<u8>> {
    let mut packets = Vec::with_capacity(columns.len() + rows.len() + 3);
    let mut count = Vec::new();
    put_lenenc_int(&mut count, columns.len() as u64);
    packets.push(count);
    for name in columns {
        let mut def = Vec::new();
        put_lenenc_str(&mut def, b"def");
        put_lenenc_str(&mut def, b"");
        put_lenenc_str(&mut def, b"");
        put_lenenc_str(&mut def, b"");
        put_lenenc_str(&mut def, name.as_bytes());
        put_lenenc_str(&mut def, name.as_bytes());
        def.push(0x0c);
        def.extend_from_slice(&33u16.to_le_bytes()); // utf8_general_ci
        def.extend_from_slice(&1024u32.to_le_bytes());
        def.push(0xFD); // VAR_STRING
        def.extend_from_slice(&0u16.to_le_bytes());
        def.push(0);
        def.extend_from_slice(&[0, 0]);
        packets.push(def);
    }
    packets.push(eof());
    for row in rows {
        let mut r = Vec::new();
        for v in row {
            match v {
                Some(s) => put_lenenc_str(&mut r, s.as_bytes()),
                None => r.push(0xFB),
            }
        }
        packets.push(r);
    }
    packets.push(eof());
    packets
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::io::ParseBuf;
    use mysql_common::packets::{AuthPlugin, HandshakePacket, HandshakeResponse as ClientResponse};
    use mysql_common::proto::MySerialize;

    #[test]
    fn a_client_library_reads_our_greeting() {
        let nonce = *b"abcdefghij0123456789";
        let g = greeting("5.5.5-10.11.6-MariaDB-log-binlog-server", 77, &nonce, "mysql_native_password", false);
        let hs: HandshakePacket<'_> = ParseBuf(&g).parse(()).expect("mysql_common parses the greeting");
        assert_eq!(hs.protocol_version(), 10);
        assert_eq!(hs.connection_id(), 77);
        assert_eq!(hs.server_version_str(), "5.5.5-10.11.6-MariaDB-log-binlog-server");
        assert_eq!(hs.nonce(), nonce.to_vec());
        assert_eq!(hs.auth_plugin_name_str().as_deref(), Some("mysql_native_password"));
        assert!(hs.capabilities().contains(CapabilityFlags::CLIENT_PLUGIN_AUTH));
        assert!(!hs.capabilities().contains(CapabilityFlags::CLIENT_SSL));
    }

    #[test]
    fn we_read_what_a_client_library_answers() {
        let caps = server_capabilities() | CapabilityFlags::CLIENT_CONNECT_WITH_DB;
        let data = [7u8; 20];
        let mut pkt = Vec::new();
        ClientResponse::new(
            Some(&data[..]),
            (10, 11, 6),
            Some(&b"repl"[..]),
            Some(&b"db1"[..]),
            Some(AuthPlugin::MysqlNativePassword),
            caps,
            None,
            1 << 24,
        )
        .serialize(&mut pkt);
        let r = parse_handshake_response(&pkt).unwrap();
        assert_eq!(r.user, "repl");
        assert_eq!(r.auth, data.to_vec());
        assert_eq!(r.database.as_deref(), Some("db1"));
        assert_eq!(r.plugin.as_deref(), Some("mysql_native_password"));
    }

    #[test]
    fn broken_and_tls_responses_are_refused() {
        assert!(matches!(parse_handshake_response(&[1, 2]), Err(HandshakeError::Malformed(_))));
        let mut ssl = (CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SSL).bits().to_le_bytes().to_vec();
        ssl.resize(32, 0);
        assert_eq!(parse_handshake_response(&ssl), Err(HandshakeError::TlsRequested));
        let mut old = CapabilityFlags::CLIENT_LONG_PASSWORD.bits().to_le_bytes().to_vec();
        old.resize(40, 0);
        assert_eq!(parse_handshake_response(&old), Err(HandshakeError::Protocol320));
        let mut no_nul = CapabilityFlags::CLIENT_PROTOCOL_41.bits().to_le_bytes().to_vec();
        no_nul.resize(32, 0);
        no_nul.extend_from_slice(b"user-without-end");
        assert!(matches!(parse_handshake_response(&no_nul), Err(HandshakeError::Malformed(_))));
    }

    #[test]
    fn client_hello_table() {
        let ssl_request = {
            let mut p =
                (CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SSL).bits().to_le_bytes().to_vec();
            p.resize(32, 0);
            p
        };
        let response = |caps: CapabilityFlags| {
            let mut p = caps.bits().to_le_bytes().to_vec();
            p.resize(32, 0);
            p.extend_from_slice(b"repl\0");
            p.push(0);
            p
        };
        let plain = response(CapabilityFlags::CLIENT_PROTOCOL_41 | CapabilityFlags::CLIENT_SECURE_CONNECTION);
        let in_tls = response(
            CapabilityFlags::CLIENT_PROTOCOL_41
                | CapabilityFlags::CLIENT_SECURE_CONNECTION
                | CapabilityFlags::CLIENT_SSL,
        );
        let user = |r: Result<ClientHello, HandshakeError>| match r {
            Ok(ClientHello::Response(h)) => Ok(h.user),
            Ok(ClientHello::SslRequest) => Err("ssl request".to_string()),
            Err(e) => Err(e.to_string()),
        };
        type Case<'a> = (&'a str, &'a [u8], bool, bool, Result<ClientHello, HandshakeError>);
        let cases: Vec<Case> = vec![
            ("SSL request, TLS offered: upgrade", &ssl_request, true, false, Ok(ClientHello::SslRequest)),
            ("SSL request, no TLS here", &ssl_request, false, false, Err(HandshakeError::TlsRequested)),
            (
                "SSL request again inside TLS",
                &ssl_request,
                true,
                true,
                Err(HandshakeError::Malformed("a second SSL request inside TLS")),
            ),
            ("plain response while TLS is required", &plain, true, false, Err(HandshakeError::TlsRequired)),
        ];
        for (what, pkt, offered, inside, want) in cases {
            assert_eq!(client_hello(pkt, offered, inside), want, "{what}");
        }
        assert_eq!(user(client_hello(&plain, false, false)), Ok("repl".to_string()), "plain relay, plain client");
        assert_eq!(user(client_hello(&in_tls, true, true)), Ok("repl".to_string()), "the response inside TLS");
        assert_eq!(client_hello(&[1, 2], true, false), Err(HandshakeError::Malformed("too short")));
    }

    #[test]
    fn greeting_offers_tls_only_when_set() {
        let nonce = [b'a'; 20];
        let caps = |g: &[u8]| {
            let at = g.iter().position(|&b| b == 0).unwrap() + 1 + 4 + 8 + 1;
            let low = u16::from_le_bytes([g[at], g[at + 1]]) as u32;
            let high = u16::from_le_bytes([g[at + 5], g[at + 6]]) as u32;
            CapabilityFlags::from_bits_truncate(low | high << 16)
        };
        assert!(caps(&greeting("v", 1, &nonce, "mysql_native_password", true)).contains(CapabilityFlags::CLIENT_SSL));
        assert!(!caps(&greeting("v", 1, &nonce, "mysql_native_password", false)).contains(CapabilityFlags::CLIENT_SSL));
    }

    #[test]
    fn err_ok_and_result_sets() {
        let e = err(1045, "28000", "Access denied");
        assert_eq!(&e[..4], &[0xFF, 0x15, 0x04, b'#']);
        assert_eq!(&e[4..9], b"28000");
        assert_eq!(ok()[0], 0);
        let rs = result_set(&["a".into(), "b".into()], &[vec![Some("1".into()), None]]);
        assert_eq!(rs.len(), 1 + 2 + 1 + 1 + 1);
        assert_eq!(rs[0], vec![2]);
        assert_eq!(rs[4], vec![1, b'1', 0xFB]);
        let mut big = Vec::new();
        put_lenenc_int(&mut big, 70_000);
        let mut p = &big[..];
        assert_eq!(read_lenenc_int(&mut p), Some(70_000));
    }
}
