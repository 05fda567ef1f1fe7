//! `BinlogFileName`: a binlog file's base name as the source names it (`mysql-bin.000042`).
//!
//! Names arrive from the network (ROTATE events) and from API input, and become paths under
//! the data directory, so they are validated once here: no separators, no `..`, no control
//! characters. Ordering follows the numeric suffix, as the source's index does.

use std::cmp::Ordering;
use std::fmt;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BinlogFileName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid binlog file name {name:?}: {reason}")]
pub struct InvalidFileName {
    pub name: String,
    pub reason: &'static str,
}

impl BinlogFileName {
    pub const MAX_LEN: usize = 255;

    pub fn parse(name: &str) -> Result<Self, InvalidFileName> {
        let bad = |reason| Err(InvalidFileName { name: name.chars().take(300).collect(), reason });
        if name.is_empty() {
            return bad("empty");
        }
        if name.len() > Self::MAX_LEN {
            return bad("longer than 255 bytes");
        }
        if name.starts_with('.') {
            return bad("starts with a dot");
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+')) {
            return bad("only letters, digits, '.', '_', '-' and '+' are allowed");
        }
        Ok(BinlogFileName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `("mysql-bin", Some(42))` for `mysql-bin.000042`; no number when there is no numeric
    /// extension.
    pub fn split(&self) -> (&str, Option<u64>) {
        match self.0.rsplit_once('.') {
            Some((base, ext)) if !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_digit()) => (base, ext.parse().ok()),
            _ => (&self.0, None),
        }
    }
}

impl BinlogFileName {
    /// Whether this file is the one the source creates right after `prev` (same base name,
    /// the next number).
    pub fn follows(&self, prev: &BinlogFileName) -> bool {
        match (self.split(), prev.split()) {
            ((base, Some(n)), (prev_base, Some(p))) => base == prev_base && p.checked_add(1) == Some(n),
            _ => false,
        }
    }
}

impl Ord for BinlogFileName {
    fn cmp(&self, other: &Self) -> Ordering {
        let (ab, an) = self.split();
        let (bb, bn) = other.split();
        ab.cmp(bb).then(an.cmp(&bn)).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for BinlogFileName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BinlogFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for BinlogFileName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_source_names_and_rejects_paths() {
        assert!(BinlogFileName::parse("mysql-bin.000001").is_ok());
        assert!(BinlogFileName::parse("mariadb-bin.123456").is_ok());
        assert!(BinlogFileName::parse("bug32407.001").is_ok());
        for bad in ["", "../etc/passwd", "a/b", ".hidden", "..", "a\0b", "a b", "x\n"] {
            assert!(BinlogFileName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(BinlogFileName::parse(&"a".repeat(256)).is_err());
    }

    #[test]
    fn follows_is_the_next_number_of_the_same_base() {
        let n = |s: &str| BinlogFileName::parse(s).unwrap();
        assert!(n("bin.000002").follows(&n("bin.000001")));
        assert!(n("bin.1000000").follows(&n("bin.999999")));
        for (a, b) in
            [("bin.000003", "bin.000001"), ("bin.000001", "bin.000001"), ("log.000002", "bin.000001"), ("bin", "bin")]
        {
            assert!(!n(a).follows(&n(b)), "{a} after {b}");
        }
    }

    #[test]
    fn orders_by_numeric_suffix() {
        let a = BinlogFileName::parse("bin.999999").unwrap();
        let b = BinlogFileName::parse("bin.1000000").unwrap();
        assert!(a < b);
        assert_eq!(a.split(), ("bin", Some(999_999)));
    }
}
