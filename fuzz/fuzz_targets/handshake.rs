//! The connection phase as `source::conn::SourceConn::connect_inner` and `authenticate` read it:
//! the server greeting (`mysql_common::packets::HandshakePacket`), then an auth switch request
//! (`AuthSwitchRequest`), each followed by what our code computes from them (capabilities, the
//! plugin choice, the scramble, the handshake response).
//!
//! The input is one packet payload, tried both as a greeting and as an auth switch request.
//! `plugin_for` and `auth_data` are private in `conn.rs`, so their logic is mirrored here (and
//! must be kept in step with it). `rsa_encrypt` is not fuzzed: `mysql_common::crypto::encrypt`
//! panics on a malformed key by design, which `conn.rs` catches with `catch_unwind`, and
//! libFuzzer's panic hook aborts before any `catch_unwind` could.
//!
//! Checks: no panic. Known mysql_common bug (see README.md): a greeting whose
//! `auth_plugin_data_len` byte is 0x80..=0x87 overflows an `i8` subtraction in
//! `HandshakePacket::deserialize`; that panics only where overflow checks are on (debug builds,
//! fuzz builds) and is skipped here unless `BINLOG_FUZZ_STRICT=1`.
#![no_main]

mod common;

use binlog_server::source::conn::parse_err_packet;
use libfuzzer_sys::fuzz_target;
use mysql_common::constants::CapabilityFlags;
use mysql_common::io::ParseBuf;
use mysql_common::packets::{AuthPlugin, AuthSwitchRequest, HandshakePacket, HandshakeResponse, SslRequest};
use mysql_common::proto::MySerialize;

const PASSWORD: &str = "fuzz-password";

fuzz_target!(|data: &[u8]| {
    greeting(data);
    auth_switch(data);
});

fn greeting(first: &[u8]) {
    if first.first() == Some(&0xFF) {
        let _ = parse_err_packet(first).classify();
        return;
    }
    if !common::strict() && known_i8_overflow(first) {
        return;
    }
    let Ok(hs) = ParseBuf(first).parse::<HandshakePacket<'_>>(()) else { return };
    if hs.protocol_version() != 10 {
        return;
    }
    let server_version = hs.server_version_str().into_owned();
    let version = binlog_server::source::conn::parse_server_version(hs.server_version_ref()).unwrap_or((5, 7, 0));
    let server_caps = hs.capabilities();
    let nonce = hs.nonce();
    let plugin_name =
        hs.auth_plugin_name_str().map(|s| s.into_owned()).unwrap_or_else(|| "mysql_native_password".into());
    let _ = hs.connection_id();
    let _ = server_version.to_ascii_lowercase().contains("mariadb");
    let wanted = CapabilityFlags::CLIENT_PROTOCOL_41
        | CapabilityFlags::CLIENT_SECURE_CONNECTION
        | CapabilityFlags::CLIENT_PLUGIN_AUTH
        | CapabilityFlags::CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA
        | CapabilityFlags::CLIENT_LONG_PASSWORD
        | CapabilityFlags::CLIENT_LONG_FLAG
        | CapabilityFlags::CLIENT_TRANSACTIONS
        | CapabilityFlags::CLIENT_MULTI_RESULTS;
    if !server_caps.contains(CapabilityFlags::CLIENT_PROTOCOL_41) {
        return;
    }
    let mut caps = wanted & server_caps;
    if server_caps.contains(CapabilityFlags::CLIENT_SSL) {
        caps |= CapabilityFlags::CLIENT_SSL;
        let mut req = Vec::new();
        SslRequest::new(caps, 1 << 30, 45).serialize(&mut req);
    }
    for password in ["", PASSWORD] {
        let Some(plugin) = plugin_for(&plugin_name) else { continue };
        let Some(data) = auth_data(&plugin, password, &nonce) else { continue };
        let mut resp = Vec::new();
        HandshakeResponse::new(
            Some(data.as_slice()),
            version,
            Some(b"repl".as_slice()),
            None::<&[u8]>,
            Some(plugin.clone()),
            caps,
            None,
            1 << 30,
        )
        .serialize(&mut resp);
    }
}

fn auth_switch(pkt: &[u8]) {
    if pkt.first() != Some(&0xFE) {
        return;
    }
    let Ok(switch) = ParseBuf(pkt).parse::<AuthSwitchRequest<'_>>(()) else { return };
    let current_plugin = switch.auth_plugin().into_owned();
    let mut current_nonce = switch.plugin_data().to_vec();
    if current_nonce.last() == Some(&0) {
        current_nonce.pop();
    }
    let name = String::from_utf8_lossy(current_plugin.as_bytes()).into_owned();
    if let Some(plugin) = plugin_for(&name) {
        let _ = auth_data(&plugin, PASSWORD, &current_nonce);
    }
}

/// Mirrors `conn.rs` `plugin_for`.
fn plugin_for(name: &str) -> Option<AuthPlugin<'static>> {
    match name {
        "mysql_native_password" => Some(AuthPlugin::MysqlNativePassword),
        "caching_sha2_password" => Some(AuthPlugin::CachingSha2Password),
        "client_ed25519" => Some(AuthPlugin::Ed25519),
        _ => None,
    }
}

/// Mirrors `conn.rs` `auth_data`.
fn auth_data(plugin: &AuthPlugin<'_>, password: &str, nonce: &[u8]) -> Option<Vec<u8>> {
    if password.is_empty() {
        return Some(Vec::new());
    }
    if nonce.len() < 20 {
        return None;
    }
    let data = plugin.gen_data(Some(password), &nonce[..20])?;
    let mut out = Vec::new();
    data.serialize(&mut out);
    Some(out)
}

/// Whether `HandshakePacket::deserialize` would compute `auth_plugin_data_len as i8 - 8` with a
/// length byte of 0x80..=0x87 (an `i8` overflow): the greeting is protocol version (1 byte), the
/// NUL-terminated server version, then 31 fixed bytes whose byte 20 is that length; the
/// subtraction happens only with CLIENT_SECURE_CONNECTION in the lower capability half.
fn known_i8_overflow(p: &[u8]) -> bool {
    let Some(nul) = p.iter().skip(1).position(|&b| b == 0) else { return false };
    let fixed = 1 + nul + 1;
    if p.len() < fixed + 31 {
        return false;
    }
    let caps_low = u16::from_le_bytes([p[fixed + 13], p[fixed + 14]]);
    let secure = u32::from(caps_low) & CapabilityFlags::CLIENT_SECURE_CONNECTION.bits() != 0;
    secure && (0x80..=0x87).contains(&p[fixed + 20])
}
