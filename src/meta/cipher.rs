//! Encryption at rest of source passwords: AES-256-GCM with a random nonce per value, the
//! ciphertext bound to the task's `cluster_key` (so a value cannot be moved to another row).
//!
//! Stored form: `enc:v1:` + base64(nonce || ciphertext || tag). A value without the prefix is
//! a legacy clear-text one, accepted on read and re-encrypted at start-up.
//!
//! The key is 32 bytes, written as base64 or hex: `secrets.key`, `secrets.key_file`, or (for
//! the embedded default) a key file generated once in `data_dir` with mode 0600.

use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::secret::Secret;

const PREFIX: &str = "enc:v1:";
pub use crate::layout::GENERATED_KEY_FILE;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    #[error("the secrets key must be 32 bytes written as base64 (44 characters) or hex (64 characters)")]
    BadKey,
    #[error(
        "cannot decrypt a stored password: the secrets key (secrets.key / secrets.key_file) is not the one it was encrypted with"
    )]
    WrongKey,
    #[error("a stored password is encrypted but no secrets key is configured (secrets.key / secrets.key_file)")]
    NoKey,
    #[error("a stored password is malformed")]
    Malformed,
    #[error("key file {0}")]
    KeyFile(String),
}

/// The at-rest cipher for secrets in the metadata store.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    /// From the key's text (base64 or hex of 32 bytes).
    pub fn from_text(text: &str) -> Result<Cipher, CipherError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(t).map_err(|_| CipherError::BadKey)?
        } else {
            STANDARD.decode(t).map_err(|_| CipherError::BadKey)?
        };
        if bytes.len() != 32 {
            return Err(CipherError::BadKey);
        }
        Ok(Cipher { aead: Aes256Gcm::new_from_slice(&bytes).map_err(|_| CipherError::BadKey)? })
    }

    /// Reads the key file at `path`, creating it (32 random bytes, mode 0600) when absent.
    pub fn load_or_generate(path: &Path) -> Result<Cipher, CipherError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Cipher::from_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::fill(&mut key);
                let text = STANDARD.encode(key);
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(|e| CipherError::KeyFile(format!("{}: {e}", path.display())))?;
                f.write_all(text.as_bytes())
                    .and_then(|_| f.sync_all())
                    .map_err(|e| CipherError::KeyFile(format!("{}: {e}", path.display())))?;
                // The file's name too: a key lost in a power cut would leave every password
                // stored with it undecryptable, and the next start would make another key.
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                std::fs::File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(|e| CipherError::KeyFile(format!("fsync {}: {e}", dir.display())))?;
                Cipher::from_text(&text)
            }
            Err(e) => Err(CipherError::KeyFile(format!("{}: {e}", path.display()))),
        }
    }

    pub fn encrypt(&self, clear: &Secret, context: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let ct = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: clear.expose().as_bytes(), aad: context.as_bytes() })
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    pub fn decrypt(&self, stored: &str, context: &str) -> Result<Secret, CipherError> {
        let b64 = stored.strip_prefix(PREFIX).ok_or(CipherError::Malformed)?;
        let raw = STANDARD.decode(b64).map_err(|_| CipherError::Malformed)?;
        if raw.len() < 12 + 16 {
            return Err(CipherError::Malformed);
        }
        let (nonce, ct) = raw.split_at(12);
        let clear = self
            .aead
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: context.as_bytes() })
            .map_err(|_| CipherError::WrongKey)?;
        String::from_utf8(clear).map(Secret::new).map_err(|_| CipherError::Malformed)
    }
}

/// Whether a stored value is encrypted (as opposed to legacy clear text).
pub fn is_encrypted(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Cipher {
        Cipher::from_text(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn round_trip_and_binding() {
        let c = key();
        let stored = c.encrypt(&Secret::new("s3cret-pw"), "task-a");
        assert!(is_encrypted(&stored));
        assert!(!stored.contains("s3cret"));
        assert_eq!(c.decrypt(&stored, "task-a").unwrap().expose(), "s3cret-pw");
        // Moved to another row: refused.
        assert_eq!(c.decrypt(&stored, "task-b").unwrap_err(), CipherError::WrongKey);
        // Two encryptions differ (random nonce).
        assert_ne!(stored, c.encrypt(&Secret::new("s3cret-pw"), "task-a"));
    }

    #[test]
    fn a_wrong_key_is_named_as_such() {
        let stored = key().encrypt(&Secret::new("pw"), "k");
        let other = Cipher::from_text(&"ab".repeat(32)).unwrap();
        assert_eq!(other.decrypt(&stored, "k").unwrap_err(), CipherError::WrongKey);
        assert_eq!(key().decrypt("enc:v1:!!!", "k").unwrap_err(), CipherError::Malformed);
    }

    #[test]
    fn key_formats_and_generation() {
        assert!(Cipher::from_text(&"00".repeat(32)).is_ok());
        assert_eq!(Cipher::from_text("short").unwrap_err(), CipherError::BadKey);
        assert_eq!(Cipher::from_text(&STANDARD.encode([1u8; 16])).unwrap_err(), CipherError::BadKey);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(GENERATED_KEY_FILE);
        let a = Cipher::load_or_generate(&path).unwrap();
        let stored = a.encrypt(&Secret::new("x"), "k");
        let b = Cipher::load_or_generate(&path).unwrap();
        assert_eq!(b.decrypt(&stored, "k").unwrap().expose(), "x", "the generated key is reused");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
