//! The sha256 of the files the writers create, computed off their threads. One small pool of
//! hashing threads serves every task's writer (a thread per task would be a thousand threads):
//! each writer is given one lane (a thread and its queue) for its whole run, hands the lane the
//! same `Bytes` it writes (a reference count, no copy), and at sealing gets the digest of the
//! file's bytes through a callback that runs on the lane once every byte handed over before it is
//! hashed. A lane runs its jobs in the order they were given, so a writer's callbacks run in the
//! order it sealed its files.
//!
//! The writer never waits for the hashing except as backpressure: when a lane holds more than its
//! budget of bytes not yet hashed, the next hand-over waits until they fit (see [`BUDGET`]).
//!
//! Never: report a digest of anything but the bytes handed over for that file, in their order;
//! drop a callback without running it (one that cannot get a digest runs with `None`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Bytes a lane may hold not yet hashed before a hand-over waits. A lane hashes about 1.7 GiB/s
/// (0.6 CPU-s per GiB), so this is about 10 ms of its work: enough to ride out the scheduler
/// giving the hashing thread a late slice, while a lane that is really slower than its writers
/// (more bytes per second than one core hashes) slows them to its pace instead of buffering
/// without limit. The writers hold these bytes anyway until they have written them; what the
/// budget bounds is how long past that the lane keeps them.
pub const BUDGET: usize = 16 << 20;

/// A writer hands its bytes over in chunks of at least this much (or at [`FileDigest::flush`],
/// once per batch): one queue message and one wake-up per chunk, not per event.
const SEND_AT: usize = 256 << 10;

/// Appends smaller than this are copied into the digest's own buffer, which goes to the lane
/// once it holds this much (or at sealing): a streaming task's batches are a few KiB, and a
/// hand-over per batch (a message, a wake-up of the lane's thread) would cost more CPU than
/// hashing them; with a thousand streaming tasks, that is most of what the hashing costs. The
/// copy is ours, so it pins no batch buffer; a thousand open files hold 16 to 32 MiB at most.
/// Larger appends go as they are (no copy), at the end of their batch at the latest.
const COPY_BELOW: usize = 16 << 10;

/// The shared pool: started once per process (the supervisor's), a lane handed to each writer.
#[derive(Clone)]
pub struct Digests {
    lanes: Arc<[DigestLane]>,
    next: Arc<AtomicUsize>,
}

impl Digests {
    /// `threads` lanes (at least one), each with `budget` bytes (see [`BUDGET`]). A lane whose
    /// thread cannot be started reports no digests (the task then reads the files back).
    pub fn start(threads: usize, budget: usize) -> Self {
        let ids = Arc::new(AtomicU64::new(1));
        let lanes: Vec<DigestLane> = (0..threads.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::channel();
                let budget = Arc::new(Budget::new(budget));
                let b = budget.clone();
                let started = std::thread::Builder::new().name(format!("sha256-{i}")).spawn(move || run(rx, b));
                if started.is_err() {
                    budget.close();
                }
                DigestLane { tx, budget, ids: ids.clone() }
            })
            .collect();
        Digests { lanes: lanes.into(), next: Arc::new(AtomicUsize::new(0)) }
    }

    /// The pool size for this machine: a quarter of its cores, 1 to 4. The hashing costs a
    /// tenth to a fifth of what writing the bytes costs, so a quarter of the cores keeps up with
    /// writers on all of them.
    pub fn threads_for_this_machine() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 4).clamp(1, 4))
    }

    /// The lane for one more writer (round robin).
    pub fn lane(&self) -> DigestLane {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        self.lanes[i].clone()
    }
}

/// One hashing thread and its queue, as a writer sees it.
#[derive(Clone)]
pub struct DigestLane {
    tx: Sender<Job>,
    budget: Arc<Budget>,
    ids: Arc<AtomicU64>,
}

impl DigestLane {
    /// A new file whose first bytes are `prefix`.
    pub fn start_file(&self, prefix: Bytes) -> FileDigest {
        let mut d = FileDigest {
            lane: self.clone(),
            file: self.ids.fetch_add(1, Ordering::Relaxed),
            pending: Vec::new(),
            pending_len: 0,
            small: Vec::new(),
            broken: false,
            finished: false,
        };
        d.update(prefix);
        d
    }

    /// Runs `then(None)` on the lane after everything given to it before (a report that must not
    /// overtake the digests of files sealed before it); at once if the lane is gone.
    pub fn after(&self, then: impl FnOnce(Option<String>) + Send + 'static) {
        // A failed send drops the job, and with it the callback, which then runs with `None`.
        let _ = self.tx.send(Job::After(OnDigest::new(then)));
    }
}

/// The digest of one file being written: the bytes go to the lane as they are written.
/// Dropped without [`FileDigest::finish`] (a file cut back, a writer gone mid-file), its state
/// on the lane is discarded.
pub struct FileDigest {
    lane: DigestLane,
    file: u64,
    /// Ready for the lane, in order: appends as they came, and full `small` buffers.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Copies of small appends, after everything in `pending` (see [`COPY_BELOW`]).
    small: Vec<u8>,
    /// The lane is gone: no digest for this file.
    broken: bool,
    finished: bool,
}

impl FileDigest {
    /// The next bytes of the file. Handed over in chunks (see [`SEND_AT`], [`COPY_BELOW`]); may
    /// wait while the lane is more than its budget behind.
    pub fn update(&mut self, data: Bytes) {
        if data.is_empty() || self.broken {
            return;
        }
        if data.len() < COPY_BELOW {
            self.small.extend_from_slice(&data);
            if self.small.len() >= COPY_BELOW {
                self.take_small();
            }
        } else {
            self.take_small();
            self.pending_len += data.len();
            self.pending.push(data);
        }
        if self.pending_len >= SEND_AT {
            self.flush();
        }
    }

    /// Moves the copies of small appends to `pending`.
    fn take_small(&mut self) {
        if !self.small.is_empty() {
            let small = Bytes::from(std::mem::take(&mut self.small));
            self.pending_len += small.len();
            self.pending.push(small);
        }
    }

    /// Hands over what `update` holds back, but for copies of small appends that have not yet
    /// filled their buffer: before the writer's fsync, so that the lane hashes while the disk
    /// writes, and lets go of the batch's buffers soon.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let (bytes, len) = (std::mem::take(&mut self.pending), std::mem::take(&mut self.pending_len));
        self.lane.budget.take(len);
        if self.lane.tx.send(Job::Update { file: self.file, bytes, len }).is_err() {
            self.lane.budget.give(len);
            self.broken = true;
        }
    }

    /// `then(digest)` on the lane once every byte given before is hashed: the lowercase hex
    /// sha256 of them all, or `None` if the lane failed.
    pub fn finish(mut self, then: impl FnOnce(Option<String>) + Send + 'static) {
        self.take_small();
        self.flush();
        self.finished = true;
        let then = OnDigest::new(then);
        if self.broken {
            then.call(None);
            return;
        }
        // A failed send drops the job, and with it the callback, which then runs with `None`.
        let _ = self.lane.tx.send(Job::Finish { file: self.file, then });
    }
}

impl Drop for FileDigest {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.lane.tx.send(Job::Abandon { file: self.file });
        }
    }
}

/// A callback that runs exactly once: with the digest, or with `None` if it is dropped unrun.
struct OnDigest(Option<Box<dyn FnOnce(Option<String>) + Send>>);

impl OnDigest {
    fn new(f: impl FnOnce(Option<String>) + Send + 'static) -> Self {
        OnDigest(Some(Box::new(f)))
    }

    fn call(mut self, digest: Option<String>) {
        if let Some(f) = self.0.take() {
            f(digest);
        }
    }
}

impl Drop for OnDigest {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(None);
        }
    }
}

enum Job {
    Update { file: u64, bytes: Vec<Bytes>, len: usize },
    Finish { file: u64, then: OnDigest },
    Abandon { file: u64 },
    After(OnDigest),
}

/// A lane's bytes handed over and not yet hashed, against its budget.
struct Budget {
    limit: usize,
    state: Mutex<BudgetState>,
    drained: Condvar,
}

#[derive(Default)]
struct BudgetState {
    in_flight: usize,
    /// Writers waiting in `take` (a wake-up is a system call: only when someone waits).
    waiting: usize,
    /// The lane's thread is gone: nobody will give bytes back, nobody waits.
    closed: bool,
}

impl Budget {
    fn new(limit: usize) -> Self {
        Budget { limit, state: Mutex::new(BudgetState::default()), drained: Condvar::new() }
    }

    /// Waits until `n` more bytes fit (always, when none are in flight: a chunk larger than the
    /// budget goes alone), then counts them.
    fn take(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !s.closed && s.in_flight > 0 && s.in_flight + n > self.limit {
            s.waiting += 1;
            s = self.drained.wait(s).unwrap_or_else(PoisonError::into_inner);
            s.waiting -= 1;
        }
        s.in_flight += n;
    }

    fn give(&self, n: usize) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        s.in_flight = s.in_flight.saturating_sub(n);
        if s.waiting > 0 {
            self.drained.notify_all();
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.drained.notify_all();
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).in_flight
    }
}

/// Closes the budget when the lane's thread ends, however it ends, so no writer waits forever.
struct CloseOnExit(Arc<Budget>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A lane's thread: the jobs in order, until every sender is gone.
fn run(rx: Receiver<Job>, budget: Arc<Budget>) {
    let _close = CloseOnExit(budget.clone());
    let mut files: HashMap<u64, Sha256> = HashMap::new();
    for job in rx {
        match job {
            Job::Update { file, bytes, len } => {
                let h = files.entry(file).or_default();
                for b in &bytes {
                    h.update(b);
                }
                // Released before the writer may go on: the budget bounds what is held.
                drop(bytes);
                budget.give(len);
            }
            Job::Finish { file, then } => then.call(files.remove(&file).map(|h| hex::encode(h.finalize()))),
            Job::Abandon { file } => {
                files.remove(&file);
            }
            Job::After(then) => then.call(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    /// Deterministic bytes, different for every (seed, i).
    fn chunk(seed: u64, i: usize, len: usize) -> Bytes {
        let mut n = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i as u64);
        (0..len)
            .map(|_| {
                n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (n >> 33) as u8
            })
            .collect::<Vec<u8>>()
            .into()
    }

    fn recv(rx: &mpsc::Receiver<(usize, Option<String>)>) -> (usize, Option<String>) {
        rx.recv_timeout(Duration::from_secs(30)).expect("a digest within 30 s")
    }

    /// Many files on a pool of two lanes, their updates interleaved (sizes from 0 to past the
    /// chunk size): each digest is the sha256 of that file's bytes in the order given, and each
    /// writer's callbacks arrive in the order it finished its files.
    #[test]
    fn interleaved_files_each_get_the_digest_of_their_bytes_in_order() {
        let pool = Digests::start(2, 1 << 20);
        let (tx, rx) = channel();
        let writers: Vec<DigestLane> = (0..3).map(|_| pool.lane()).collect();
        let mut files: Vec<(usize, FileDigest, Vec<u8>)> = Vec::new();
        for f in 0..9 {
            let prefix = chunk(f as u64, 0, 4 + f);
            files.push((f, writers[f % 3].start_file(prefix.clone()), prefix.to_vec()));
        }
        let sizes = [0usize, 1, 17, 4096, COPY_BELOW - 1, COPY_BELOW, SEND_AT - 1, SEND_AT, 3 * SEND_AT + 5, 100];
        for i in 1..60 {
            for (f, d, want) in files.iter_mut() {
                let c = chunk(*f as u64, i, sizes[(i + *f) % sizes.len()]);
                want.extend_from_slice(&c);
                d.update(c);
                if i % 7 == 0 {
                    d.flush();
                }
            }
        }
        let mut expected = Vec::new();
        for (f, d, want) in files {
            expected.push((f, hex::encode(Sha256::digest(&want))));
            let tx = tx.clone();
            d.finish(move |digest| tx.send((f, digest)).unwrap());
        }
        let mut got: Vec<(usize, Option<String>)> = (0..expected.len()).map(|_| recv(&rx)).collect();
        for w in 0..3 {
            let order: Vec<usize> = got.iter().map(|(f, _)| *f).filter(|f| f % 3 == w).collect();
            assert!(order.is_sorted(), "writer {w}'s files reported in the order finished: {order:?}");
        }
        got.sort_by_key(|(f, _)| *f);
        for ((f, digest), (_, want)) in got.into_iter().zip(expected) {
            assert_eq!(digest.as_deref(), Some(want.as_str()), "file {f}");
        }
    }

    /// A file given nothing but its prefix, and a file abandoned beside one that is finished:
    /// the abandoned one changes nothing; `after` runs behind the digests given before it.
    #[test]
    fn abandoned_files_and_after_keep_their_place() {
        let lane = Digests::start(1, BUDGET).lane();
        let (tx, rx) = channel();
        let small = lane.start_file(Bytes::from_static(b"\xfebin"));
        let mut gone = lane.start_file(Bytes::from_static(b"\xfebin"));
        gone.update(chunk(1, 1, 3 * SEND_AT));
        let mut big = lane.start_file(Bytes::from_static(b"\xfebin"));
        let tail = chunk(2, 1, 2 * SEND_AT);
        big.update(tail.clone());
        drop(gone);
        let t = tx.clone();
        small.finish(move |d| t.send((0, d)).unwrap());
        let t = tx.clone();
        big.finish(move |d| t.send((1, d)).unwrap());
        lane.after(move |d| tx.send((2, d)).unwrap());
        assert_eq!(recv(&rx), (0, Some(hex::encode(Sha256::digest(b"\xfebin")))));
        let want = [&b"\xfebin"[..], &tail].concat();
        assert_eq!(recv(&rx), (1, Some(hex::encode(Sha256::digest(&want)))));
        assert_eq!(recv(&rx), (2, None));
    }

    /// While the lane is stopped (its thread busy in a callback), the writer hands over at most
    /// one chunk past the budget, then waits; it goes on once the lane hashes again.
    #[test]
    fn a_writer_waits_when_the_lane_is_a_budget_behind() {
        let budget = 4 * SEND_AT;
        let lane = Digests::start(1, budget).lane();
        // Holds the lane's thread until `release` is sent.
        let (release, held) = channel::<()>();
        lane.after(move |_| held.recv().unwrap());
        let (progress_tx, progress) = channel();
        let l = lane.clone();
        let writer = std::thread::spawn(move || {
            let mut d = l.start_file(Bytes::new());
            let mut want = Vec::new();
            for i in 0..20 {
                let c = chunk(9, i, SEND_AT);
                want.extend_from_slice(&c);
                d.update(c);
                progress_tx.send(i).unwrap();
            }
            let (tx, rx) = channel();
            d.finish(move |digest| tx.send(digest).unwrap());
            (rx.recv().unwrap(), hex::encode(Sha256::digest(&want)))
        });
        // The writer gets `budget` bytes ahead of the stopped lane ...
        for want in 0..budget / SEND_AT {
            assert_eq!(progress.recv_timeout(Duration::from_secs(30)), Ok(want));
        }
        assert_eq!(lane.budget.in_flight(), budget);
        // ... and no further (a chunk more would show up here at once; this can only pass
        // wrongly on a machine too slow to hand one over in the time, never fail wrongly).
        assert!(progress.recv_timeout(Duration::from_millis(300)).is_err(), "handed over past the budget");
        assert_eq!(lane.budget.in_flight(), budget);
        release.send(()).unwrap();
        let (got, want) = writer.join().unwrap();
        assert_eq!(got, Some(want));
        assert_eq!(lane.budget.in_flight(), 0);
    }

    /// Small appends (a streaming task's batches) are copied and handed over once there are
    /// `COPY_BELOW` bytes of them, not at every batch; the rest at `finish`.
    #[test]
    fn small_batches_are_handed_over_together() {
        let lane = Digests::start(1, BUDGET).lane();
        let (release, held) = channel::<()>();
        lane.after(move |_| held.recv().unwrap());
        let mut d = lane.start_file(Bytes::new());
        let mut want = Vec::new();
        let batch = 1000;
        for i in 0..COPY_BELOW / batch {
            let c = chunk(5, i, batch);
            want.extend_from_slice(&c);
            d.update(c);
            d.flush();
            assert_eq!(lane.budget.in_flight(), 0, "batch {i} kept back");
        }
        let c = chunk(5, 99, batch);
        want.extend_from_slice(&c);
        d.update(c);
        d.flush();
        assert_eq!(lane.budget.in_flight(), want.len(), "handed over once {COPY_BELOW} bytes are there");
        let c = chunk(5, 100, 10);
        want.extend_from_slice(&c);
        d.update(c);
        release.send(()).unwrap();
        let (tx, rx) = channel();
        d.finish(move |digest| tx.send((0, digest)).unwrap());
        assert_eq!(recv(&rx), (0, Some(hex::encode(Sha256::digest(&want)))), "the kept-back rest is hashed too");
    }

    /// A chunk larger than the whole budget still goes (alone), rather than waiting forever.
    #[test]
    fn a_chunk_larger_than_the_budget_goes_alone() {
        let lane = Digests::start(1, SEND_AT).lane();
        let mut d = lane.start_file(Bytes::new());
        let big = chunk(3, 0, 5 * SEND_AT);
        d.update(big.clone());
        d.update(big.clone());
        let (tx, rx) = channel();
        d.finish(move |digest| tx.send((0, digest)).unwrap());
        let want = [&big[..], &big[..]].concat();
        assert_eq!(recv(&rx), (0, Some(hex::encode(Sha256::digest(&want)))));
    }

    /// A lane whose thread is gone: no digest, a callback still runs (with `None`), no wait.
    #[test]
    fn a_lane_without_its_thread_reports_none() {
        let (tx, rx) = mpsc::channel();
        drop(rx);
        let budget = Arc::new(Budget::new(SEND_AT));
        budget.close();
        let lane = DigestLane { tx, budget, ids: Arc::new(AtomicU64::new(1)) };
        let mut d = lane.start_file(Bytes::from_static(b"\xfebin"));
        for i in 0..10 {
            d.update(chunk(4, i, SEND_AT));
        }
        let (tx, rx) = channel();
        let t = tx.clone();
        d.finish(move |digest| t.send((0, digest)).unwrap());
        lane.after(move |digest| tx.send((1, digest)).unwrap());
        assert_eq!(recv(&rx), (0, None));
        assert_eq!(recv(&rx), (1, None));
    }
}
