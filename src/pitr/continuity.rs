//! Across a GTID switchover: does the new source's stream continue the old one's, with nothing
//! lost? The window and the planner ask the same question at every place where the catalog
//! moves from one source identity to another.
//!
//! The facts are GTID states and transactions: the state the old source's files reach
//! (`reached`), the state the new source's first held file begins with (`resumes`), and the
//! transactions of both sides around the junction. `judge` is the pure decision (table-tested);
//! `examine` gathers the facts from the catalog, reading files through a `TxnReader` only when
//! the states alone cannot decide (a MariaDB stream that does not resume exactly where the old
//! one stopped). Neither writes anything.

use std::fmt;

use crate::binlog::gtid::{GtidSet, MariadbGtid, MariadbGtidState};
use crate::binlog::summary::Gtid;
use crate::domain::Flavor;
use crate::pitr::{CatalogFile, TxnReader};

/// A GTID state of one flavor, for "is this transaction already in it" questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Mysql(GtidSet),
    Mariadb(MariadbGtidState),
}

impl State {
    pub fn parse(flavor: Flavor, text: &str) -> Option<State> {
        match flavor {
            Flavor::Mysql => GtidSet::parse(text).ok().map(State::Mysql),
            Flavor::Mariadb => MariadbGtidState::parse(text).ok().map(State::Mariadb),
        }
    }

    /// The state a catalog column holds (`gtid_start`, `gtid_end`), when known.
    pub fn held(flavor: Flavor, text: &Option<String>) -> Option<State> {
        text.as_deref().and_then(|t| State::parse(flavor, t))
    }

    /// Whether transaction `g` is in this state (MariaDB: at or before its domain's position).
    pub fn contains(&self, g: &Gtid) -> bool {
        match (self, g) {
            (State::Mysql(s), Gtid::Mysql { uuid, tag, gno }) => s.contains(uuid, tag, *gno),
            (State::Mariadb(s), Gtid::Mariadb(g)) => s.covers(g),
            _ => false,
        }
    }

    /// Whether every transaction of `other` is in `self`.
    pub fn covers(&self, other: &State) -> bool {
        match (self, other) {
            (State::Mysql(a), State::Mysql(b)) => b.is_subset(a),
            (State::Mariadb(a), State::Mariadb(b)) => a.includes(b),
            _ => false,
        }
    }

    /// Adds what `other` has and `self` lacks: MySQL, the union; MariaDB, the positions of
    /// domains `self` has none in (a domain's own position is never moved).
    pub fn absorb(&mut self, other: &State) {
        match (self, other) {
            (State::Mysql(a), State::Mysql(b)) => a.union_with(b),
            (State::Mariadb(a), State::Mariadb(b)) => {
                for g in b.iter() {
                    if a.get(g.domain).is_none() {
                        a.apply(*g);
                    }
                }
            }
            _ => {}
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Mysql(s) => s.fmt(f),
            State::Mariadb(s) => s.fmt(f),
        }
    }
}

/// The facts around one switchover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    Mysql {
        /// What a replay has executed when the old source's files end.
        reached: GtidSet,
        /// The state the new source's first held file begins with (its history before it).
        resumes: GtidSet,
        /// Every transaction in the new source's held files.
        new_txns: GtidSet,
    },
    Mariadb {
        reached: MariadbGtidState,
        resumes: MariadbGtidState,
        /// The new source's transactions in stream order from its first held file on, as far
        /// as they were read (far enough to pass `reached` in every domain, or all of them).
        new_txns: Vec<MariadbGtid>,
        /// The old source's held transactions in stream order, at least those after
        /// `resumes` (they are what the new source may lack).
        old_txns: Vec<MariadbGtid>,
    },
}

/// What the evidence shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing lost: the new source's history holds everything a replay of the old source's
    /// files has applied, and the archive holds what the new source had before its first held
    /// transaction. With `repeats`, the new source's files begin with copies of transactions
    /// the old source's files hold (a replay skips them).
    Continuous { repeats: bool },
    /// Transactions are missing: `missing` names them (a MySQL GTID set; MariaDB GTIDs and
    /// ranges), `detail` says which side lacks which.
    Lost { missing: String, detail: String },
}

/// The continuity decision.
///
/// MySQL: the new source lacks `reached - (resumes + new_txns)`; the archive lacks
/// `resumes - reached` (transactions the new source had before the first file we hold from it).
/// MariaDB, per domain of `reached` (a domain's history is one line, as `gtid_strict_mode`
/// keeps it): the new source must resume exactly at `reached`'s GTID, or before it with that
/// very GTID in its stream; otherwise the old source's transactions after `resumes` that the
/// new stream lacks are lost. A domain the new source resumes past `reached` in, or that only
/// the new source has, holds transactions the archive lacks.
pub fn judge(e: &Evidence) -> Verdict {
    match e {
        Evidence::Mysql { reached, resumes, new_txns } => {
            let mut history = resumes.clone();
            history.union_with(new_txns);
            let lacks = reached.difference(&history);
            let unheld = resumes.difference(reached);
            if lacks.is_empty() && unheld.is_empty() {
                return Verdict::Continuous { repeats: !reached.intersection(new_txns).is_empty() };
            }
            let mut missing = lacks.clone();
            missing.union_with(&unheld);
            Verdict::Lost { missing: missing.to_string(), detail: explain(&lacks.to_string(), &unheld.to_string()) }
        }
        Evidence::Mariadb { reached, resumes, new_txns, old_txns } => {
            let mut repeats = false;
            let mut lacks: Vec<MariadbGtid> = Vec::new();
            let mut lacks_unnamed: Vec<String> = Vec::new();
            let mut unheld: Vec<String> = Vec::new();
            for e in reached.iter() {
                let s = resumes.get(e.domain);
                if s == Some(e) {
                    continue;
                }
                if let Some(s) = s.filter(|s| s.seq > e.seq) {
                    unheld.push(format!("after {e} up to {s}"));
                    continue;
                }
                if new_txns.contains(e) {
                    repeats = true;
                    continue;
                }
                let after = s.map_or(0, |s| s.seq);
                let lost: Vec<MariadbGtid> = old_txns
                    .iter()
                    .filter(|g| g.domain == e.domain && g.seq > after && !new_txns.contains(g))
                    .copied()
                    .collect();
                if lost.is_empty() {
                    lacks_unnamed.push(match s {
                        Some(s) => format!("after {s} up to {e}"),
                        None => format!("up to {e}"),
                    });
                } else {
                    lacks.extend(lost);
                }
            }
            for s in resumes.iter().filter(|s| reached.get(s.domain).is_none()) {
                unheld.push(format!("up to {s}"));
            }
            if lacks.is_empty() && lacks_unnamed.is_empty() && unheld.is_empty() {
                return Verdict::Continuous { repeats };
            }
            let mut named = runs(&lacks);
            named.extend(lacks_unnamed);
            let lacks_text = named.join(", ");
            let unheld_text = unheld.join(", ");
            let missing = [lacks_text.as_str(), unheld_text.as_str()]
                .into_iter()
                .filter(|t| !t.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
            Verdict::Lost { missing, detail: explain(&lacks_text, &unheld_text) }
        }
    }
}

fn explain(lacks: &str, unheld: &str) -> String {
    let mut parts = Vec::new();
    if !lacks.is_empty() {
        parts.push(format!(
            "the new source lacks {lacks}, which the old source's files hold (transactions lost in the failover)"
        ));
    }
    if !unheld.is_empty() {
        parts.push(format!(
            "the archive lacks {unheld}, which the new source executed before the first file held from it"
        ));
    }
    parts.join("; ")
}

/// MariaDB GTIDs as runs: `0-1-16..0-1-20, 0-2-25` (consecutive sequence numbers of one domain
/// and server make one run).
fn runs(gtids: &[MariadbGtid]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < gtids.len() {
        let first = gtids[i];
        let mut last = first;
        while let Some(next) = gtids.get(i + 1)
            && next.domain == last.domain
            && next.server_id == last.server_id
            && next.seq == last.seq + 1
        {
            last = *next;
            i += 1;
        }
        out.push(if first == last { first.to_string() } else { format!("{first}..{last}") });
        i += 1;
    }
    out
}

/// Gathers the evidence at the switchover where `files[junction]` (the new source's first held
/// file) follows `files[junction - 1]`, and judges it. `reached` is the state a replay has
/// there. Errors say why nothing can be decided (an unknown state, an unreadable file): the
/// caller treats that as a break.
pub fn examine(
    flavor: Flavor,
    files: &[&CatalogFile],
    junction: usize,
    reached: &State,
    reader: &dyn TxnReader,
) -> Result<Verdict, String> {
    let new_first = files[junction];
    let identity = |i: usize| files[i].record.source_identity.as_str();
    let resumes = State::held(flavor, &new_first.record.summary.gtid_start).ok_or_else(|| {
        format!(
            "the GTID state where {} of {} begins is unknown",
            new_first.record.file_name, new_first.record.source_identity
        )
    })?;
    let new_end = (junction..files.len()).find(|&i| identity(i) != identity(junction)).unwrap_or(files.len());
    let old_start = (0..junction).rev().find(|&i| identity(i) != identity(junction - 1)).map_or(0, |i| i + 1);
    let read = |f: &CatalogFile| {
        reader.starts(f).map_err(|e| format!("cannot read {} of {}: {e}", f.record.file_name, f.record.source_identity))
    };
    let evidence = match (reached, resumes) {
        (State::Mysql(reached), State::Mysql(resumes)) => {
            let mut new_txns = GtidSet::new();
            for f in &files[junction..new_end] {
                if let Some(added) = f.record.summary.gtid_added.as_deref().and_then(|t| GtidSet::parse(t).ok()) {
                    new_txns.union_with(&added);
                }
            }
            Evidence::Mysql { reached: reached.clone(), resumes, new_txns }
        }
        (State::Mariadb(reached), State::Mariadb(resumes)) => {
            if *reached == resumes {
                // Resumed exactly where the old source's files end: nothing to read.
                return Ok(Verdict::Continuous { repeats: false });
            }
            let seq_in = |state: &Option<String>, d: u32| match State::held(flavor, state) {
                Some(State::Mariadb(s)) => s.get(d).map_or(0, |g| g.seq),
                _ => 0,
            };
            // New side: until every domain of `reached` is found or passed.
            let mut new_txns = Vec::new();
            for f in &files[junction..new_end] {
                let open = reached
                    .iter()
                    .any(|e| !new_txns.contains(e) && seq_in(&f.record.summary.gtid_start, e.domain) < e.seq);
                if !open {
                    break;
                }
                new_txns.extend(read(f)?.into_iter().filter_map(|t| match t.gtid {
                    Some(Gtid::Mariadb(g)) => Some(g),
                    _ => None,
                }));
            }
            // Old side: back from the junction while a file holds transactions after `resumes`.
            let mut old_files = Vec::new();
            for f in files[old_start..junction].iter().rev() {
                let after_resume = reached
                    .iter()
                    .any(|e| seq_in(&f.record.summary.gtid_end, e.domain) > resumes.get(e.domain).map_or(0, |g| g.seq));
                if !after_resume {
                    break;
                }
                old_files.push(*f);
            }
            let mut old_txns = Vec::new();
            for f in old_files.into_iter().rev() {
                old_txns.extend(read(f)?.into_iter().filter_map(|t| match t.gtid {
                    Some(Gtid::Mariadb(g)) => Some(g),
                    _ => None,
                }));
            }
            Evidence::Mariadb { reached: reached.clone(), resumes, new_txns, old_txns }
        }
        _ => return Err("the GTID states at the switchover are of different flavors".into()),
    };
    Ok(judge(&evidence))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(text: &str) -> MariadbGtidState {
        MariadbGtidState::parse(text).unwrap()
    }

    /// `0-1-16..20` style lists in stream order.
    fn seqs(domain: u32, server_id: u32, range: std::ops::RangeInclusive<u64>) -> Vec<MariadbGtid> {
        range.map(|seq| MariadbGtid { domain, server_id, seq }).collect()
    }

    fn maria(reached: &str, resumes: &str, new_txns: Vec<MariadbGtid>, old_txns: Vec<MariadbGtid>) -> Verdict {
        judge(&Evidence::Mariadb { reached: m(reached), resumes: m(resumes), new_txns, old_txns })
    }

    const U1: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
    const U2: &str = "00000000-0000-0000-0000-000000000002";

    fn mysql(reached: &str, resumes: &str, new_txns: &str) -> Verdict {
        let p = |t: &str| GtidSet::parse(&t.replace("U1", U1).replace("U2", U2)).unwrap();
        judge(&Evidence::Mysql { reached: p(reached), resumes: p(resumes), new_txns: p(new_txns) })
    }

    fn lost(missing: &str, detail_has: &[&str]) -> impl Fn(&Verdict) -> bool {
        let missing = missing.replace("U1", U1).replace("U2", U2);
        let detail_has: Vec<String> = detail_has.iter().map(|d| d.replace("U1", U1).replace("U2", U2)).collect();
        move |v| match v {
            Verdict::Lost { missing: got, detail } => {
                *got == missing && detail_has.iter().all(|d| detail.contains(d.as_str()))
            }
            _ => false,
        }
    }

    type Check = Box<dyn Fn(&Verdict) -> bool>;

    #[test]
    fn mariadb_switchovers() {
        let continuous = |repeats| move |v: &Verdict| *v == Verdict::Continuous { repeats };
        let cases: Vec<(&str, Verdict, Check)> = vec![
            (
                "followed by GTID: resumes exactly where the old files end",
                maria("0-1-20", "0-1-20", seqs(0, 2, 21..=30), vec![]),
                Box::new(continuous(false)),
            ),
            (
                "resumes earlier and repeats the old source's transactions (log_slave_updates)",
                maria("0-1-20", "0-1-15", [seqs(0, 1, 16..=20), seqs(0, 2, 21..=25)].concat(), seqs(0, 1, 1..=20)),
                Box::new(continuous(true)),
            ),
            (
                "a replica that was behind: 0-1-16..20 never reached it",
                maria("0-1-20", "0-1-15", seqs(0, 2, 16..=30), seqs(0, 1, 1..=20)),
                Box::new(lost("0-1-16..0-1-20", &["the new source lacks 0-1-16..0-1-20"])),
            ),
            (
                "an empty start on the new source: its own history is all in its files",
                maria("0-1-20", "", [seqs(0, 1, 1..=20), seqs(0, 2, 21..=22)].concat(), vec![]),
                Box::new(continuous(true)),
            ),
            (
                "an empty start, the new source diverged after 0-1-15 (seq reuse: strict mode broken)",
                maria("0-1-20", "", [seqs(0, 1, 1..=15), seqs(0, 2, 16..=22)].concat(), seqs(0, 1, 1..=20)),
                Box::new(lost("0-1-16..0-1-20", &["lacks 0-1-16..0-1-20"])),
            ),
            (
                "the new source resumed past the old files: its 0-2-21..25 are held nowhere",
                maria("0-1-20", "0-2-25", seqs(0, 2, 26..=30), vec![]),
                Box::new(lost("after 0-1-20 up to 0-2-25", &["the archive lacks after 0-1-20 up to 0-2-25"])),
            ),
            (
                "a domain only the new source has",
                maria("0-1-20", "0-1-20,7-9-4", seqs(0, 2, 21..=22), vec![]),
                Box::new(lost("up to 7-9-4", &["the archive lacks up to 7-9-4"])),
            ),
            (
                "a domain the new source never had (a different domain layout)",
                maria("0-1-20,1-3-8", "0-1-20", seqs(0, 2, 21..=22), seqs(1, 3, 1..=8)),
                Box::new(lost("1-3-1..1-3-8", &["lacks 1-3-1..1-3-8"])),
            ),
            (
                "unread old files: the loss is still named as a range",
                maria("0-1-20", "0-1-15", seqs(0, 2, 16..=18), vec![]),
                Box::new(lost("after 0-1-15 up to 0-1-20", &["lacks after 0-1-15 up to 0-1-20"])),
            ),
            (
                "two domains, both repeated",
                maria(
                    "0-1-20,1-1-5",
                    "0-1-18,1-1-4",
                    [seqs(0, 1, 19..=20), seqs(1, 1, 5..=5), seqs(0, 2, 21..=21)].concat(),
                    vec![],
                ),
                Box::new(continuous(true)),
            ),
        ];
        for (what, verdict, check) in cases {
            assert!(check(&verdict), "{what}: {verdict:?}");
        }
    }

    #[test]
    fn mysql_switchovers() {
        let cases: Vec<(&str, Verdict, Check)> = vec![
            (
                "followed by GTID: resumes at the old files' end, new transactions only",
                mysql("U1:1-20", "U1:1-20", "U2:1-10"),
                Box::new(|v| *v == Verdict::Continuous { repeats: false }),
            ),
            (
                "the new primary's file begins earlier and repeats U1:11-20",
                mysql("U1:1-20", "U1:1-10", "U1:11-20,U2:1-10"),
                Box::new(|v| *v == Verdict::Continuous { repeats: true }),
            ),
            (
                "the new primary lacks U1:16-20 (it was behind), and goes on with its own",
                mysql("U1:1-20", "U1:1-15", "U2:1-10"),
                Box::new(lost("U1:16-20", &["the new source lacks U1:16-20"])),
            ),
            (
                "the new primary had U2:1-3 before the first file held from it",
                mysql("U1:1-20", "U1:1-20,U2:1-3", "U2:4-10"),
                Box::new(lost("U2:1-3", &["the archive lacks U2:1-3"])),
            ),
            (
                "both at once",
                mysql("U1:1-20", "U1:1-15,U2:1-3", ""),
                Box::new(lost("U2:1-3,U1:16-20", &["lacks U1:16-20", "archive lacks U2:1-3"])),
            ),
            (
                "a lost transaction that reappears later in the new stream is not lost",
                mysql("U1:1-20", "U1:1-15", "U2:1-4,U1:16-20"),
                Box::new(|v| *v == Verdict::Continuous { repeats: true }),
            ),
        ];
        for (what, verdict, check) in cases {
            assert!(check(&verdict), "{what}: {verdict:?}");
        }
    }

    #[test]
    fn runs_compress_consecutive_gtids() {
        let list = [seqs(0, 1, 3..=5), seqs(0, 2, 6..=6), seqs(0, 2, 8..=9)].concat();
        assert_eq!(runs(&list), ["0-1-3..0-1-5", "0-2-6", "0-2-8..0-2-9"]);
        assert!(runs(&[]).is_empty());
    }

    #[test]
    fn states_contain_cover_and_absorb() {
        let mut a = State::parse(Flavor::Mariadb, "0-1-20").unwrap();
        let b = State::parse(Flavor::Mariadb, "0-2-30,1-1-4").unwrap();
        assert!(!a.covers(&b));
        a.absorb(&b);
        assert_eq!(a.to_string(), "0-1-20,1-1-4", "a domain's own position never moves");
        assert!(a.contains(&Gtid::Mariadb(MariadbGtid { domain: 1, server_id: 1, seq: 3 })));
        let mut x = State::parse(Flavor::Mysql, &format!("{U1}:1-5")).unwrap();
        x.absorb(&State::parse(Flavor::Mysql, &format!("{U1}:7,{U2}:1")).unwrap());
        assert_eq!(x.to_string(), format!("{U2}:1,{U1}:1-5:7"));
        assert!(State::parse(Flavor::Mysql, "0-1-2").is_none());
    }
}
