//! A disk whose power can be cut: a FUSE filesystem, served from this test process, that keeps
//! what a real disk may lose apart from what it has promised to keep.
//!
//! Every file has the bytes programs see and the bytes made durable by its last `fsync` or
//! `fdatasync`; every directory has the names programs see and the names made durable by its
//! last `fsync` (the strict POSIX reading: a new file's name, a rename, an unlink survive a
//! crash only once the directory holding them was synced, whatever the file's own fsync did).
//! [`PowerCutDisk::cut`] is the power going: from that instant every operation fails with EIO,
//! as on a machine that died, and what was not durable is gone. [`PowerCutDisk::power_on`]
//! unmounts, keeps only what was durable at the cut, and mounts it again, so the next process
//! reads exactly what a machine would find after the reboot (no page cache survives: files are
//! served with `direct_io`, except SQLite's `*-shm` index, see `Node::page_cache`, and the mount
//! itself is new). [`PowerCutDisk::power_on_keeping_some`]
//! also keeps a random part of each unsynced append, as a disk that wrote some of it back by
//! itself before the power went (what a real disk may do): recovery then meets a torn tail.
//! [`PowerCutDisk::cut_at_next_shrink`] cuts at an operation instead of at a kill: the next
//! truncation that shortens a file SIGKILLs its caller and the power goes before it is done.
//!
//! This is what a `kill -9` cannot show: the kernel keeps a killed process's unsynced writes.
//! Mounting needs `/dev/fuse` and root (which the suite's package test needs too): the mount is
//! made by `mount(2)` from this process, no `fusermount` involved.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const ROOT: u64 = 1;
/// How long the kernel may cache names and attributes: only this mount changes them, and the
/// mount does not outlive a cut.
const TTL: Duration = Duration::from_secs(1);
/// `FOPEN_DIRECT_IO`: reads and writes go to the model, not the kernel's page cache.
const DIRECT_IO: u32 = 1;

enum Body {
    File {
        /// What programs see.
        data: Vec<u8>,
        /// What survives a cut: `data` as of the last fsync.
        durable: Vec<u8>,
        /// `data[..dirty_from] == durable[..dirty_from]`: where the next fsync starts copying.
        dirty_from: usize,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

struct Node {
    body: Body,
    perm: u16,
    mtime: SystemTime,
    /// Served through the page cache instead of `direct_io`: SQLite's shared-memory index
    /// (`*-shm`), which it maps with `mmap(MAP_SHARED)` (refused on a `direct_io` file) and never
    /// syncs (it rebuilds it from the WAL after a crash). Its bytes reach the model when the
    /// kernel writes them back; a cut keeps none of them, as for any unsynced file.
    page_cache: bool,
}

/// What a cut dropped, and how much was made durable before it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutStats {
    /// `fsync`/`fdatasync` calls on files, and `fsync` calls on directories, since the mount.
    pub file_syncs: u64,
    pub dir_syncs: u64,
    /// Bytes of files that the cut took back (written, or left by a truncation, since the file's
    /// last sync: unlike what was synced, or past it), and names created, renamed or removed
    /// since their directory's last sync.
    pub bytes_lost: u64,
    pub names_lost: u64,
    /// Unsynced bytes a cut kept ([`PowerCutDisk::power_on_keeping_some`]).
    pub bytes_kept_unsynced: u64,
}

struct Model {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// The power is off: every operation fails with EIO.
    cut: bool,
    /// Armed by [`PowerCutDisk::cut_at_next_shrink`]: the next truncation that shortens a file
    /// kills its caller and cuts the power, before it is done.
    cut_at_shrink: bool,
    stats: CutStats,
}

impl Model {
    fn new() -> Model {
        let root = Node {
            body: Body::Dir { entries: BTreeMap::new(), durable: BTreeMap::new() },
            perm: 0o755,
            mtime: SystemTime::now(),
            page_cache: false,
        };
        Model {
            nodes: HashMap::from([(ROOT, root)]),
            next_ino: ROOT + 1,
            cut: false,
            cut_at_shrink: false,
            stats: CutStats::default(),
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let (kind, size, nlink) = match &node.body {
            Body::File { data, .. } => (FileType::RegularFile, data.len() as u64, 1),
            Body::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: node.perm,
            nlink,
            // SAFETY: geteuid/getegid have no preconditions and cannot fail.
            uid: unsafe { libc::geteuid() },
            gid: unsafe { libc::getegid() },
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.body) {
            Some(Body::Dir { entries, .. }) => Ok(entries),
            Some(Body::File { .. }) => Err(libc::ENOTDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn child(&mut self, dir: u64, name: &OsStr) -> Result<u64, i32> {
        self.entries(dir)?.get(name).copied().ok_or(libc::ENOENT)
    }

    fn add(&mut self, dir: u64, name: &OsStr, body: Body, perm: u16) -> Result<u64, i32> {
        if self.entries(dir)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let page_cache = name.as_encoded_bytes().ends_with(b"-shm");
        self.nodes.insert(ino, Node { body, perm, mtime: SystemTime::now(), page_cache });
        self.entries(dir)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// `direct_io` for every file but SQLite's shared memory (see [`Node::page_cache`]).
    fn open_flags(&self, ino: u64) -> u32 {
        match self.nodes.get(&ino) {
            Some(n) if n.page_cache => 0,
            _ => DIRECT_IO,
        }
    }

    fn data(&self, ino: u64) -> Result<&[u8], i32> {
        match self.nodes.get(&ino).map(|n| &n.body) {
            Some(Body::File { data, .. }) => Ok(data),
            Some(Body::Dir { .. }) => Err(libc::EISDIR),
            None => Err(libc::ENOENT),
        }
    }

    fn write(&mut self, ino: u64, offset: usize, bytes: &[u8]) -> Result<usize, i32> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        node.mtime = SystemTime::now();
        let Body::File { data, dirty_from, .. } = &mut node.body else { return Err(libc::EISDIR) };
        let end = offset + bytes.len();
        if data.len() < end {
            data.resize(end, 0);
        }
        data[offset..end].copy_from_slice(bytes);
        *dirty_from = (*dirty_from).min(offset);
        Ok(bytes.len())
    }

    fn truncate(&mut self, ino: u64, size: usize) -> Result<(), i32> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        node.mtime = SystemTime::now();
        let Body::File { data, dirty_from, .. } = &mut node.body else { return Err(libc::EISDIR) };
        data.resize(size, 0);
        *dirty_from = (*dirty_from).min(size);
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> Result<(), i32> {
        let node = self.nodes.get_mut(&ino).ok_or(libc::ENOENT)?;
        match &mut node.body {
            Body::File { data, durable, dirty_from } => {
                let from = (*dirty_from).min(data.len()).min(durable.len());
                durable.truncate(from);
                durable.extend_from_slice(&data[from..]);
                *dirty_from = data.len();
                self.stats.file_syncs += 1;
            }
            Body::Dir { entries, durable } => {
                durable.clone_from(entries);
                self.stats.dir_syncs += 1;
            }
        }
        Ok(())
    }

    /// Power back on: every node holds what was durable. With `seed`, each file whose unsynced
    /// change is an append also keeps a part of it (a random length, from the seed), as a disk
    /// that wrote some of it back on its own before the power went: a torn tail, padding left by
    /// an O_DIRECT block; names stay as synced either way.
    fn restore(&mut self, seed: Option<u64>) {
        let mut rng = seed.map(|s| s | 1);
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File { data, durable, dirty_from } => {
                    let appended = data.len() > durable.len() && data.starts_with(durable);
                    let keep = match rng.as_mut() {
                        Some(x) if appended => {
                            // xorshift64: reproducible from the seed the test prints.
                            *x ^= *x << 13;
                            *x ^= *x >> 7;
                            *x ^= *x << 17;
                            durable.len() + (*x % (data.len() - durable.len() + 1) as u64) as usize
                        }
                        _ => durable.len(),
                    };
                    if keep > durable.len() {
                        self.stats.bytes_kept_unsynced += (keep - durable.len()) as u64;
                        durable.extend_from_slice(&data[durable.len()..keep]);
                    }
                    let unlike = data.iter().enumerate().filter(|(i, b)| durable.get(*i) != Some(*b)).count();
                    self.stats.bytes_lost += unlike as u64;
                    data.clone_from(durable);
                    *dirty_from = data.len();
                }
                Body::Dir { entries, durable } => {
                    let changed = entries.iter().filter(|(k, v)| durable.get(*k) != Some(v)).count()
                        + durable.keys().filter(|k| !entries.contains_key(*k)).count();
                    self.stats.names_lost += changed as u64;
                    entries.clone_from(durable);
                }
            }
        }
        self.cut = false;
    }
}

/// The filesystem the kernel talks to; the model is shared with the test's [`PowerCutDisk`].
struct PowerCutFs(Arc<Mutex<Model>>);

impl PowerCutFs {
    /// The model while the power is on; EIO after a cut.
    fn live(&self) -> Result<MutexGuard<'_, Model>, i32> {
        let m = self.0.lock().expect("the power-cut model's lock is never poisoned: nothing panics holding it");
        if m.cut { Err(libc::EIO) } else { Ok(m) }
    }
}

macro_rules! try_reply {
    ($reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(errno) => return $reply.error(errno),
        }
    };
}

impl Filesystem for PowerCutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut m = try_reply!(reply, self.live());
        let ino = try_reply!(reply, m.child(parent, name));
        let attr = try_reply!(reply, m.attr(ino).ok_or(libc::ENOENT));
        reply.entry(&TTL, &attr, 0);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let m = try_reply!(reply, self.live());
        let attr = try_reply!(reply, m.attr(ino).ok_or(libc::ENOENT));
        reply.attr(&TTL, &attr);
    }

    fn setattr(
        &mut self,
        req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut m = try_reply!(reply, self.live());
        if let Some(size) = size {
            let shrinks = m.data(ino).is_ok_and(|d| (size as usize) < d.len());
            if shrinks && std::mem::take(&mut m.cut_at_shrink) {
                // The power goes now, in the middle of this call: its caller dies with it.
                m.cut = true;
                // SAFETY: kill(2) on the calling thread's id (the kernel signals its process);
                // no memory is shared.
                unsafe { libc::kill(req.pid() as libc::pid_t, libc::SIGKILL) };
                return reply.error(libc::EIO);
            }
            try_reply!(reply, m.truncate(ino, size as usize));
        }
        let node = try_reply!(reply, m.nodes.get_mut(&ino).ok_or(libc::ENOENT));
        if let Some(mode) = mode {
            node.perm = (mode & 0o7777) as u16;
        }
        match mtime {
            Some(TimeOrNow::SpecificTime(t)) => node.mtime = t,
            Some(TimeOrNow::Now) => node.mtime = SystemTime::now(),
            None => {}
        }
        let attr = try_reply!(reply, m.attr(ino).ok_or(libc::ENOENT));
        reply.attr(&TTL, &attr);
    }

    fn mkdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut m = try_reply!(reply, self.live());
        let body = Body::Dir { entries: BTreeMap::new(), durable: BTreeMap::new() };
        let ino = try_reply!(reply, m.add(parent, name, body, (mode & !umask & 0o7777) as u16));
        let attr = try_reply!(reply, m.attr(ino).ok_or(libc::ENOENT));
        reply.entry(&TTL, &attr, 0);
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut m = try_reply!(reply, self.live());
        let body = Body::File { data: Vec::new(), durable: Vec::new(), dirty_from: 0 };
        let ino = try_reply!(reply, m.add(parent, name, body, (mode & !umask & 0o7777) as u16));
        let attr = try_reply!(reply, m.attr(ino).ok_or(libc::ENOENT));
        reply.created(&TTL, &attr, 0, 0, m.open_flags(ino));
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut m = try_reply!(reply, self.live());
        let ino = try_reply!(reply, m.child(parent, name));
        if matches!(m.nodes.get(&ino).map(|n| &n.body), Some(Body::Dir { .. })) {
            return reply.error(libc::EISDIR);
        }
        try_reply!(reply, m.entries(parent)).remove(name);
        reply.ok();
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut m = try_reply!(reply, self.live());
        let ino = try_reply!(reply, m.child(parent, name));
        if !try_reply!(reply, m.entries(ino)).is_empty() {
            return reply.error(libc::ENOTEMPTY);
        }
        try_reply!(reply, m.entries(parent)).remove(name);
        reply.ok();
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        _flags: u32,
        reply: ReplyEmpty,
    ) {
        let mut m = try_reply!(reply, self.live());
        let ino = try_reply!(reply, m.child(parent, name));
        let target = m.child(newparent, newname).ok().and_then(|t| m.nodes.get(&t));
        if matches!(target.map(|n| &n.body), Some(Body::Dir { entries, .. }) if !entries.is_empty()) {
            return reply.error(libc::ENOTEMPTY);
        }
        try_reply!(reply, m.entries(parent)).remove(name);
        try_reply!(reply, m.entries(newparent)).insert(newname.to_owned(), ino);
        reply.ok();
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let m = try_reply!(reply, self.live());
        try_reply!(reply, m.attr(ino).ok_or(libc::ENOENT));
        reply.opened(0, m.open_flags(ino));
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let m = try_reply!(reply, self.live());
        let data = try_reply!(reply, m.data(ino));
        let start = (offset as usize).min(data.len());
        let end = (start + size as usize).min(data.len());
        reply.data(&data[start..end]);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut m = try_reply!(reply, self.live());
        let n = try_reply!(reply, m.write(ino, offset as usize, data));
        reply.written(n as u32);
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let mut m = try_reply!(reply, self.live());
        try_reply!(reply, m.sync(ino));
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let mut m = try_reply!(reply, self.live());
        try_reply!(reply, m.entries(ino));
        reply.opened(0, 0);
    }

    fn readdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, offset: i64, mut reply: ReplyDirectory) {
        let mut m = try_reply!(reply, self.live());
        let listed: Vec<(OsString, u64)> =
            try_reply!(reply, m.entries(ino)).iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut all =
            vec![(OsString::from("."), ino, FileType::Directory), (OsString::from(".."), ino, FileType::Directory)];
        for (name, child) in listed {
            let kind = match m.nodes.get(&child).map(|n| &n.body) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((name, child, kind));
        }
        for (i, (name, child, kind)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(child, (i + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _datasync: bool, reply: ReplyEmpty) {
        let mut m = try_reply!(reply, self.live());
        try_reply!(reply, m.sync(ino));
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // 64 GiB, nearly all free: the server's free-space checks see a roomy disk.
        let blocks = 1u64 << 24;
        reply.statfs(blocks, blocks - 1024, blocks - 1024, 1 << 20, (1 << 20) - 1024, 4096, 255, 4096);
    }
}

/// A power-cut disk mounted at a temp dir of its own (see the module's text).
pub struct PowerCutDisk {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
    _dir: tempfile::TempDir,
}

impl PowerCutDisk {
    /// Mounts an empty disk; panics with what to do when this machine cannot mount FUSE.
    pub fn mount() -> PowerCutDisk {
        let dir = super::temp_dir("binlog-it-power-cut-");
        let mountpoint = dir.path().join("disk");
        std::fs::create_dir(&mountpoint).expect("create the mount point");
        let mut disk = PowerCutDisk { model: Arc::new(Mutex::new(Model::new())), mountpoint, session: None, _dir: dir };
        disk.mount_model();
        disk
    }

    fn mount_model(&mut self) {
        let fs = PowerCutFs(Arc::clone(&self.model));
        let options = [MountOption::FSName("binlog-power-cut".into()), MountOption::RW];
        let session = fuser::spawn_mount2(fs, &self.mountpoint, &options).unwrap_or_else(|e| {
            panic!(
                "cannot mount the power-cut test disk (FUSE) at {}: {e}\n\
                 it needs /dev/fuse and root (a container needs --device /dev/fuse and CAP_SYS_ADMIN)",
                self.mountpoint.display()
            )
        });
        self.session = Some(session);
    }

    /// Where the disk is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The power goes, at this instant: every later operation on the disk fails with EIO, and
    /// what was not durable now is lost (once [`PowerCutDisk::power_on`] runs).
    pub fn cut(&self) {
        self.model.lock().expect("never poisoned").cut = true;
    }

    /// The power comes back: the disk is unmounted (stop or kill every process that has files
    /// open on it first), keeps only what was durable at the cut, and is mounted again.
    pub fn power_on(&mut self) {
        self.restart(None);
    }

    /// As [`PowerCutDisk::power_on`], but each file that was appended to since its last sync
    /// keeps a random part of what was appended (from `seed`): a disk that had written some of
    /// it back by itself. Real disks do; what recovery then finds is a torn tail.
    pub fn power_on_keeping_some(&mut self, seed: u64) {
        self.restart(Some(seed));
    }

    fn restart(&mut self, seed: Option<u64>) {
        if let Some(session) = self.session.take() {
            session.join();
        }
        self.model.lock().expect("never poisoned").restore(seed);
        self.mount_model();
    }

    /// Arms a cut at the next truncation that shortens a file (crash recovery cutting a torn
    /// tail, reconciliation cutting a file back to its checkpoint): the process calling it is
    /// SIGKILLed and the power goes before the truncation is done. [`PowerCutDisk::was_cut`]
    /// tells when it happened; [`PowerCutDisk::disarm`] takes it back.
    pub fn cut_at_next_shrink(&self) {
        self.model.lock().expect("never poisoned").cut_at_shrink = true;
    }

    /// Takes back [`PowerCutDisk::cut_at_next_shrink`] if it has not fired.
    pub fn disarm(&self) {
        self.model.lock().expect("never poisoned").cut_at_shrink = false;
    }

    /// Whether the power is off (a cut not yet followed by a power-on).
    pub fn was_cut(&self) -> bool {
        self.model.lock().expect("never poisoned").cut
    }

    /// Syncs seen and what the cuts so far dropped.
    pub fn stats(&self) -> CutStats {
        self.model.lock().expect("never poisoned").stats
    }
}

impl Drop for PowerCutDisk {
    fn drop(&mut self) {
        // Unmounts. A process still holding files there (a test that panicked before its
        // server was killed) keeps the mount busy: then it is detached, so that no dead mount is
        // left behind in /tmp.
        drop(self.session.take());
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*self.mountpoint.to_string_lossy())) {
            let path =
                std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes()).expect("no NUL in a temp path");
            // SAFETY: a valid NUL-terminated path; umount2 touches no memory of ours.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model alone (no mount): a cut keeps synced bytes and synced names, nothing else.
    #[test]
    fn a_cut_keeps_what_was_synced_and_nothing_else() {
        let mut m = Model::new();
        let dir = m
            .add(ROOT, OsStr::new("d"), Body::Dir { entries: BTreeMap::new(), durable: BTreeMap::new() }, 0o755)
            .unwrap();
        m.sync(ROOT).unwrap();
        let new_file = || Body::File { data: Vec::new(), durable: Vec::new(), dirty_from: 0 };
        let a = m.add(dir, OsStr::new("a"), new_file(), 0o644).unwrap();
        m.write(a, 0, b"hello").unwrap();
        m.sync(a).unwrap();
        m.sync(dir).unwrap();
        m.write(a, 5, b" world").unwrap(); // appended, not synced
        m.write(a, 0, b"J").unwrap(); // overwritten, not synced
        let b = m.add(dir, OsStr::new("b"), new_file(), 0o644).unwrap();
        m.write(b, 0, b"synced, but its name is not").unwrap();
        m.sync(b).unwrap();
        let c = m.add(ROOT, OsStr::new("c"), new_file(), 0o644).unwrap();
        m.sync(ROOT).unwrap(); // c's name is durable, its bytes are not
        m.write(c, 0, b"lost").unwrap();
        m.restore(None);
        let data = |m: &Model, ino| m.data(ino).unwrap().to_vec();
        assert_eq!(data(&m, a), b"hello");
        assert_eq!(m.child(dir, OsStr::new("a")), Ok(a));
        assert_eq!(m.child(dir, OsStr::new("b")), Err(libc::ENOENT));
        assert_eq!(m.child(ROOT, OsStr::new("c")), Ok(c));
        assert_eq!(data(&m, c), b"");
        let stats = m.stats;
        // "hello" became "Jello world": 7 bytes unlike the synced ones; c's 4; b's bytes were synced
        // (its name was not).
        assert_eq!((stats.bytes_lost, stats.names_lost), (7 + 4, 1), "{stats:?}");
        // Kept in part: an append keeps a prefix of what was appended, an overwrite nothing.
        let mut p = Model::new();
        let f = p.add(ROOT, OsStr::new("f"), new_file(), 0o644).unwrap();
        p.sync(ROOT).unwrap();
        p.write(f, 0, b"durable").unwrap();
        p.sync(f).unwrap();
        p.write(f, 7, b" and appended").unwrap();
        let g = p.add(ROOT, OsStr::new("g"), new_file(), 0o644).unwrap();
        p.sync(ROOT).unwrap();
        p.write(g, 0, b"synced").unwrap();
        p.sync(g).unwrap();
        p.write(g, 0, b"S").unwrap();
        p.restore(Some(7));
        let kept = data(&p, f);
        assert!(kept.starts_with(b"durable") && b"durable and appended".starts_with(&kept[..]), "{kept:?}");
        assert_eq!(data(&p, g), b"synced", "an overwrite is not an append: nothing of it kept");
        assert_eq!(p.stats.bytes_kept_unsynced, (kept.len() - 7) as u64);
        // A truncation is a change like any other until synced.
        m.truncate(a, 2).unwrap();
        m.restore(None);
        assert_eq!(data(&m, a), b"hello");
    }
}
