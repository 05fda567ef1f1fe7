//! What the point-in-time catalog knows about one binlog file: first and last event times, the
//! GTID state before and after it, its first and last GTID (and, for MySQL, the set it adds),
//! and the source position all of this is true up to.
//!
//! Two ways in, one result: `SummaryBuilder` is fed events as the writer appends them and folds
//! them in only when a durable checkpoint covers them (so the catalog never describes bytes
//! past the checkpoint); `summarize` rebuilds the same summary by reading a file. The planner
//! uses `transaction_starts` to find the exact position of a GTID or a time inside one file.
//! Pure code on bytes: no I/O beyond the `Read` it is handed, never a panic on bad input.

use std::fmt;
use std::io::{self, Read};

use crate::binlog::Flavor;
use crate::binlog::event::{self, EventHeader, Fde, HEADER_LEN, MAGIC, types};
use crate::binlog::gtid::{GtidParseError, GtidSet, MariadbGtid, MariadbGtidState, Uuid};

/// One GTID of either flavor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gtid {
    Mysql { uuid: Uuid, tag: String, gno: u64 },
    Mariadb(MariadbGtid),
}

impl Gtid {
    /// `uuid:gno` or `uuid:tag:gno` (MySQL), `domain-server-seq` (MariaDB).
    pub fn parse(flavor: Flavor, text: &str) -> Result<Gtid, GtidParseError> {
        let text = text.trim();
        match flavor {
            Flavor::Mariadb => {
                let state = MariadbGtidState::parse(text)?;
                let mut it = state.iter();
                match (it.next(), it.next()) {
                    (Some(g), None) => Ok(Gtid::Mariadb(*g)),
                    _ => Err(GtidParseError(format!("{text:?} is not one domain-server-seq GTID"))),
                }
            }
            Flavor::Mysql => {
                let parts: Vec<&str> = text.split(':').collect();
                let (uuid, tag, gno) = match parts.as_slice() {
                    [u, n] => (u, "", n),
                    [u, t, n] => (u, *t, n),
                    _ => return Err(GtidParseError(format!("{text:?} is not uuid[:tag]:number"))),
                };
                let gno = gno
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| GtidParseError(format!("bad transaction number in {text:?}")))?;
                Ok(Gtid::Mysql { uuid: Uuid::parse(uuid)?, tag: tag.to_string(), gno })
            }
        }
    }
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gtid::Mysql { uuid, tag, gno } if tag.is_empty() => write!(f, "{uuid}:{gno}"),
            Gtid::Mysql { uuid, tag, gno } => write!(f, "{uuid}:{tag}:{gno}"),
            Gtid::Mariadb(g) => g.fmt(f),
        }
    }
}

/// The catalog facts of one file, as far as `summary_pos`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    /// Earliest and latest event timestamp (Unix seconds) of the events held.
    pub first_event_at: Option<u32>,
    pub last_event_at: Option<u32>,
    pub first_gtid: Option<String>,
    pub last_gtid: Option<String>,
    /// The GTID state before the file's first transaction, and after its last one.
    pub gtid_start: Option<String>,
    pub gtid_end: Option<String>,
    /// MySQL: the GTIDs of the file's transactions. None for MariaDB (see first/last).
    pub gtid_added: Option<String>,
    /// Source position up to which this summary describes the file (0: not summarised).
    pub summary_pos: u64,
}

/// What one event contributes to a summary.
#[derive(Debug, Clone)]
struct Fact {
    end: u64,
    min_ts: u32,
    max_ts: u32,
    gtid: Option<Gtid>,
    /// The state a PREVIOUS_GTIDS / GTID_LIST header event announces.
    state: Option<String>,
}

/// Builds a file's summary from the events the writer appends; only checkpointed events count.
#[derive(Debug, Clone)]
pub struct SummaryBuilder {
    durable: FileSummary,
    added: GtidSet,
    has_crc: bool,
    /// Events appended after the last checkpoint (at most a partial transaction, merged).
    pending: Vec<Fact>,
}

impl SummaryBuilder {
    /// A new file: `header` is what precedes the first appended event after the magic (empty
    /// for a file fetched from its start, the FDE for one joined mid-way); `start_state` is the
    /// GTID state where the file begins, when the caller knows it.
    pub fn new(header: &[u8], start_state: Option<String>) -> Self {
        let mut b = SummaryBuilder {
            durable: FileSummary { gtid_start: start_state, ..Default::default() },
            added: GtidSet::new(),
            has_crc: true,
            pending: Vec::new(),
        };
        let mut rest = header;
        while rest.len() >= HEADER_LEN {
            let size = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
            if size < HEADER_LEN || size > rest.len() {
                break;
            }
            if rest[4] == types::FORMAT_DESCRIPTION
                && let Ok(fde) = Fde::parse(&rest[..size])
            {
                b.has_crc = fde.checksum.has_crc();
            }
            rest = &rest[size..];
        }
        b
    }

    /// Resumes from a stored summary (an open file after a restart).
    pub fn resume(summary: FileSummary, has_crc: bool) -> Self {
        let added = summary.gtid_added.as_deref().and_then(|s| GtidSet::parse(s).ok()).unwrap_or_default();
        SummaryBuilder { durable: summary, added, has_crc, pending: Vec::new() }
    }

    /// Whether this builder reads checksummed events (from the file's FDE).
    pub fn has_crc(&self) -> bool {
        self.has_crc
    }

    /// Whole events, as appended; the last one ends at source position `end_pos`.
    pub fn on_events(&mut self, bytes: &[u8], end_pos: u64) {
        // The size of the whole event at `at`, if one is there.
        let whole_at = |at: usize| {
            let rest = &bytes[at..];
            let size = (rest.len() >= HEADER_LEN)
                .then(|| u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize)?;
            (HEADER_LEN..=rest.len()).contains(&size).then_some(size)
        };
        // Two walks instead of a list of sizes: a catch-up batch holds thousands of events.
        let mut total = 0usize;
        while let Some(size) = whole_at(total) {
            total += size;
        }
        let mut end = end_pos.saturating_sub(total as u64);
        let mut at = 0usize;
        while at < total {
            let size = whole_at(at).expect("the first walk found a whole event here");
            end += size as u64;
            self.on_event(&bytes[at..at + size], end);
            at += size;
        }
    }

    fn on_event(&mut self, ev: &[u8], end: u64) {
        if let Some(fact) = fact(ev, end, &mut self.has_crc) {
            match self.pending.last_mut() {
                Some(last)
                    if last.gtid.is_none() && last.state.is_none() && fact.gtid.is_none() && fact.state.is_none() =>
                {
                    last.end = fact.end;
                    if fact.min_ts != 0 {
                        last.min_ts = if last.min_ts == 0 { fact.min_ts } else { last.min_ts.min(fact.min_ts) };
                    }
                    last.max_ts = last.max_ts.max(fact.max_ts);
                }
                _ => self.pending.push(fact),
            }
        }
    }

    /// The events appended so far become the file's header: transactions before the next one
    /// were skipped by the source, so nothing about them may be claimed, except the GTID state
    /// `gtid_start` that covers them (the state a GTID dump was asked to start from), when known.
    pub fn rebase(&mut self, gtid_start: Option<String>) {
        self.pending.clear();
        self.added = GtidSet::new();
        self.durable = FileSummary { gtid_start, ..FileSummary::default() };
    }

    /// A durable checkpoint at `pos` with GTID state `gtid_state`: the events it covers count.
    pub fn commit(&mut self, pos: u64, gtid_state: Option<&str>) {
        let n = self.pending.iter().take_while(|f| f.end <= pos).count();
        // A checkpoint after a catch-up batch covers thousands of transactions: only the first
        // and the last GTID become text (and the MySQL set once), not every one in between.
        let mut last = None;
        let mut added = false;
        for f in self.pending.drain(..n) {
            let d = &mut self.durable;
            if f.min_ts != 0 {
                d.first_event_at = Some(d.first_event_at.map_or(f.min_ts, |t| t.min(f.min_ts)));
            }
            if f.max_ts != 0 {
                d.last_event_at = Some(d.last_event_at.map_or(f.max_ts, |t| t.max(f.max_ts)));
            }
            if let Some(s) = f.state
                && d.first_gtid.is_none()
            {
                d.gtid_start = Some(s);
            }
            if let Some(g) = f.gtid {
                if let Gtid::Mysql { uuid, tag, gno } = &g {
                    self.added.add(*uuid, tag, *gno);
                    added = true;
                }
                if d.first_gtid.is_none() {
                    d.first_gtid = Some(g.to_string());
                }
                last = Some(g);
            }
        }
        let d = &mut self.durable;
        if added {
            d.gtid_added = Some(self.added.to_string());
        }
        if let Some(g) = last {
            d.last_gtid = Some(g.to_string());
        }
        if let Some(state) = gtid_state {
            if d.gtid_start.is_none() && d.first_gtid.is_none() {
                d.gtid_start = Some(state.to_string());
            }
            d.gtid_end = Some(state.to_string());
        }
        d.summary_pos = d.summary_pos.max(pos);
    }

    /// The summary as of the last commit.
    pub fn summary(&self) -> &FileSummary {
        &self.durable
    }
}

fn fact(ev: &[u8], end: u64, has_crc: &mut bool) -> Option<Fact> {
    let h = EventHeader::parse(ev).ok()?;
    let mut f = Fact { end, min_ts: h.timestamp, max_ts: h.timestamp, gtid: None, state: None };
    match h.type_code {
        types::FORMAT_DESCRIPTION => {
            if let Ok(fde) = Fde::parse(ev) {
                *has_crc = fde.checksum.has_crc();
            }
        }
        types::GTID => {
            if let Ok((uuid, gno)) = event::parse_mysql_gtid(ev, *has_crc) {
                f.gtid = Some(Gtid::Mysql { uuid, tag: String::new(), gno });
            }
        }
        types::GTID_TAGGED => {
            if let Ok((uuid, tag, gno)) = event::parse_tagged_gtid(ev, *has_crc) {
                f.gtid = Some(Gtid::Mysql { uuid, tag, gno });
            }
        }
        types::MARIA_GTID => {
            if let Ok(g) = event::parse_mariadb_gtid(ev, *has_crc) {
                f.gtid = Some(Gtid::Mariadb(g.gtid));
            }
        }
        types::PREVIOUS_GTIDS => {
            if let Ok(set) = event::parse_previous_gtids(ev, *has_crc) {
                f.state = Some(set.to_string());
            }
        }
        types::MARIA_GTID_LIST => {
            if let Ok(list) = event::parse_mariadb_gtid_list(ev, *has_crc) {
                let mut state = MariadbGtidState::default();
                for g in list {
                    if state.get(g.domain).is_none_or(|cur| g.seq > cur.seq) {
                        state.apply(g);
                    }
                }
                f.state = Some(state.to_string());
            }
        }
        _ => {}
    }
    Some(f)
}

/// Calls `f(local_offset, event)` for each complete event of a binlog file read from `r`,
/// magic included; stops quietly at a torn tail or when `f` returns false.
pub fn for_each_event(mut r: impl Read, mut f: impl FnMut(u64, &[u8]) -> bool) -> io::Result<()> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a binlog file (no magic)"));
    }
    let mut offset = 4u64;
    let mut buf = vec![0u8; HEADER_LEN];
    loop {
        buf.resize(HEADER_LEN, 0);
        match read_full(&mut r, &mut buf)? {
            0 => return Ok(()),
            n if n < HEADER_LEN => return Ok(()),
            _ => {}
        }
        let size = u32::from_le_bytes([buf[9], buf[10], buf[11], buf[12]]) as usize;
        if size < HEADER_LEN {
            return Ok(());
        }
        buf.resize(size, 0);
        if read_full(&mut r, &mut buf[HEADER_LEN..])? < size - HEADER_LEN {
            return Ok(());
        }
        if !f(offset, &buf) {
            return Ok(());
        }
        offset += size as u64;
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Rebuilds a file's summary from its bytes: `start_pos`/`header_len` map source positions to
/// offsets as in the catalog; `limit` is the number of local bytes that count (the durable
/// size). `gtid_before` is the state where the file begins when the file does not say.
pub fn summarize(
    r: impl Read,
    start_pos: u64,
    header_len: u64,
    limit: u64,
    gtid_before: Option<String>,
) -> io::Result<FileSummary> {
    rebuild(r, start_pos, header_len, limit, gtid_before).map(|b| b.durable)
}

/// `summarize`, returning a builder that can go on with appends after `limit`.
pub fn rebuild(
    r: impl Read,
    start_pos: u64,
    header_len: u64,
    limit: u64,
    gtid_before: Option<String>,
) -> io::Result<SummaryBuilder> {
    let mut b = SummaryBuilder::new(&[], gtid_before);
    let to_pos = |off: u64| super::source_pos(start_pos, header_len, off);
    let mut end = None;
    for_each_event(r, |off, ev| {
        let stop = off + ev.len() as u64;
        if stop > limit {
            return false;
        }
        if off < header_len && start_pos > 4 {
            // Header of a file joined mid-way: only its FDE matters (checksums).
            let _ = fact(ev, 0, &mut b.has_crc);
            return true;
        }
        b.on_event(ev, to_pos(stop));
        end = Some(to_pos(stop));
        true
    })?;
    // Everything durable is complete transactions: the whole of it counts.
    let end = end.unwrap_or(start_pos.max(4));
    let state = derive_end_state(&b);
    b.commit(end, state.as_deref());
    Ok(b)
}

/// The GTID state after the pending events: the start state plus the GTIDs seen.
fn derive_end_state(b: &SummaryBuilder) -> Option<String> {
    let start = b.pending.iter().find_map(|f| f.state.clone()).or_else(|| b.durable.gtid_start.clone());
    let gtids: Vec<&Gtid> = b.pending.iter().filter_map(|f| f.gtid.as_ref()).collect();
    if start.is_none() && gtids.is_empty() {
        return None;
    }
    let mysql = gtids.iter().any(|g| matches!(g, Gtid::Mysql { .. }));
    let start = start.unwrap_or_default();
    if mysql || (gtids.is_empty() && start.contains(':')) {
        let mut set = GtidSet::parse(&start).ok()?;
        for g in gtids {
            if let Gtid::Mysql { uuid, tag, gno } = g {
                set.add(*uuid, tag, *gno);
            }
        }
        Some(set.to_string())
    } else {
        let mut state = MariadbGtidState::parse(&start).ok()?;
        for g in gtids {
            if let Gtid::Mariadb(g) = g {
                state.apply(*g);
            }
        }
        Some(state.to_string())
    }
}

/// Where a transaction (or a statement outside one) begins in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnStart {
    /// Local offset of its first event (its GTID event, when it has one).
    pub offset: u64,
    pub timestamp: u32,
    pub gtid: Option<Gtid>,
}

/// The starts of the GTID-carrying transactions of a file, in order, and the local offset
/// where the complete events end (at most `limit`).
pub fn transaction_starts(r: impl Read, limit: u64) -> io::Result<(Vec<TxnStart>, u64)> {
    let mut has_crc = true;
    let mut out = Vec::new();
    let mut end = 4u64;
    for_each_event(r, |off, ev| {
        if off + ev.len() as u64 > limit {
            return false;
        }
        end = off + ev.len() as u64;
        if let Some(f) = fact(ev, end, &mut has_crc)
            && let Some(g) = f.gtid
        {
            out.push(TxnStart { offset: off, timestamp: f.min_ts, gtid: Some(g) });
        }
        true
    })?;
    Ok((out, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::fixture;

    #[test]
    fn gtid_text_round_trips() {
        let m = Gtid::parse(Flavor::Mariadb, "0-1-42").unwrap();
        assert_eq!(m.to_string(), "0-1-42");
        assert!(Gtid::parse(Flavor::Mariadb, "0-1-42,1-1-3").is_err());
        let u = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert_eq!(Gtid::parse(Flavor::Mysql, &format!("{u}:7")).unwrap().to_string(), format!("{u}:7"));
        assert_eq!(Gtid::parse(Flavor::Mysql, &format!("{u}:tg:7")).unwrap().to_string(), format!("{u}:tg:7"));
        assert!(Gtid::parse(Flavor::Mysql, &format!("{u}:0")).is_err());
        assert!(Gtid::parse(Flavor::Mysql, "nope:1").is_err());
    }

    /// Feeding a real file event by event with a checkpoint at the end equals reading it.
    #[test]
    fn builder_and_rebuild_agree_on_real_files() {
        for name in
            ["mariadb-bin.000001", "binlog_transaction_with_GTID.000001", "binlog_transaction_with_GTID_TAG.000001"]
        {
            let Ok(data) = std::fs::read(crate::binlog::fixture_dir().join(name)) else { continue };
            let rebuilt = summarize(&data[..], 4, 4, data.len() as u64, None).unwrap();
            let mut b = SummaryBuilder::new(&[], None);
            let mut last_end = 4;
            for_each_event(&data[..], |off, ev| {
                last_end = off + ev.len() as u64;
                b.on_events(ev, last_end);
                true
            })
            .unwrap();
            b.commit(last_end, rebuilt.gtid_end.as_deref());
            assert_eq!(b.summary(), &rebuilt, "{name}");
            assert!(rebuilt.first_event_at.is_some() && rebuilt.last_event_at >= rebuilt.first_event_at, "{name}");
            assert_eq!(rebuilt.summary_pos, data.len() as u64, "{name}");
        }
        let _ = fixture("mariadb-bin.000001");
    }

    /// One checkpoint over many transactions (a catch-up batch) says what a checkpoint after
    /// every event says: the first and last GTID, the MySQL set, times and states.
    #[test]
    fn one_commit_over_many_transactions_equals_a_commit_per_event() {
        let mut multi = 0;
        for name in
            ["mariadb-bin.000001", "binlog_transaction_with_GTID.000001", "binlog_transaction_with_GTID_TAG.000001"]
        {
            let Ok(data) = std::fs::read(crate::binlog::fixture_dir().join(name)) else { continue };
            let (mut once, mut each) = (SummaryBuilder::new(&[], None), SummaryBuilder::new(&[], None));
            let (mut last_end, mut gtids) = (4, 0);
            for_each_event(&data[..], |off, ev| {
                last_end = off + ev.len() as u64;
                gtids += usize::from(matches!(ev[4], types::GTID | types::GTID_TAGGED | types::MARIA_GTID));
                once.on_events(ev, last_end);
                each.on_events(ev, last_end);
                each.commit(last_end, None);
                true
            })
            .unwrap();
            once.commit(last_end, Some("state"));
            each.commit(last_end, Some("state"));
            if gtids > 1 {
                multi += 1;
                assert_ne!(once.summary().first_gtid, once.summary().last_gtid, "{name}");
            }
            assert_eq!(once.summary(), each.summary(), "{name}");
        }
        assert!(multi > 0, "no fixture with several transactions found");
    }

    /// Events past the checkpoint are not claimed; they count once a checkpoint covers them.
    #[test]
    fn only_checkpointed_events_count() {
        let data = fixture("mariadb-bin.000001");
        let mut events = Vec::new();
        for_each_event(&data[..], |off, ev| {
            events.push((off, ev.to_vec()));
            true
        })
        .unwrap();
        let gtid_at = events.iter().position(|(_, e)| e[4] == types::MARIA_GTID).expect("a GTID event");
        let mut b = SummaryBuilder::new(&[], None);
        for (off, ev) in &events[..=gtid_at] {
            b.on_events(ev, off + ev.len() as u64);
        }
        let before = events[gtid_at].0;
        b.commit(before, Some("0-1-0"));
        assert_eq!(b.summary().first_gtid, None, "the GTID event lies past the checkpoint");
        assert_eq!(b.summary().summary_pos, before);
        let after = events[gtid_at].0 + events[gtid_at].1.len() as u64;
        b.commit(after, None);
        assert!(b.summary().first_gtid.is_some());
        b.rebase(None);
        assert_eq!(b.summary(), &FileSummary::default());
        // A rebase where the GTID state is known keeps it as the state the file begins with,
        // also once the first transaction after it is checkpointed.
        for (off, ev) in &events[..=gtid_at] {
            b.on_events(ev, off + ev.len() as u64);
        }
        b.rebase(Some("0-1-7".into()));
        for (off, ev) in &events[gtid_at..] {
            b.on_events(ev, off + ev.len() as u64);
        }
        b.commit(data.len() as u64, Some("0-1-8"));
        assert_eq!(b.summary().gtid_start.as_deref(), Some("0-1-7"));
        assert!(b.summary().first_gtid.is_some());
    }

    #[test]
    fn transaction_starts_find_each_gtid() {
        let data = fixture("mariadb-bin.000001");
        let (starts, end) = transaction_starts(&data[..], data.len() as u64).unwrap();
        assert_eq!(end, data.len() as u64);
        let n = {
            let mut n = 0;
            for_each_event(&data[..], |_, ev| {
                n += usize::from(ev[4] == types::MARIA_GTID);
                true
            })
            .unwrap();
            n
        };
        assert_eq!(starts.len(), n);
        for s in &starts {
            assert_eq!(data[s.offset as usize + 4], types::MARIA_GTID);
        }
        // A limit inside the file stops before the torn part.
        let (fewer, end2) = transaction_starts(&data[..], data.len() as u64 - 1).unwrap();
        assert!(end2 < end && fewer.len() <= starts.len());
    }

    #[test]
    fn garbage_is_an_error_or_nothing_never_a_panic() {
        assert!(summarize(&b"nope"[..], 4, 4, 4, None).is_err());
        let mut junk = MAGIC.to_vec();
        junk.extend_from_slice(&[0xff; 40]);
        let s = summarize(&junk[..], 4, 4, junk.len() as u64, None).unwrap();
        assert_eq!(s.first_event_at, None);
        let mut b = SummaryBuilder::new(&[1, 2, 3], None);
        b.on_events(&[0u8; 30], 100);
        b.commit(100, None);
    }
}
