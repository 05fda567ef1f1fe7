//! `Secret`: a string that must never reach a log line, an API response or a trace.
//!
//! Its `Debug` and `Display` print `***`; the only way to the value is `expose()`, so every
//! place that needs the clear text is easy to find with grep.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A password, token or DSN. Debug/Display print `***` (or nothing when empty).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text. Call sites are the audit list of where secrets go.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads a secret from a file, trimming one trailing newline (as `echo` or editors add).
    pub fn from_file(path: &Path) -> std::io::Result<Secret> {
        let mut text = std::fs::read_to_string(path)?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(Secret(text))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { f.write_str("\"\"") } else { f.write_str("***") }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() { Ok(()) } else { f.write_str("***") }
    }
}

/// Compares two byte strings in time that depends only on their lengths, not their content.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Fold the length difference in rather than returning early, so a wrong length costs the
    // same loop as a wrong byte.
    let mut diff = (a.len() ^ b.len()) as u64;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-distinctive");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{:?}", Some(&s)).contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-distinctive");
    }

    #[test]
    fn constant_time_eq_matches_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn from_file_trims_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "tok-value\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "tok-value");
    }
}
