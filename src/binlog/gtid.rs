//! GTID sets: MySQL's `uuid[:tag]:interval...` sets and MariaDB's `domain-server-seq` lists.
//!
//! Parsing, canonical printing, set algebra (add, union, difference, intersection, subset,
//! contains) and MySQL's binary encoding (the one used by PREVIOUS_GTIDS events and
//! COM_BINLOG_DUMP_GTID). Pure code, property-tested.

use std::collections::BTreeMap;
use std::fmt;

use crate::binlog::Flavor;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid GTID set: {0}")]
pub struct GtidParseError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, GtidParseError> {
    Err(GtidParseError(msg.into()))
}

/// A MySQL server UUID (source id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let dashes_ok = {
            let parts: Vec<&str> = text.split('-').collect();
            parts.len() == 1 || parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        };
        if hex.len() != 32 || !dashes_ok || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return err(format!("{text:?} is not a UUID"));
        }
        let mut out = [0u8; 16];
        hex::decode_to_slice(&hex, &mut out).map_err(|e| GtidParseError(e.to_string()))?;
        Ok(Uuid(out))
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        write!(f, "{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
    }
}

/// A GTID tag (MySQL 8.3+): `[a-z_][a-z0-9_]{0,31}`. Empty means untagged.
/// The largest MySQL transaction number (`GNO_END - 1`, `GNO_END` being `i64::MAX`): every
/// parser (text, binary set, GTID events) refuses a larger one, so that whatever is accepted from
/// a source also prints as a checkpoint that parses again.
pub const MAX_GNO: u64 = i64::MAX as u64 - 1;

pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    match chars.next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => {}
        _ => return false,
    }
    tag.len() <= 32 && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Sorted, disjoint, non-adjacent half-open intervals `[start, end)` of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Intervals(Vec<(u64, u64)>);

impl Intervals {
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, gno: u64) -> bool {
        let i = self.0.partition_point(|&(_, end)| end <= gno);
        self.0.get(i).is_some_and(|&(start, _)| start <= gno)
    }

    /// Adds `[start, end)`, merging with neighbours.
    pub fn add_range(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // First interval that could touch [start, end): its end >= start.
        let lo = self.0.partition_point(|&(_, e)| e < start);
        // First interval entirely after: its start > end.
        let hi = self.0.partition_point(|&(s, _)| s <= end);
        if lo == hi {
            self.0.insert(lo, (start, end));
        } else {
            let new_start = start.min(self.0[lo].0);
            let new_end = end.max(self.0[hi - 1].1);
            self.0.splice(lo..hi, [(new_start, new_end)]);
        }
    }

    /// Whether every number of `self` is in `other`.
    pub fn is_subset(&self, other: &Intervals) -> bool {
        // Intervals are disjoint and non-adjacent: a covered interval lies inside one of other's.
        self.0.iter().all(|&(s, e)| {
            let i = other.0.partition_point(|&(_, oe)| oe <= s);
            other.0.get(i).is_some_and(|&(os, oe)| os <= s && e <= oe)
        })
    }

    /// The numbers of `self` that are not in `other`.
    pub fn difference(&self, other: &Intervals) -> Intervals {
        let mut out = Vec::new();
        let mut j = 0;
        for &(s, e) in &self.0 {
            let mut from = s;
            // Skip other's intervals that end before this one starts.
            while j < other.0.len() && other.0[j].1 <= from {
                j += 1;
            }
            let mut k = j;
            while from < e && k < other.0.len() && other.0[k].0 < e {
                let (os, oe) = other.0[k];
                if os > from {
                    out.push((from, os));
                }
                from = from.max(oe);
                k += 1;
            }
            if from < e {
                out.push((from, e));
            }
        }
        Intervals(out)
    }

    /// The numbers in both.
    pub fn intersection(&self, other: &Intervals) -> Intervals {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let (s, e) = (a.0.max(b.0), a.1.min(b.1));
            if s < e {
                out.push((s, e));
            }
            if a.1 <= b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Intervals(out)
    }

    pub fn add(&mut self, gno: u64) {
        // The common case: the next transaction number extends the last interval.
        if let Some(last) = self.0.last_mut()
            && last.1 == gno
        {
            last.1 = last.1.saturating_add(1);
            return;
        }
        self.add_range(gno, gno.saturating_add(1));
    }
}

/// A MySQL GTID set: per (source uuid, tag) a set of transaction numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GtidSet {
    sets: BTreeMap<(Uuid, String), Intervals>,
}

impl GtidSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.values().all(Intervals::is_empty)
    }

    pub fn has_tags(&self) -> bool {
        self.sets.keys().any(|(_, tag)| !tag.is_empty())
    }

    pub fn add(&mut self, uuid: Uuid, tag: &str, gno: u64) {
        self.sets.entry((uuid, tag.to_string())).or_default().add(gno);
    }

    pub fn contains(&self, uuid: &Uuid, tag: &str, gno: u64) -> bool {
        self.sets.get(&(*uuid, tag.to_string())).is_some_and(|i| i.contains(gno))
    }

    pub fn union_with(&mut self, other: &GtidSet) {
        for (k, iv) in &other.sets {
            let mine = self.sets.entry(k.clone()).or_default();
            for (s, e) in iv.iter() {
                mine.add_range(s, e);
            }
        }
    }

    /// Whether every transaction of `self` is in `other`.
    pub fn is_subset(&self, other: &GtidSet) -> bool {
        self.sets.iter().all(|(k, iv)| iv.is_empty() || other.sets.get(k).is_some_and(|o| iv.is_subset(o)))
    }

    /// The transactions of `self` that are not in `other`.
    pub fn difference(&self, other: &GtidSet) -> GtidSet {
        let sets = self
            .sets
            .iter()
            .map(|(k, iv)| (k.clone(), other.sets.get(k).map_or_else(|| iv.clone(), |o| iv.difference(o))))
            .filter(|(_, iv)| !iv.is_empty())
            .collect();
        GtidSet { sets }
    }

    /// The transactions in both.
    pub fn intersection(&self, other: &GtidSet) -> GtidSet {
        let sets = self
            .sets
            .iter()
            .filter_map(|(k, iv)| Some((k.clone(), iv.intersection(other.sets.get(k)?))))
            .filter(|(_, iv)| !iv.is_empty())
            .collect();
        GtidSet { sets }
    }

    /// (uuid, tag, intervals) in canonical order: by uuid, untagged first, then tags.
    pub fn entries(&self) -> impl Iterator<Item = (&Uuid, &str, &Intervals)> {
        self.sets.iter().filter(|(_, iv)| !iv.is_empty()).map(|((u, t), iv)| (u, t.as_str(), iv))
    }

    /// Parses `uuid:1-5:7,uuid2:tag:1-3` (whitespace and newlines around commas allowed).
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut set = GtidSet::new();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(set);
        }
        for part in trimmed.split(',') {
            let part = part.trim();
            let mut fields = part.split(':');
            let uuid = Uuid::parse(fields.next().unwrap_or_default().trim())?;
            let mut tag = String::new();
            let mut any = false;
            for field in fields {
                let field = field.trim();
                if field.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
                    let (start, end) = match field.split_once('-') {
                        Some((a, b)) => (parse_gno(a)?, parse_gno(b)?),
                        None => {
                            let g = parse_gno(field)?;
                            (g, g)
                        }
                    };
                    if start > end {
                        return err(format!("interval {field:?} ends before it starts"));
                    }
                    set.sets.entry((uuid, tag.clone())).or_default().add_range(start, end + 1);
                    any = true;
                } else if valid_tag(field) {
                    tag = field.to_string();
                    any = false;
                } else {
                    return err(format!("{field:?} is neither an interval nor a valid tag"));
                }
            }
            if !any {
                return err(format!("{part:?} has no transaction interval"));
            }
        }
        Ok(set)
    }

    /// MySQL's binary encoding (PREVIOUS_GTIDS body, COM_BINLOG_DUMP_GTID data).
    ///
    /// The untagged format is used whenever the set has no tags, so servers before 8.3 (which
    /// only know that format) understand it.
    pub fn encode(&self) -> Vec<u8> {
        let entries: Vec<_> = self.entries().collect();
        let tagged = self.has_tags();
        let mut out = Vec::with_capacity(8 + entries.len() * 40);
        let n = entries.len() as u64;
        if tagged {
            // Format byte in the lowest and highest byte, count in the six bytes between.
            out.extend_from_slice(&((1u64 << 56) | (n << 8) | 1).to_le_bytes());
        } else {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for (uuid, tag, iv) in entries {
            out.extend_from_slice(&uuid.0);
            if tagged {
                encode_varlen(tag.len() as u64, &mut out);
                out.extend_from_slice(tag.as_bytes());
            }
            out.extend_from_slice(&(iv.0.len() as u64).to_le_bytes());
            for (s, e) in iv.iter() {
                out.extend_from_slice(&s.to_le_bytes());
                out.extend_from_slice(&e.to_le_bytes());
            }
        }
        out
    }

    /// Decodes MySQL's binary encoding; the inverse of `encode`.
    pub fn decode(mut buf: &[u8]) -> Result<Self, GtidParseError> {
        let header = take_u64(&mut buf)?;
        let (tagged, n) = match (header >> 56) as u8 {
            0 => (false, header),
            1 if header & 0xff == 1 => (true, (header >> 8) & 0x0000_ffff_ffff_ffff),
            f => return err(format!("unknown GTID set encoding format {f}")),
        };
        let mut set = GtidSet::new();
        for _ in 0..n {
            if buf.len() < 16 {
                return err("truncated GTID set (uuid)");
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(&buf[..16]);
            buf = &buf[16..];
            let tag = if tagged {
                let len = decode_varlen(&mut buf)? as usize;
                if buf.len() < len {
                    return err("truncated GTID set (tag)");
                }
                let t = std::str::from_utf8(&buf[..len])
                    .map_err(|_| GtidParseError("tag is not UTF-8".into()))?
                    .to_string();
                buf = &buf[len..];
                if !t.is_empty() && !valid_tag(&t) {
                    return err(format!("invalid tag {t:?}"));
                }
                t
            } else {
                String::new()
            };
            let n_iv = take_u64(&mut buf)?;
            if n_iv > (buf.len() / 16) as u64 {
                return err("truncated GTID set (intervals)");
            }
            let iv = set.sets.entry((Uuid(u), tag)).or_default();
            for _ in 0..n_iv {
                let s = take_u64(&mut buf)?;
                let e = take_u64(&mut buf)?;
                if s == 0 || s >= e || e - 1 > MAX_GNO {
                    return err(format!("invalid interval [{s}, {e})"));
                }
                iv.add_range(s, e);
            }
        }
        // A uuid listed with no interval holds nothing: dropped, so that the set encodes (and
        // prints) back to what it holds (found by fuzzing: decode(encode(x)) != x).
        set.sets.retain(|_, iv| !iv.is_empty());
        Ok(set)
    }
}

fn parse_gno(s: &str) -> Result<u64, GtidParseError> {
    match s.trim().parse::<u64>() {
        Ok(0) => err("transaction number 0 is not valid"),
        Ok(g) if g > MAX_GNO => err(format!("transaction number {g} is too large")),
        Ok(g) => Ok(g),
        Err(_) => err(format!("{s:?} is not a transaction number")),
    }
}

fn take_u64(buf: &mut &[u8]) -> Result<u64, GtidParseError> {
    if buf.len() < 8 {
        return err("truncated GTID set");
    }
    let v = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    *buf = &buf[8..];
    Ok(v)
}

/// MySQL's serialization library varlen integer: the count of trailing one bits in the first
/// byte says how many bytes follow; the value is stored shifted left by (that count + 1).
pub fn encode_varlen(value: u64, out: &mut Vec<u8>) {
    // Number of extra bytes needed: value needs `bits` bits, first byte carries 7 - extra bits.
    let bits = 64 - value.leading_zeros() as usize;
    let mut extra = 0usize;
    while extra < 8 && bits > 7 * (extra + 1) {
        extra += 1;
    }
    if extra == 8 {
        out.push(0xff);
        out.extend_from_slice(&value.to_le_bytes());
        return;
    }
    let marker: u64 = (1u64 << extra) - 1; // `extra` trailing ones, then a zero bit
    let encoded = (value << (extra + 1)) | marker;
    out.extend_from_slice(&encoded.to_le_bytes()[..=extra]);
}

pub fn decode_varlen(buf: &mut &[u8]) -> Result<u64, GtidParseError> {
    let first = *buf.first().ok_or_else(|| GtidParseError("truncated varlen integer".into()))?;
    let extra = first.trailing_ones() as usize;
    if extra == 8 {
        if buf.len() < 9 {
            return err("truncated varlen integer");
        }
        let v = u64::from_le_bytes(buf[1..9].try_into().expect("8 bytes"));
        *buf = &buf[9..];
        return Ok(v);
    }
    if buf.len() < extra + 1 {
        return err("truncated varlen integer");
    }
    let mut le = [0u8; 8];
    le[..=extra].copy_from_slice(&buf[..=extra]);
    *buf = &buf[extra + 1..];
    Ok(u64::from_le_bytes(le) >> (extra + 1))
}

impl fmt::Display for GtidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first_uuid = true;
        let mut current: Option<&Uuid> = None;
        for (uuid, tag, iv) in self.entries() {
            if current != Some(uuid) {
                if !first_uuid {
                    f.write_str(",")?;
                }
                first_uuid = false;
                current = Some(uuid);
                write!(f, "{uuid}")?;
            }
            if !tag.is_empty() {
                write!(f, ":{tag}")?;
            }
            for (s, e) in iv.iter() {
                if e - s == 1 {
                    write!(f, ":{s}")?;
                } else {
                    write!(f, ":{s}-{}", e - 1)?;
                }
            }
        }
        Ok(())
    }
}

/// One MariaDB GTID: `domain-server-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MariadbGtid {
    pub domain: u32,
    pub server_id: u32,
    pub seq: u64,
}

impl fmt::Display for MariadbGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq)
    }
}

/// MariaDB replication state: the last GTID of each domain (what `@slave_connect_state` takes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MariadbGtidState {
    by_domain: BTreeMap<u32, MariadbGtid>,
}

impl MariadbGtidState {
    pub fn is_empty(&self) -> bool {
        self.by_domain.is_empty()
    }

    /// Records a transaction: it becomes the domain's position.
    pub fn apply(&mut self, gtid: MariadbGtid) {
        self.by_domain.insert(gtid.domain, gtid);
    }

    pub fn get(&self, domain: u32) -> Option<&MariadbGtid> {
        self.by_domain.get(&domain)
    }

    pub fn iter(&self) -> impl Iterator<Item = &MariadbGtid> {
        self.by_domain.values()
    }

    /// Whether `g` is at or before this state's position in its domain. A MariaDB domain's
    /// history is one line ordered by sequence number (what `gtid_strict_mode` enforces), so a
    /// lower sequence number in the same domain is an earlier transaction of that line.
    pub fn covers(&self, g: &MariadbGtid) -> bool {
        self.by_domain.get(&g.domain).is_some_and(|c| c.seq >= g.seq)
    }

    /// Whether this state is at or past `other` in every domain `other` has.
    pub fn includes(&self, other: &MariadbGtidState) -> bool {
        other.iter().all(|g| self.covers(g))
    }

    /// The domains this state has a position in.
    pub fn domains(&self) -> impl Iterator<Item = u32> + '_ {
        self.by_domain.keys().copied()
    }

    /// Parses `0-1-100,1-2-5`; one GTID per domain.
    pub fn parse(text: &str) -> Result<Self, GtidParseError> {
        let mut state = MariadbGtidState::default();
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Ok(state);
        }
        for part in trimmed.split(',') {
            let part = part.trim();
            let nums: Vec<&str> = part.split('-').collect();
            if nums.len() != 3 {
                return err(format!("{part:?} is not domain-server-seq"));
            }
            let domain = nums[0].parse::<u32>().map_err(|_| GtidParseError(format!("bad domain in {part:?}")))?;
            let server_id = nums[1].parse::<u32>().map_err(|_| GtidParseError(format!("bad server id in {part:?}")))?;
            let seq = nums[2].parse::<u64>().map_err(|_| GtidParseError(format!("bad sequence number in {part:?}")))?;
            if state.by_domain.contains_key(&domain) {
                return err(format!("domain {domain} appears twice"));
            }
            state.apply(MariadbGtid { domain, server_id, seq });
        }
        Ok(state)
    }
}

impl fmt::Display for MariadbGtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.by_domain.values().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

/// A GTID position of either flavor: a task's start point and its checkpoint's `gtid_set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartGtid {
    Mysql(GtidSet),
    Mariadb(MariadbGtidState),
}

impl StartGtid {
    pub fn parse(flavor: Flavor, text: &str) -> Result<Self, GtidParseError> {
        match flavor {
            Flavor::Mysql => GtidSet::parse(text).map(StartGtid::Mysql),
            Flavor::Mariadb => MariadbGtidState::parse(text).map(StartGtid::Mariadb),
        }
    }

    pub fn empty(flavor: Flavor) -> Self {
        match flavor {
            Flavor::Mysql => StartGtid::Mysql(GtidSet::new()),
            Flavor::Mariadb => StartGtid::Mariadb(MariadbGtidState::default()),
        }
    }
}

impl fmt::Display for StartGtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartGtid::Mysql(s) => s.fmt(f),
            StartGtid::Mariadb(s) => s.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Found by the fuzz campaign (`gtid`, `stream_tracker` strict): a PREVIOUS_GTIDS set with an
    /// interval ending past `i64::MAX` decoded, became the checkpoint, and its text did not parse
    /// again, so the task could not resume.
    #[test]
    fn decode_refuses_transaction_numbers_the_text_form_cannot_hold() {
        let encoded = |s: u64, e: u64| {
            let mut b = 1u64.to_le_bytes().to_vec();
            b.extend_from_slice(&[0xb9; 16]);
            b.extend_from_slice(&1u64.to_le_bytes());
            b.extend_from_slice(&s.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
            b
        };
        // (start, end exclusive, accepted)
        let cases = [
            (1, 2, true),
            (1, MAX_GNO + 1, true),
            (1, MAX_GNO + 2, false),
            (1, 0xF051_0000_0000_0003, false),
            (MAX_GNO, MAX_GNO + 1, true),
            (0, 5, false),
            (7, 7, false),
        ];
        for (s, e, ok) in cases {
            let got = GtidSet::decode(&encoded(s, e));
            assert_eq!(got.is_ok(), ok, "[{s}, {e}): {got:?}");
            if let Ok(set) = got {
                let text = set.to_string();
                assert_eq!(GtidSet::parse(&text).as_ref(), Ok(&set), "{text} parses again");
            }
        }
        assert!(GtidSet::parse(&format!("b9b9b9b9-b9b9-b9b9-b9b9-b9b9b9b9b9b9:{}", MAX_GNO + 1)).is_err());
    }

    use super::*;
    use proptest::prelude::*;

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "00000000-0000-0000-0000-000000000001";

    #[test]
    fn parses_and_prints_canonically() {
        let s = GtidSet::parse(&format!("{U1}:7:1-5:6, \n{U2}:3")).unwrap();
        assert_eq!(s.to_string(), format!("{U2}:3,{U1}:1-7"));
        assert!(s.contains(&Uuid::parse(U1).unwrap(), "", 4));
        assert!(!s.contains(&Uuid::parse(U1).unwrap(), "", 8));
        assert_eq!(GtidSet::parse("").unwrap(), GtidSet::new());
    }

    #[test]
    fn parses_tagged_sets() {
        let s = GtidSet::parse(&format!("{U1}:1-3:tag_a:1-2:5")).unwrap();
        assert!(s.has_tags());
        assert_eq!(s.to_string(), format!("{U1}:1-3:tag_a:1-2:5"));
        assert!(s.contains(&Uuid::parse(U1).unwrap(), "tag_a", 5));
        assert!(!s.contains(&Uuid::parse(U1).unwrap(), "", 5));
    }

    #[test]
    fn rejects_malformed_sets() {
        for bad in [
            "nope",
            U1,
            &format!("{U1}:0"),
            &format!("{U1}:5-3"),
            &format!("{U1}:Tag:1"),
            &format!("{U1}:1-"),
            "3e11fa47-71ca-11e1-9e33:1",
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn untagged_encoding_matches_the_protocol_layout() {
        // n_sids=1 (8 bytes LE), uuid (16), n_intervals=1 (8), start=1, end=6 (exclusive).
        let s = GtidSet::parse(&format!("{U1}:1-5")).unwrap();
        let enc = s.encode();
        assert_eq!(enc.len(), 8 + 16 + 8 + 16);
        assert_eq!(&enc[0..8], &1u64.to_le_bytes());
        assert_eq!(&enc[8..24], &Uuid::parse(U1).unwrap().0);
        assert_eq!(&enc[24..32], &1u64.to_le_bytes());
        assert_eq!(&enc[32..40], &1u64.to_le_bytes());
        assert_eq!(&enc[40..48], &6u64.to_le_bytes());
        assert_eq!(GtidSet::decode(&enc).unwrap(), s);
        assert_eq!(GtidSet::new().encode(), vec![0u8; 8]);
        // A uuid listed with no interval (the fuzz smoke's input) holds nothing.
        let mut empty_sid = 1u64.to_le_bytes().to_vec();
        empty_sid.extend_from_slice(&Uuid::parse(U1).unwrap().0);
        empty_sid.extend_from_slice(&0u64.to_le_bytes());
        let d = GtidSet::decode(&empty_sid).unwrap();
        assert!(d.is_empty(), "{d}");
        assert_eq!(GtidSet::decode(&d.encode()).unwrap(), d);
    }

    #[test]
    fn tagged_encoding_round_trips_and_marks_the_format() {
        let s = GtidSet::parse(&format!("{U1}:1-3:tag_a:1-2")).unwrap();
        let enc = s.encode();
        assert_eq!(enc[0], 1);
        assert_eq!(enc[7], 1);
        assert_eq!(u64::from_le_bytes(enc[0..8].try_into().unwrap()) >> 8 & 0xffff_ffff_ffff, 2);
        assert_eq!(GtidSet::decode(&enc).unwrap(), s);
    }

    #[test]
    fn varlen_round_trips_at_the_byte_boundaries() {
        for v in [0u64, 1, 127, 128, 16383, 16384, 1 << 40, u64::MAX >> 8, u64::MAX] {
            let mut out = Vec::new();
            encode_varlen(v, &mut out);
            let mut slice = out.as_slice();
            assert_eq!(decode_varlen(&mut slice).unwrap(), v, "{v}");
            assert!(slice.is_empty());
        }
        let mut one = Vec::new();
        encode_varlen(5, &mut one);
        assert_eq!(one, vec![10]);
    }

    #[test]
    fn decode_rejects_truncation_without_panicking() {
        let s = GtidSet::parse(&format!("{U1}:1-5:9")).unwrap();
        let enc = s.encode();
        for cut in 0..enc.len() {
            assert!(GtidSet::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn mariadb_state_parses_and_applies() {
        let mut s = MariadbGtidState::parse("0-1-100, 1-2-5").unwrap();
        assert_eq!(s.to_string(), "0-1-100,1-2-5");
        s.apply(MariadbGtid { domain: 0, server_id: 3, seq: 101 });
        assert_eq!(s.to_string(), "0-3-101,1-2-5");
        assert!(MariadbGtidState::parse("0-1-1,0-2-2").is_err());
        assert!(MariadbGtidState::parse("0-1").is_err());
        assert!(MariadbGtidState::parse("a-b-c").is_err());
        assert!(MariadbGtidState::parse("").unwrap().is_empty());
    }

    #[test]
    fn set_algebra_on_real_text() {
        let e = GtidSet::parse(&format!("{U1}:1-20,{U2}:1-3")).unwrap();
        let n = GtidSet::parse(&format!("{U1}:1-15:21-30")).unwrap();
        assert_eq!(e.difference(&n).to_string(), format!("{U2}:1-3,{U1}:16-20"));
        assert_eq!(e.intersection(&n).to_string(), format!("{U1}:1-15"));
        assert!(!e.is_subset(&n) && GtidSet::parse(&format!("{U1}:2-9")).unwrap().is_subset(&e));
        assert!(GtidSet::new().is_subset(&GtidSet::new()));

        let m = MariadbGtidState::parse("0-1-20,1-5-3").unwrap();
        assert!(m.covers(&MariadbGtid { domain: 0, server_id: 2, seq: 20 }));
        assert!(!m.covers(&MariadbGtid { domain: 0, server_id: 1, seq: 21 }));
        assert!(!m.covers(&MariadbGtid { domain: 2, server_id: 1, seq: 1 }));
        assert!(m.includes(&MariadbGtidState::parse("0-2-7").unwrap()));
        assert!(!MariadbGtidState::parse("0-2-7").unwrap().includes(&m));
        assert_eq!(m.domains().collect::<Vec<_>>(), vec![0, 1]);
    }

    fn arb_ranges() -> impl Strategy<Value = Vec<(u64, u64)>> {
        prop::collection::vec((1u64..200, 1u64..20), 0..30)
            .prop_map(|v| v.into_iter().map(|(s, l)| (s, s + l)).collect())
    }

    proptest! {
        #[test]
        fn intervals_behave_like_a_set(ranges in arb_ranges(), probes in prop::collection::vec(0u64..260, 50)) {
            let mut iv = Intervals::default();
            let mut model = std::collections::BTreeSet::new();
            for (s, e) in &ranges {
                iv.add_range(*s, *e);
                model.extend(*s..*e);
            }
            for p in probes {
                prop_assert_eq!(iv.contains(p), model.contains(&p));
            }
            // Canonical: sorted, disjoint, non-adjacent.
            for w in iv.0.windows(2) {
                prop_assert!(w[0].1 < w[1].0);
            }
        }

        #[test]
        fn text_and_binary_round_trip(ranges in arb_ranges(), tagged in any::<bool>()) {
            let mut s = GtidSet::new();
            let u = Uuid::parse(U1).unwrap();
            for (a, b) in &ranges {
                for g in *a..*b {
                    s.add(u, if tagged && g % 2 == 0 { "t1" } else { "" }, g);
                }
            }
            prop_assert_eq!(GtidSet::parse(&s.to_string()).unwrap(), s.clone());
            prop_assert_eq!(GtidSet::decode(&s.encode()).unwrap(), s.clone());
        }

        #[test]
        fn intervals_difference_intersection_and_subset_match_a_model(a in arb_ranges(), b in arb_ranges()) {
            let build = |ranges: &Vec<(u64, u64)>| {
                let mut iv = Intervals::default();
                let mut model = std::collections::BTreeSet::new();
                for (s, e) in ranges {
                    iv.add_range(*s, *e);
                    model.extend(*s..*e);
                }
                (iv, model)
            };
            let ((x, mx), (y, my)) = (build(&a), build(&b));
            let canonical = |iv: &Intervals| iv.0.windows(2).all(|w| w[0].1 < w[1].0) && iv.0.iter().all(|(s, e)| s < e);
            let d = x.difference(&y);
            let i = x.intersection(&y);
            prop_assert!(canonical(&d) && canonical(&i));
            let members = |iv: &Intervals| iv.iter().flat_map(|(s, e)| s..e).collect::<std::collections::BTreeSet<u64>>();
            prop_assert_eq!(members(&d), mx.difference(&my).copied().collect());
            prop_assert_eq!(members(&i), mx.intersection(&my).copied().collect());
            prop_assert_eq!(x.is_subset(&y), mx.is_subset(&my));
            // A set minus what it shares with another is its difference; both parts rebuild it.
            let mut back = d.clone();
            for (s, e) in i.iter() {
                back.add_range(s, e);
            }
            prop_assert_eq!(back, x.clone());
            prop_assert!(d.is_subset(&x) && i.is_subset(&y) && x.difference(&x).is_empty());
        }

        #[test]
        fn gtid_set_algebra_over_sources_and_tags(a in arb_ranges(), b in arb_ranges(), split in 1u64..200) {
            let u1 = Uuid::parse(U1).unwrap();
            let u2 = Uuid::parse(U2).unwrap();
            let mut x = GtidSet::new();
            let mut y = GtidSet::new();
            // The same numbers land on different (uuid, tag) keys: only equal keys may meet.
            for (s, e) in &a { for g in *s..*e { x.add(if g < split { u1 } else { u2 }, "", g); } }
            for (s, e) in &b { for g in *s..*e { y.add(if g % 3 == 0 { u1 } else { u2 }, if g % 5 == 0 { "t" } else { "" }, g); } }
            let d = x.difference(&y);
            let i = x.intersection(&y);
            for g in 1u64..260 {
                for (u, t) in [(u1, ""), (u2, ""), (u1, "t"), (u2, "t")] {
                    let (inx, iny) = (x.contains(&u, t, g), y.contains(&u, t, g));
                    prop_assert_eq!(d.contains(&u, t, g), inx && !iny);
                    prop_assert_eq!(i.contains(&u, t, g), inx && iny);
                }
            }
            prop_assert_eq!(x.is_subset(&y), d.is_empty());
            let mut u = y.clone();
            u.union_with(&x);
            prop_assert!(x.is_subset(&u) && y.is_subset(&u) && !d.entries().any(|(_, _, iv)| iv.is_empty()));
            prop_assert_eq!(GtidSet::parse(&d.to_string()).unwrap(), d);
        }

        #[test]
        fn union_contains_both(a in arb_ranges(), b in arb_ranges(), probe in 1u64..250) {
            let u = Uuid::parse(U2).unwrap();
            let mut x = GtidSet::new();
            let mut y = GtidSet::new();
            for (s, e) in &a { for g in *s..*e { x.add(u, "", g); } }
            for (s, e) in &b { for g in *s..*e { y.add(u, "", g); } }
            let mut z = x.clone();
            z.union_with(&y);
            prop_assert_eq!(z.contains(&u, "", probe), x.contains(&u, "", probe) || y.contains(&u, "", probe));
        }
    }
}
