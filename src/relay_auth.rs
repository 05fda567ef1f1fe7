//! Relay users' credentials: the hashes we store and the checks of what a client sends.
//!
//! Only what the protocol needs is kept: `SHA1(SHA1(password))` for `mysql_native_password` and
//! `SHA256(SHA256(password))` for `caching_sha2_password`'s fast path. Neither lets anyone log in
//! (both scrambles need the inner hash). Pure code: no I/O, never a password in an error.

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Longest user name a relay user may have (MariaDB's limit).
pub const MAX_NAME_LEN: usize = 80;

/// The stored hashes of one relay user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserHashes {
    /// SHA1(SHA1(password)), 20 bytes.
    pub native: [u8; 20],
    /// SHA256(SHA256(password)), 32 bytes.
    pub sha2: [u8; 32],
}

impl std::fmt::Debug for UserHashes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserHashes(***)")
    }
}

impl UserHashes {
    pub fn from_password(password: &str) -> UserHashes {
        let native: [u8; 20] = Sha1::digest(Sha1::digest(password.as_bytes())).into();
        let sha2: [u8; 32] = Sha256::digest(Sha256::digest(password.as_bytes())).into();
        UserHashes { native, sha2 }
    }

    /// The stored (hex) form back; `None` when a row was damaged.
    pub fn from_hex(native: &str, sha2: &str) -> Option<UserHashes> {
        let native = hex::decode(native).ok()?.try_into().ok()?;
        let sha2 = hex::decode(sha2).ok()?.try_into().ok()?;
        Some(UserHashes { native, sha2 })
    }

    pub fn native_hex(&self) -> String {
        hex::encode(self.native)
    }

    pub fn sha2_hex(&self) -> String {
        hex::encode(self.sha2)
    }

    /// `mysql_native_password`: the client sends SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))).
    pub fn check_native(&self, nonce: &[u8], scramble: &[u8]) -> bool {
        if scramble.len() != 20 {
            return false;
        }
        let mut h = Sha1::new();
        h.update(nonce);
        h.update(self.native);
        let mask = h.finalize();
        let stage1: Vec<u8> = scramble.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
        let candidate: [u8; 20] = Sha1::digest(&stage1).into();
        constant_time_eq(&candidate, &self.native)
    }

    /// `caching_sha2_password` fast path: the client sends
    /// SHA256(pw) XOR SHA256(SHA256(SHA256(pw)) + nonce).
    pub fn check_sha2(&self, nonce: &[u8], scramble: &[u8]) -> bool {
        if scramble.len() != 32 {
            return false;
        }
        let mut h = Sha256::new();
        h.update(self.sha2);
        h.update(nonce);
        let mask = h.finalize();
        let stage1: Vec<u8> = scramble.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
        let candidate: [u8; 32] = Sha256::digest(&stage1).into();
        constant_time_eq(&candidate, &self.sha2)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a relay user name is refused (the API's field message).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!("a relay user name has 1 to {MAX_NAME_LEN} characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.@".contains(c)) {
        return Err("a relay user name uses only letters, digits and _ - . @".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mysql_common::packets::AuthPlugin;
    use mysql_common::proto::MySerialize;

    /// What a real client library sends (mysql_common's scrambles, as mysql_async uses them).
    fn client_scramble(plugin: AuthPlugin<'_>, password: &str, nonce: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        plugin.gen_data(Some(password), nonce).expect("scramble").serialize(&mut out);
        out
    }

    #[test]
    fn native_and_sha2_scrambles_of_the_right_password_pass_and_others_fail() {
        let nonce = b"0123456789abcdefghij";
        let h = UserHashes::from_password("s3cret");
        for (plugin, check) in [
            (AuthPlugin::MysqlNativePassword, UserHashes::check_native as fn(&UserHashes, &[u8], &[u8]) -> bool),
            (AuthPlugin::CachingSha2Password, UserHashes::check_sha2),
        ] {
            assert!(check(&h, nonce, &client_scramble(plugin.clone(), "s3cret", nonce)), "{plugin:?}");
            assert!(!check(&h, nonce, &client_scramble(plugin.clone(), "s3cret!", nonce)), "{plugin:?}");
            let other_nonce = b"jihgfedcba9876543210";
            assert!(!check(&h, nonce, &client_scramble(plugin.clone(), "s3cret", other_nonce)), "{plugin:?}");
            assert!(!check(&h, nonce, &[]), "{plugin:?}: an empty answer never passes");
        }
    }

    #[test]
    fn hashes_survive_their_stored_form_and_never_print() {
        let h = UserHashes::from_password("pw");
        assert_eq!(h.native_hex(), "d821809f681a40a6e379b50d0463efae20bdd122"); // PASSWORD('pw') without the *
        assert_eq!(UserHashes::from_hex(&h.native_hex(), &h.sha2_hex()), Some(h.clone()));
        assert_eq!(UserHashes::from_hex("zz", &h.sha2_hex()), None);
        assert_eq!(format!("{h:?}"), "UserHashes(***)");
    }

    #[test]
    fn user_names() {
        assert!(check_name("repl_1").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a'b").is_err());
        assert!(check_name(&"x".repeat(81)).is_err());
    }
}
