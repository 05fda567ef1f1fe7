//! How a batch's bytes are hashed, and the sha256 of a large batch's bytes computed on a thread
//! of its own while the writer's thread copies the same bytes out and waits for the disk.
//!
//! The task records each sealed file's digest before the file enters the upload queue. Where it
//! comes from is [`hashing`]'s decision, per batch:
//! - a small batch (streaming) is hashed inline, as it is written: its digest costs less than a
//!   thread, and the file needs no read-back at sealing;
//! - a large batch (a catch-up's) written through the page cache (the default) is not hashed
//!   here: the task reads each file it seals back after sealing, from the page cache, off the
//!   writer's turn. Hashing it on the write path, even on a thread of its own, cost bulk
//!   catch-up 15-20% of its speed on a 2-core machine with a fast page cache, and nothing
//!   measurable on a slower one (docs/performance.md, 2026-12-06, seventh and eighth sessions):
//!   where the writer's turn bounds a catch-up, the digest competes with it for the cores, while
//!   the read-back waits until the file is durable;
//! - a large batch written with O_DIRECT (`writer.direct_io`) is hashed on a thread of its own
//!   ([`HashJobs`]): a read-back would come from the disk. The thread reads the batch's own
//!   buffers (`Bytes`, shared, not copied) in the batch's order, and hands over the digest of
//!   each file the batch seals, in order; the writer asks for one only after it has synced and
//!   recorded that file.
//!
//! What is hashed is decided by the ops alone, so every way gives the same digests (the unit
//! test writes the same batches each way and compares them with the files on disk).

use super::*;
use std::sync::mpsc::{Receiver, Sender};

use bytes::Bytes;

/// Batches appending fewer bytes are hashed inline.
pub(super) const HASH_APART_MIN: usize = 1 << 20;

/// How a batch's bytes are hashed (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hashing {
    /// As they are written, on the writer's thread.
    Inline,
    /// On a thread of their own, beside the writer's ([`HashJobs`]).
    Apart,
    /// Not by the writer: the task reads each file the batch seals back after sealing (as it does
    /// a file the writer resumed). The open file's digest so far is dropped.
    AfterSealing,
}

/// How a batch is hashed: inline when it appends fewer than `min` bytes (streaming); a larger one
/// on a thread of its own when the writer bypasses the page cache (`direct`: a read-back would
/// come from the disk), else after sealing, read back from the page cache.
pub(super) fn hashing(ops: &[WriteOp], min: usize, direct: bool) -> Hashing {
    match (appended(ops) >= min.max(1), direct) {
        (false, _) => Hashing::Inline,
        (true, true) => Hashing::Apart,
        (true, false) => Hashing::AfterSealing,
    }
}

/// Where the digests of the batch being written come from.
#[derive(Debug, Default)]
pub(super) enum BatchDigests {
    /// The open file's own hasher, fed as the bytes are written.
    #[default]
    Inline,
    /// The hashing thread's, one per file the batch seals, in order.
    Apart(Receiver<Option<String>>),
    /// None: the task reads the files the batch seals back.
    AfterSealing,
}

fn appended(ops: &[WriteOp]) -> usize {
    ops.iter().map(|op| if let WriteOp::Append { bytes, .. } = op { bytes.len() } else { 0 }).sum()
}

/// What the hashing thread does, in the batch's order.
#[derive(Debug, PartialEq, Eq)]
enum Job {
    /// A file is created: its digest starts with its magic and header.
    Start(Vec<u8>),
    Update(Bytes),
    /// The file is sealed: its digest is handed over.
    Finish,
}

pub(super) struct HashJobs(Vec<Job>);

impl HashJobs {
    /// The jobs of a batch's ops: the bytes of every `Create` and `Append`, and a digest for
    /// every `Seal`.
    pub(super) fn of(ops: &[WriteOp]) -> HashJobs {
        let jobs = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Create { header, .. } => Some(Job::Start([&MAGIC[..], header].concat())),
                WriteOp::Append { bytes, .. } => Some(Job::Update(bytes.clone())),
                WriteOp::Seal { .. } => Some(Job::Finish),
                WriteOp::Rebase { .. } => None,
            })
            .collect();
        HashJobs(jobs)
    }

    /// Runs the jobs from `current` (the open file's digest so far; `None` when the writer did
    /// not hash that file from its start, a resumed one), sends each sealed file's digest (hex;
    /// `None` for a file not hashed from its start), and returns the open file's digest so far.
    pub(super) fn run(self, mut current: Option<Sha256>, sealed: Sender<Option<String>>) -> Option<Sha256> {
        for job in self.0 {
            match job {
                Job::Start(head) => current = Some(Sha256::new_with_prefix(&head)),
                Job::Update(bytes) => {
                    if let Some(h) = current.as_mut() {
                        h.update(&bytes);
                    }
                }
                Job::Finish => {
                    // The writer stopped listening (its batch failed): nothing more is wanted.
                    if sealed.send(current.take().map(|h| hex::encode(h.finalize()))).is_err() {
                        return None;
                    }
                }
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> BinlogFileName {
        BinlogFileName::parse(n).expect("name")
    }

    fn append(b: &'static [u8]) -> WriteOp {
        WriteOp::Append { bytes: Bytes::from_static(b), end_pos: 0 }
    }

    #[test]
    fn a_large_batch_is_hashed_apart_with_o_direct_and_after_sealing_through_the_page_cache() {
        use Hashing::*;
        let ops = [append(&[1; 600]), WriteOp::Seal { end_pos: 0, gtid: None }, append(&[2; 400])];
        // (threshold, O_DIRECT, how): the batch appends 1,000 bytes.
        let table = [
            (0, false, AfterSealing),
            (0, true, Apart),
            (1, false, AfterSealing),
            (999, true, Apart),
            (1000, false, AfterSealing),
            (1000, true, Apart),
            (1001, false, Inline),
            (1001, true, Inline),
            (usize::MAX, false, Inline),
            (usize::MAX, true, Inline),
        ];
        for (min, direct, how) in table {
            assert_eq!(hashing(&ops, min, direct), how, "threshold {min}, O_DIRECT {direct}");
        }
        for direct in [false, true] {
            let seal_only = [WriteOp::Seal { end_pos: 0, gtid: None }];
            assert_eq!(hashing(&seal_only, 0, direct), Inline, "nothing appended, nothing to hash apart");
        }
    }

    #[test]
    fn the_jobs_follow_the_ops_and_skip_a_rebase() {
        let ops = [
            append(b"ab"),
            WriteOp::Seal { end_pos: 0, gtid: None },
            WriteOp::Create { name: name("bin.000002"), start_pos: 4, header: Bytes::from_static(b"H") },
            WriteOp::Rebase { start_pos: 9, gtid: None },
            append(b"cd"),
        ];
        let jobs = HashJobs::of(&ops).0;
        let head = [&MAGIC[..], b"H"].concat();
        assert_eq!(
            jobs,
            vec![
                Job::Update(Bytes::from_static(b"ab")),
                Job::Finish,
                Job::Start(head),
                Job::Update(Bytes::from_static(b"cd")),
            ]
        );
    }

    #[test]
    fn digests_are_those_of_the_bytes_in_order_and_none_for_a_file_not_hashed_from_its_start() {
        let ops = [
            append(b"tail"),
            WriteOp::Seal { end_pos: 0, gtid: None },
            WriteOp::Create { name: name("bin.000002"), start_pos: 4, header: Bytes::from_static(b"H") },
            append(b"one"),
            append(b"two"),
            WriteOp::Seal { end_pos: 0, gtid: None },
            WriteOp::Create { name: name("bin.000003"), start_pos: 4, header: Bytes::new() },
            append(b"open"),
        ];
        let hex_of = |parts: &[&[u8]]| {
            let mut h = Sha256::new();
            parts.iter().for_each(|p| h.update(p));
            hex::encode(h.finalize())
        };
        // The open file was hashed from its start ("head" so far), or not (a resumed file).
        for (start, first) in
            [(Some(Sha256::new_with_prefix(b"head")), Some(hex_of(&[b"head", b"tail"]))), (None, None)]
        {
            let (tx, rx) = std::sync::mpsc::channel();
            let left = HashJobs::of(&ops).run(start, tx);
            let sent: Vec<Option<String>> = rx.iter().collect();
            assert_eq!(sent, vec![first, Some(hex_of(&[&MAGIC[..], b"H", b"one", b"two"]))]);
            assert_eq!(left.map(|h| hex::encode(h.finalize())), Some(hex_of(&[&MAGIC[..], b"open"])));
        }
    }
}
