//! The sha256 of a large batch's bytes, computed on a thread of its own while the writer's thread
//! copies the same bytes out and waits for the disk.
//!
//! The writer records each file's digest at sealing from the bytes it wrote (no read-back). On
//! a catch-up's large batches the digest is a third of the writer's turn per batch (0.6 CPU-s
//! per GiB against the copy, the writes and the fsync), and the writer's turn is what bounds a
//! catch-up (docs/performance.md). A thread per large batch takes the digest off that turn: it
//! reads the batch's own buffers (`Bytes`, shared, not copied) in the batch's order, and hands
//! over the digest of each file the batch seals, in order; the writer asks for one only after
//! it has synced and recorded that file. A small batch (streaming) is hashed inline: a thread
//! would cost more than its bytes' digest.
//!
//! What is hashed is decided by the ops alone, so both ways give the same digests (the unit
//! test writes the same batches both ways and compares them with the files on disk).

use super::*;
use std::sync::mpsc::Sender;

use bytes::Bytes;

/// Batches appending fewer bytes are hashed inline.
pub(super) const HASH_APART_MIN: usize = 1 << 20;

/// Whether a batch's bytes are hashed on a thread of its own: it appends at least `min` bytes.
pub(super) fn hash_apart(ops: &[WriteOp], min: usize) -> bool {
    appended(ops) >= min.max(1)
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
    fn a_batch_is_hashed_apart_from_the_threshold_on() {
        let ops = [append(&[1; 600]), WriteOp::Seal { end_pos: 0, gtid: None }, append(&[2; 400])];
        // (threshold, apart?)
        let table = [(0, true), (1, true), (999, true), (1000, true), (1001, false), (usize::MAX, false)];
        for (min, apart) in table {
            assert_eq!(hash_apart(&ops, min), apart, "threshold {min}");
        }
        assert!(!hash_apart(&[WriteOp::Seal { end_pos: 0, gtid: None }], 0), "nothing appended, nothing to hash");
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
