//! A dump: the artificial ROTATE, the FDE, then the stored events as they are on disk, file after
//! file, then the open file up to the durable checkpoint, woken by each new one; heartbeats while
//! idle; EOF at the end for a non-blocking dump. Where to start and how far to read is `plan`'s.

use std::borrow::Cow;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, info, warn};
use tokio::time::Instant;

use crate::binlog::event::{
    EventHeader, Fde, HEADER_LEN, parse_mariadb_gtid, parse_mysql_gtid, parse_tagged_gtid, types,
};
use crate::binlog::gtid::{GtidSet, MariadbGtidState};
use crate::domain::{Flavor, TaskId};
use crate::meta::FileRecord;
use crate::relay::clients::ClientGuard;
use crate::relay::codes::ER_MASTER_FATAL_ERROR_READING_BINLOG;
use crate::relay::plan::{self, DumpRefused, GtidSkip};
use crate::relay::query::Session;
use crate::relay::session::{self, Archive, Io, load_archive};
use crate::relay::{RelayContext, events, proto};
use crate::source::SourceError;
use crate::source::dump::BINLOG_DUMP_NON_BLOCK;

/// Bytes read from a file at a time.
const READ_CHUNK: usize = 256 * 1024;
/// Framed bytes gathered before a socket write.
const WRITE_BATCH: usize = 256 * 1024;
/// Reads at the open file's durable end up to this size are made on the dump's own thread.
const INLINE_READ_MAX: usize = 64 * 1024;

/// `BINLOG_THROUGH_GTID`: a COM_BINLOG_DUMP_GTID carries the replica's GTID set.
pub const BINLOG_THROUGH_GTID: u16 = 4;

/// A COM_BINLOG_DUMP or COM_BINLOG_DUMP_GTID request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpRequest {
    pub pos: u64,
    pub flags: u16,
    pub server_id: u32,
    pub file: String,
    /// COM_BINLOG_DUMP_GTID: the transactions the replica has (MySQL auto-positioning).
    pub gtids: Option<GtidSet>,
}

impl DumpRequest {
    /// COM_BINLOG_DUMP_GTID: flags (2), server id (4), file name length (4) and name, position
    /// (8), then with `BINLOG_THROUGH_GTID` the size (4) and MySQL's encoding of the GTID set
    /// (untagged, or the 8.3+ tagged format). An error says what is malformed.
    pub fn parse_gtid(pkt: &[u8]) -> Result<DumpRequest, String> {
        fn take<'a>(p: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8], String> {
            if p.len() < n {
                return Err(format!("malformed COM_BINLOG_DUMP_GTID: truncated at the {what}"));
            }
            let (head, rest) = p.split_at(n);
            *p = rest;
            Ok(head)
        }
        let mut p = match pkt.split_first() {
            Some((0x1e, rest)) => rest,
            _ => return Err("not a COM_BINLOG_DUMP_GTID".into()),
        };
        let flags = u16::from_le_bytes(take(&mut p, 2, "flags")?.try_into().expect("2 bytes"));
        let server_id = u32::from_le_bytes(take(&mut p, 4, "server id")?.try_into().expect("4 bytes"));
        let name_len = u32::from_le_bytes(take(&mut p, 4, "file name length")?.try_into().expect("4 bytes"));
        let name = take(&mut p, name_len as usize, "file name")?;
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        let pos = u64::from_le_bytes(take(&mut p, 8, "position")?.try_into().expect("8 bytes"));
        let gtids = if flags & BINLOG_THROUGH_GTID != 0 {
            let size = u32::from_le_bytes(take(&mut p, 4, "GTID set size")?.try_into().expect("4 bytes"));
            let data = take(&mut p, size as usize, "GTID set")?;
            GtidSet::decode(data).map_err(|e| format!("malformed GTID set in COM_BINLOG_DUMP_GTID: {}", e.0))?
        } else {
            GtidSet::new()
        };
        Ok(DumpRequest { pos, flags, server_id, file: String::from_utf8_lossy(name).into_owned(), gtids: Some(gtids) })
    }

    pub fn parse(pkt: &[u8]) -> Option<DumpRequest> {
        if pkt.len() < 11 || pkt[0] != 0x12 {
            return None;
        }
        let pos = u64::from(u32::from_le_bytes(pkt[1..5].try_into().ok()?));
        let flags = u16::from_le_bytes(pkt[5..7].try_into().ok()?);
        let server_id = u32::from_le_bytes(pkt[7..11].try_into().ok()?);
        let name = &pkt[11..];
        let name = name.strip_suffix(&[0]).unwrap_or(name);
        Some(DumpRequest { pos, flags, server_id, file: String::from_utf8_lossy(name).into_owned(), gtids: None })
    }
}

async fn refuse(io: &mut Io, log: &Logger, why: &str) -> Result<(), SourceError> {
    info!(log, "relay dump refused"; "error" => why);
    io.write_packet(&proto::err(ER_MASTER_FATAL_ERROR_READING_BINLOG, "HY000", why)).await
}

/// How long a GTID dump waits for a new file's GTID start to be catalogued.
const GTID_START_WAIT: Duration = Duration::from_secs(5);

/// Runs a dump until the client leaves, a non-blocking dump reaches the end, or an error.
pub async fn run(
    ctx: &RelayContext,
    io: &mut Io,
    task: TaskId,
    session: &Session,
    req: DumpRequest,
    log: &Logger,
    client: &ClientGuard,
) -> Result<(), SourceError> {
    let mut rx = ctx.hub.subscribe(task);
    rx.borrow_and_update();
    let mut archive = match load_archive(ctx, task).await {
        Ok(a) => a,
        Err(e) => return refuse(io, log, &format!("binlog-server relay: metadata store unavailable ({e})")).await,
    };
    let gtid_state = match (archive.flavor, session.connect_state()) {
        (Flavor::Mariadb, Some(s)) => match MariadbGtidState::parse(s) {
            Ok(st) => Some(st),
            Err(e) => return refuse(io, log, &format!("malformed @slave_connect_state '{s}': {}", e.0)).await,
        },
        _ => None,
    };
    // A file's GTID start is catalogued with the first checkpoint written in it, which follows
    // the fsync the relay wakes on: a GTID replica asking just then (typically right after the
    // task followed a source switchover) waits for the catalogue, a few checkpoints at most,
    // rather than being refused for good. A refusal while some file's start is unknown (the
    // replica ahead of the archive, say) comes after that wait.
    let catalogued_by = Instant::now() + GTID_START_WAIT;
    let planned = loop {
        let durable = archive.durable.as_ref();
        let planned = match (&gtid_state, &req.gtids, archive.flavor) {
            (Some(st), _, _) => plan::plan_mariadb_gtid(&archive.files, durable, st, session.gtid_strict()),
            (None, Some(_), Flavor::Mariadb) => Err(DumpRefused(
                "COM_BINLOG_DUMP_GTID is MySQL's auto-positioning; this task's source is MariaDB: \
                 set @slave_connect_state (MASTER_USE_GTID) instead"
                    .into(),
            )),
            (None, Some(set), Flavor::Mysql) if req.file.is_empty() => {
                plan::plan_mysql_gtid(&archive.files, durable, set)
            }
            // A file name given with a GTID set: from there, still leaving out what the replica has.
            (None, Some(set), Flavor::Mysql) => plan::plan_position(&archive.files, durable, &req.file, req.pos)
                .map(|p| plan::StartPlan { skip: GtidSkip::excluding(set.clone()), ..p }),
            (None, None, _) => plan::plan_position(&archive.files, durable, &req.file, req.pos),
        };
        // Refused once the wait is over: never an endless round of reconnects.
        if planned.is_ok()
            || gtid_state.is_none()
            || !plan::gtid_start_pending(&archive.files)
            || Instant::now() >= catalogued_by
        {
            break planned;
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(catalogued_by) => {}
        }
        archive = match load_archive(ctx, task).await {
            Ok(a) => a,
            Err(e) => return refuse(io, log, &format!("binlog-server relay: metadata store unavailable ({e})")).await,
        };
    };
    let start = match planned {
        Ok(p) => p,
        Err(DumpRefused(why)) => return refuse(io, log, &why).await,
    };
    let gtid_text = match &req.gtids {
        Some(set) => set.to_string(),
        None => session.connect_state().unwrap_or("").to_string(),
    };
    info!(log, "relay dump"; "replica_server_id" => req.server_id, "file" => %archive.files[start.file].file_name,
          "pos" => start.pos, "gtid" => gtid_text, "non_block" => req.flags & BINLOG_DUMP_NON_BLOCK != 0);
    client.update(|c| {
        c.mode = if gtid_state.is_some() || req.gtids.is_some() { "gtid" } else { "position" }.into();
        c.server_id = Some(req.server_id);
    });
    let mut d = Dumper {
        ctx,
        log,
        client,
        at: (archive.files[start.file].file_name.to_string(), start.pos),
        wants_crc: session.wants_crc(),
        heartbeat: session.heartbeat_period(),
        index: start.file,
        offset: start.offset,
        skip: start.skip,
        clear_fde_created: start.clear_fde_created,
        skipped_to: None,
        out: Vec::with_capacity(WRITE_BATCH + 1024),
        woken_by: None,
        rbuf: Vec::new(),
        ahead: None,
        prefetch: None,
        file: None,
        first_event_checked: start.offset == 4,
    };
    match d.stream(io, &mut archive, &mut rx, start.pos, req.flags & BINLOG_DUMP_NON_BLOCK != 0).await {
        Ok(()) => Ok(()),
        Err(DumpFailure::Refused(why)) => {
            let out = std::mem::take(&mut d.out);
            io.write_framed(&out).await?;
            refuse(io, log, &why).await
        }
        Err(DumpFailure::Reconnect(why)) => {
            let out = std::mem::take(&mut d.out);
            io.write_framed(&out).await?;
            info!(log, "relay dump ended, the replica is to reconnect"; "reason" => why);
            Ok(())
        }
        Err(DumpFailure::Io(e)) => Err(e),
    }
}

enum DumpFailure {
    /// Sent to the replica as 1236.
    Refused(String),
    /// The dump cannot go on from here, but the replica can ask again: the connection is closed
    /// without an error packet, as a source going away closes it. A replica's I/O thread takes a
    /// closed connection as a network error and reconnects (MASTER_CONNECT_RETRY); 1236 would
    /// stop it for good. Used when the task followed a source switchover: a GTID replica then
    /// resumes in the new source's files, a replica by file and position is refused by name.
    Reconnect(String),
    /// The client went away (or the socket failed): nothing to send.
    Io(SourceError),
}

impl From<SourceError> for DumpFailure {
    fn from(e: SourceError) -> Self {
        DumpFailure::Io(e)
    }
}

struct OpenFile {
    file: Arc<std::fs::File>,
    /// The FDE event as stored (resent when a dump starts past it).
    fde_bytes: Vec<u8>,
    fde: Fde,
    server_id: u32,
}

/// A local file opened, and when sealed checked (`check_on_pool`), on the blocking pool: the one
/// about to be sent, or the next one while this one is being sent.
struct Prefetch {
    file_name: crate::binlog::name::BinlogFileName,
    source_identity: String,
    /// What it was checked against (`None`: an open file, not checked).
    expect: Option<crate::pitr::files::SealedCopy>,
    checked: tokio::task::JoinHandle<Checked>,
}

type Checked = Result<Opened, crate::pitr::files::FileAccessError>;

/// A file opened by [`check_on_pool`], with its FDE as read there (read once per file).
struct Opened {
    file: std::fs::File,
    fde: std::io::Result<Vec<u8>>,
}

/// Opens a file (`open`), reads its FDE and, when the catalog calls it sealed, checks it on the
/// blocking pool as [`plan::serve_check`] says: its size (its events are then checked one by one
/// as they are sent, [`event_unchanged`]), or its size and sha256 (the whole file is hashed).
fn check_on_pool(
    f: &FileRecord,
    from_bucket: bool,
    open: impl FnOnce() -> Result<std::fs::File, crate::pitr::files::FileAccessError> + Send + 'static,
) -> tokio::task::JoinHandle<Checked> {
    let (expect, name) = (crate::pitr::files::SealedCopy::of(f), f.file_name.to_string());
    tokio::task::spawn_blocking(move || {
        let mut file = open()?;
        let fde = session::read_fde_at(&file);
        if let Some(expect) = &expect {
            let crc = fde.as_ref().ok().and_then(|b| Fde::parse(b).ok()).is_some_and(|fde| fde.checksum.has_crc());
            let expect = match plan::serve_check(crc, from_bucket) {
                plan::ServeCheck::EachEvent => expect.size_only(),
                plan::ServeCheck::WholeFile => expect.clone(),
            };
            crate::pitr::files::verify_sealed(&mut file, &name, &expect)?;
        }
        Ok(Opened { file, fde })
    })
}

/// An event read from `f` at source position `pos`, checked against its own CRC32 (the source's
/// checksum, stored with it) before it is sent; a mismatch refuses the dump, naming the file and
/// the position, before the event goes out.
fn event_unchanged(f: &FileRecord, pos: u64, event: &[u8]) -> Result<(), DumpFailure> {
    crate::binlog::event::verify_crc32(event).map_err(|e| {
        let detail = format!("the event at position {pos} fails its CRC32: {e}");
        DumpFailure::Refused(if f.state == crate::meta::FileState::Sealed {
            crate::pitr::files::FileAccessError::Changed { name: f.file_name.to_string(), detail }.to_string()
        } else {
            format!("binlog file {} holds a corrupt event ({detail}); local storage changed or lost data", f.file_name)
        })
    })
}

/// The result of [`check_on_pool`] (a failed blocking job is an I/O error naming the file).
async fn checked(job: tokio::task::JoinHandle<Checked>, f: &FileRecord) -> Checked {
    job.await.unwrap_or_else(|e| {
        Err(crate::pitr::files::FileAccessError::Io { path: f.file_name.to_string(), source: std::io::Error::other(e) })
    })
}

impl Prefetch {
    fn start(archive: &Archive, f: &FileRecord) -> Prefetch {
        let (task_dir, path) = (archive.task_dir.clone(), archive.path(f));
        Prefetch {
            file_name: f.file_name.clone(),
            source_identity: f.source_identity.clone(),
            expect: crate::pitr::files::SealedCopy::of(f),
            checked: check_on_pool(f, false, move || crate::pitr::files::open_local(&task_dir, &path)),
        }
    }

    /// Whether this is the file `f` names, checked against what the catalog says of it now (a
    /// sha256 recorded since the check started means checking again).
    fn is_for(&self, f: &FileRecord) -> bool {
        self.file_name == f.file_name
            && self.source_identity == f.source_identity
            && self.expect == crate::pitr::files::SealedCopy::of(f)
            && f.upload.local_deleted_at.is_none()
    }
}

struct Dumper<'a> {
    ctx: &'a RelayContext,
    log: &'a Logger,
    client: &'a ClientGuard,
    /// The source file and position the bytes sent so far reach.
    at: (String, u64),
    wants_crc: Option<bool>,
    heartbeat: Option<Duration>,
    index: usize,
    /// Local offset of the next event to send in `archive.files[index]`.
    offset: u64,
    skip: GtidSkip,
    /// MySQL GTID dump: each file's FDE goes out with `created` zeroed (`StartPlan`).
    clear_fde_created: bool,
    /// Where the last group left out (GTID dump) ends, until an event or a heartbeat tells the
    /// replica: MySQL sends a heartbeat with that position before the next event it sends, and
    /// before it waits, so the replica's position moves past what it already has.
    skipped_to: Option<u64>,
    out: Vec<u8>,
    /// When the durable checkpoint this dump was woken by was published: the next bytes that go
    /// out are its (`relay_send_delay_seconds`).
    woken_by: Option<std::time::Instant>,
    /// The read buffer, kept from one read to the next.
    rbuf: Vec<u8>,
    /// The next chunk of the file being sent, read on the blocking pool while this one is sent.
    ahead: Option<ReadAhead>,
    /// The next file, being opened and checked while this one is sent.
    prefetch: Option<Prefetch>,
    file: Option<OpenFile>,
    /// A position dump's first event is checked to be an event boundary.
    first_event_checked: bool,
}

impl Dumper<'_> {
    /// Opens the current file; a sealed one only while it still has the size it was sealed with,
    /// and, where its events carry no CRC32 (or it comes from the bucket), the sha256 (read on a
    /// blocking thread: a whole file is hashed). The next sealed local file is then opened and
    /// checked in the background (`Prefetch`), so that its check overlaps the sending of this
    /// one instead of holding the dump up between the two.
    async fn open(&mut self, archive: &Archive) -> Result<(), DumpFailure> {
        use crate::pitr::files::FileAccessError;
        let f = &archive.files[self.index];
        let opened = match self.prefetch.take() {
            Some(p) if p.is_for(f) => checked(p.checked, f).await,
            // A copy from the bucket: checked whole against the catalog's size and sha256.
            _ if f.upload.local_deleted_at.is_some() => match self.fetch_from_bucket(f).await {
                Ok(file) => checked(check_on_pool(f, true, move || Ok(file)), f).await,
                Err(e) => Err(e),
            },
            _ => checked(Prefetch::start(archive, f).checked, f).await,
        };
        let Opened { file, fde } = opened.map_err(|e| match e {
            FileAccessError::Changed { .. } => DumpFailure::Refused(e.to_string()),
            e => DumpFailure::Refused(format!("cannot open binlog file {}: {e}", f.file_name)),
        })?;
        let fde_bytes =
            fde.map_err(|e| DumpFailure::Refused(format!("cannot read the FDE of {}: {e}", f.file_name)))?;
        let fde =
            Fde::parse(&fde_bytes).map_err(|e| DumpFailure::Refused(format!("bad FDE in {}: {e}", f.file_name)))?;
        if fde.checksum.has_crc() {
            // Resent on its own by a dump that starts past it, with a new CRC: checked here.
            event_unchanged(f, 4, &fde_bytes)?;
        }
        let server_id = EventHeader::parse(&fde_bytes).map(|h| h.server_id).unwrap_or(0);
        self.file = Some(OpenFile { file: Arc::new(file), fde_bytes, fde, server_id });
        self.prefetch = archive
            .files
            .get(self.index + 1)
            .filter(|n| n.state == crate::meta::FileState::Sealed && n.upload.local_deleted_at.is_none())
            .map(|n| Prefetch::start(archive, n));
        Ok(())
    }

    /// A sealed file retention removed from local disk, from its verified copy in the bucket:
    /// downloaded into an unlinked file under the data directory (it disappears with its
    /// handle); the caller checks size and sha256 against the catalog before serving it.
    async fn fetch_from_bucket(&self, f: &FileRecord) -> Result<std::fs::File, crate::pitr::files::FileAccessError> {
        use crate::pitr::files::FileAccessError;
        let only = |why: &str| FileAccessError::Io {
            path: f.file_name.to_string(),
            source: std::io::Error::other(format!("no longer on local disk (retention removed it), {why}")),
        };
        let objects = self.ctx.objects.as_ref().ok_or_else(|| only("and upload is not enabled on this server"))?;
        let key = match (&f.upload.object_key, f.held_in_bucket()) {
            (Some(key), true) => key.clone(),
            _ => return Err(only("and the bucket holds no verified copy")),
        };
        let dir = crate::layout::DataLayout::new(&self.ctx.data_dir).relay_fetch_dir();
        let path = dir.join(format!("{}-{}", f.file_name, rand::random::<u64>()));
        let io = |e: std::io::Error| FileAccessError::Io { path: f.file_name.to_string(), source: e };
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let fetched = objects.download_to(&key, &path).await;
        let file = fetched
            .map_err(|e| io(std::io::Error::other(format!("bucket object {key}: {e}"))))
            .and_then(|_| std::fs::File::open(&path).map_err(io));
        let _ = std::fs::remove_file(&path);
        info!(self.log, "relay dump: a file from the bucket"; "file" => %f.file_name, "key" => key, "ok" => file.is_ok());
        file
    }

    fn push(&mut self, io: &mut Io, event: &[u8]) {
        // One packet per event: the OK byte, then the event as stored, framed straight from the
        // bytes read (one copy between the file and the socket).
        io.frame_with_status_into(0x00, event, &mut self.out);
    }

    async fn flush(&mut self, io: &mut Io) -> Result<(), SourceError> {
        if !self.out.is_empty() {
            let out = std::mem::take(&mut self.out);
            io.write_framed(&out).await?;
            if let Some(at) = self.woken_by.take() {
                crate::telemetry::metrics::metrics().relay_send_delay_seconds.observe(at.elapsed().as_secs_f64());
            }
            self.client.sent(out.len() as u64, &self.at.0, self.at.1);
            self.out = out;
            self.out.clear();
        }
        Ok(())
    }

    async fn stream(
        &mut self,
        io: &mut Io,
        archive: &mut Archive,
        rx: &mut tokio::sync::watch::Receiver<Option<super::hub::Published>>,
        start_pos: u64,
        non_block: bool,
    ) -> Result<(), DumpFailure> {
        self.open(archive).await?;
        let of = self.file.as_ref().expect("opened above");
        let file_crc = of.fde.checksum.has_crc();
        if self.wants_crc.is_none() && file_crc {
            return Err(DumpFailure::Refused(
                "Slave can not handle replication events with the checksum that master is configured to log \
                 (the replica did not set @master_binlog_checksum)"
                    .into(),
            ));
        }
        let server_id = of.server_id;
        let name = archive.files[self.index].file_name.to_string();
        let rotate = events::artificial_rotate(server_id, &name, start_pos, self.wants_crc.unwrap_or(false));
        self.push(io, &rotate);
        if self.offset > 4 {
            let opened = self.file.as_ref().expect("opened");
            let sent = events::resent_fde(&opened.fde_bytes, &opened.fde);
            self.push(io, &sent);
        }
        let mut last_write = Instant::now();
        loop {
            let f = archive.files[self.index].clone();
            let limit = plan::readable_len(&f, archive.durable.as_ref());
            if let Some(limit) = limit
                && self.offset < limit
            {
                self.send_range(io, &f, limit).await?;
                last_write = Instant::now();
                continue;
            }
            self.announce_skipped(io, &f);
            self.flush(io).await?;
            // The next file once it holds durable bytes (its FDE may not even be written before).
            let next_ready = archive
                .files
                .get(self.index + 1)
                .and_then(|n| plan::readable_len(n, archive.durable.as_ref()))
                .is_some_and(|len| len > 4);
            if f.state == crate::meta::FileState::Sealed && self.offset >= f.size && next_ready {
                // The next file: announced by an artificial ROTATE whose CRC follows the file left.
                let crc = self.file.as_ref().is_some_and(|o| o.fde.checksum.has_crc());
                let server_id = self.file.as_ref().map_or(0, |o| o.server_id);
                self.index += 1;
                self.offset = 4;
                let next = archive.files[self.index].file_name.to_string();
                if archive.files[self.index].start_pos > 4 {
                    return Err(DumpFailure::Refused(format!(
                        "binlog-server holds {next} only from position {} (joined mid-way); the dump cannot continue",
                        archive.files[self.index].start_pos
                    )));
                }
                let f = &archive.files[self.index];
                if f.upload.local_deleted_at.is_some() && !f.held_in_bucket() {
                    return Err(DumpFailure::Refused(format!(
                        "binlog file {next} is no longer on local disk (retention removed it) and the bucket holds no \
                         verified copy of it"
                    )));
                }
                self.push(io, &events::artificial_rotate(server_id, &next, 4, crc));
                self.open(archive).await?;
                continue;
            }
            if non_block {
                io.frame_into(&proto::eof(), &mut self.out);
                self.flush(io).await?;
                return Ok(());
            }
            // Wait: a new durable checkpoint, the heartbeat period, or the client leaving.
            let beat_at = self.heartbeat.map(|p| last_write + p);
            // Nothing of the checkpoint that woke us was left to send (or it went out above).
            self.woken_by = None;
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(DumpFailure::Refused("the task was deleted".into()));
                    }
                    let published = rx.borrow_and_update().clone();
                    self.woken_by = published.as_ref().map(|p| p.at);
                    let cp = published.map(|p| p.checkpoint);
                    let same_file = matches!((&cp, archive.durable.as_ref()), (Some(a), Some(b)) if a.file == b.file && a.source_identity == b.source_identity);
                    if same_file {
                        archive.durable = cp;
                    } else {
                        self.reload(archive).await?;
                    }
                }
                _ = sleep_until(beat_at) => {
                    let pos = plan::source_pos(&f, self.offset);
                    let (server_id, crc) =
                        self.file.as_ref().map_or((0, false), |o| (o.server_id, o.fde.checksum.has_crc()));
                    let now = chrono::Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32;
                    let beat = events::idle_heartbeat(archive.flavor, now, server_id, f.file_name.as_str(), pos, crc);
                    self.push(io, &beat);
                    self.flush(io).await?;
                    last_write = Instant::now();
                }
                r = io.read_packet() => {
                    // A replica sends nothing during a dump: this is it leaving (or a KILL).
                    return match r {
                        Ok(_) => Ok(()),
                        Err(e) => Err(DumpFailure::Io(e)),
                    };
                }
            }
        }
    }

    /// The heartbeat that tells the replica where the groups just left out end.
    fn announce_skipped(&mut self, io: &mut Io, f: &FileRecord) {
        if let Some(pos) = self.skipped_to.take() {
            let (server_id, crc) = self.file.as_ref().map_or((0, false), |o| (o.server_id, o.fde.checksum.has_crc()));
            self.push(io, &events::heartbeat(server_id, f.file_name.as_str(), pos, crc));
        }
    }

    /// Whether the event `ev` at local offset `ev_at` of `f` is sent (a GTID dump leaves the
    /// replica's transactions out), and the bytes that go out for it.
    fn filter<'e>(
        &mut self,
        f: &FileRecord,
        ev: &'e [u8],
        ev_at: u64,
        has_crc: bool,
    ) -> Result<Option<Cow<'e, [u8]>>, DumpFailure> {
        let refused = |DumpRefused(m)| DumpFailure::Refused(m);
        let bad = |e: crate::binlog::event::EventError| DumpFailure::Refused(e.to_string());
        let send = match ev[4] {
            types::MARIA_GTID => {
                let g = parse_mariadb_gtid(ev, has_crc).map_err(bad)?;
                self.skip.on_gtid(g.gtid).map_err(refused)?
            }
            t @ (types::GTID | types::ANONYMOUS_GTID | types::GTID_TAGGED) if self.skip.excludes() => {
                let (uuid, tag, gno) = if t == types::GTID_TAGGED {
                    parse_tagged_gtid(ev, has_crc).map_err(bad)?
                } else {
                    let (uuid, gno) = parse_mysql_gtid(ev, has_crc).map_err(bad)?;
                    (uuid, String::new(), gno)
                };
                let gtid = (t != types::ANONYMOUS_GTID).then_some((&uuid, tag.as_str(), gno));
                self.skip.on_mysql_gtid(gtid, f.file_name.as_str(), plan::source_pos(f, ev_at)).map_err(refused)?
            }
            t => self.skip.on_other(t),
        };
        if !send {
            return Ok(None);
        }
        if ev[4] == types::FORMAT_DESCRIPTION && self.clear_fde_created {
            let fde = &self.file.as_ref().expect("a file is open while sending").fde;
            return Ok(Some(Cow::Owned(events::gtid_dump_fde(ev, fde))));
        }
        Ok(Some(Cow::Borrowed(ev)))
    }

    /// Re-reads the catalog after the checkpoint left the file it was in (a seal, a new file).
    async fn reload(&mut self, archive: &mut Archive) -> Result<(), DumpFailure> {
        let current = archive.files[self.index].clone();
        let fresh = load_archive(self.ctx, current_task(archive))
            .await
            .map_err(|e| DumpFailure::Refused(format!("binlog-server relay: metadata store unavailable ({e})")))?;
        let Some(i) = fresh
            .files
            .iter()
            .position(|f| f.file_name == current.file_name && f.source_identity == current.source_identity)
        else {
            let switched = fresh.durable.as_ref().is_some_and(|cp| cp.source_identity != current.source_identity);
            if switched {
                return Err(DumpFailure::Reconnect(format!(
                    "the task now follows another source; {} of {} is no longer served",
                    current.file_name, current.source_identity
                )));
            }
            warn!(self.log, "relay dump: the file being served left the catalog"; "file" => %current.file_name);
            return Err(DumpFailure::Refused(format!(
                "binlog file {} is no longer served (the task's source changed, or the file was removed)",
                current.file_name
            )));
        };
        *archive = fresh;
        self.index = i;
        Ok(())
    }

    /// Sends the events of `f` from `self.offset` up to local offset `limit`.
    async fn send_range(&mut self, io: &mut Io, f: &FileRecord, limit: u64) -> Result<(), DumpFailure> {
        let of = self.file.as_ref().expect("a file is open while sending");
        let (file, has_crc) = (of.file.clone(), of.fde.checksum.has_crc());
        let want = ((limit - self.offset) as usize).min(READ_CHUNK);
        let at = self.offset;
        let cannot_read =
            |e: std::io::Error| DumpFailure::Refused(format!("cannot read binlog file {} at {at}: {e}", f.file_name));
        // A few bytes at the open file's durable end were written moments ago: they are in the
        // page cache, and reading them in place costs less than a trip to the blocking pool
        // (which every client of a task makes on every checkpoint when following live).
        let inline = f.state != crate::meta::FileState::Sealed && want <= INLINE_READ_MAX;
        let (mut buf, read) = match self.ahead.take() {
            Some(a) if a.serves(&file, at, want) => a.bytes().await,
            _ => read_at(file.clone(), at, want, std::mem::take(&mut self.rbuf), inline).await,
        };
        let mut got = read.map_err(cannot_read)?;
        // While these events are checked and sent, the next chunk is read (catch-up only: at the
        // live tail a read is a few bytes, made in place).
        if !inline {
            let next = at + complete_events_len(&buf[..got]) as u64;
            if next > at && next < limit {
                let len = ((limit - next) as usize).min(READ_CHUNK);
                self.ahead = Some(ReadAhead::start(file.clone(), next, len, std::mem::take(&mut self.rbuf)));
            }
        }
        let mut used = 0usize;
        loop {
            let rest = &buf[used..got];
            if rest.len() < HEADER_LEN {
                break;
            }
            let size = u32::from_le_bytes([rest[9], rest[10], rest[11], rest[12]]) as usize;
            let ev_at = at + used as u64;
            if size < HEADER_LEN || ev_at + size as u64 > limit {
                return Err(DumpFailure::Refused(format!(
                    "bogus data in log event: {} at position {} holds no event of a plausible size",
                    f.file_name,
                    plan::source_pos(f, ev_at)
                )));
            }
            if size > rest.len() {
                if used > 0 {
                    break;
                }
                // One event larger than a read chunk: read it whole.
                let read;
                (buf, read) = read_at(file.clone(), at, size, buf, false).await;
                got = read.map_err(cannot_read)?;
                if got < size {
                    break;
                }
                continue;
            }
            let ev = &buf[used..used + size];
            if !self.first_event_checked {
                self.first_event_checked = true;
                let h = EventHeader::parse(ev).map_err(|e| DumpFailure::Refused(e.to_string()))?;
                let pos = plan::source_pos(f, ev_at);
                if u64::from(h.log_pos) != (pos + size as u64) & 0xFFFF_FFFF {
                    return Err(DumpFailure::Refused(format!(
                        "Client requested master to start replication from impossible position {pos} in {}: \
                         no event starts there",
                        f.file_name
                    )));
                }
            }
            if has_crc {
                event_unchanged(f, plan::source_pos(f, ev_at), ev)?;
            }
            match self.filter(f, ev, ev_at, has_crc)? {
                Some(out) => {
                    self.announce_skipped(io, f);
                    self.push(io, &out);
                }
                None => self.skipped_to = Some(plan::source_pos(f, ev_at + size as u64)),
            }
            used += size;
            if self.out.len() >= WRITE_BATCH {
                self.offset = at + used as u64;
                self.at = (f.file_name.to_string(), plan::source_pos(f, self.offset));
                self.flush(io).await?;
            }
        }
        if used == 0 {
            return Err(DumpFailure::Refused(format!(
                "binlog file {} is shorter than its durable checkpoint says (local storage lost data?)",
                f.file_name
            )));
        }
        self.offset = at + used as u64;
        self.at = (f.file_name.to_string(), plan::source_pos(f, self.offset));
        // Kept for the next read, unless one large event grew it.
        if buf.len() <= READ_CHUNK {
            self.rbuf = buf;
        }
        Ok(())
    }
}

/// A read on the blocking pool: of the next chunk of a file, started before the current chunk
/// is sent, or one the dump waits for at once ([`read_at`]).
struct ReadAhead {
    file: Arc<std::fs::File>,
    at: u64,
    len: usize,
    job: tokio::task::JoinHandle<(Vec<u8>, std::io::Result<usize>)>,
}

impl ReadAhead {
    fn start(file: Arc<std::fs::File>, at: u64, len: usize, buf: Vec<u8>) -> ReadAhead {
        let job = tokio::task::spawn_blocking({
            let file = file.clone();
            move || read_blocking(&file, at, len, buf)
        });
        ReadAhead { file, at, len, job }
    }

    /// Whether it read what a read of `want` bytes at `at` of `file` asks for, or a first part of
    /// it (never more: bytes past the durable end must not be sent).
    fn serves(&self, file: &Arc<std::fs::File>, at: u64, want: usize) -> bool {
        Arc::ptr_eq(&self.file, file) && self.at == at && self.len <= want
    }

    async fn bytes(self) -> (Vec<u8>, std::io::Result<usize>) {
        self.job.await.unwrap_or_else(|e| (Vec::new(), Err(std::io::Error::other(e))))
    }
}

/// How many bytes at the start of `buf` are whole events (by their headers' sizes; a size that
/// is not plausible ends the count, and the sending loop then says what is wrong).
fn complete_events_len(buf: &[u8]) -> usize {
    let mut end = 0usize;
    while let Some(h) = buf.get(end..end + HEADER_LEN) {
        let size = u32::from_le_bytes([h[9], h[10], h[11], h[12]]) as usize;
        if size < HEADER_LEN || end + size > buf.len() {
            break;
        }
        end += size;
    }
    end
}

fn current_task(archive: &Archive) -> TaskId {
    TaskId(archive.files.first().map_or(0, |f| f.task_id))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads up to `len` bytes at `offset` into `buf` (grown to `len` if shorter), on the blocking
/// pool unless `inline`; gives the buffer back with how many bytes were read (short only at the
/// end of file).
async fn read_at(
    file: Arc<std::fs::File>,
    offset: u64,
    len: usize,
    buf: Vec<u8>,
    inline: bool,
) -> (Vec<u8>, std::io::Result<usize>) {
    if inline {
        return read_blocking(&file, offset, len, buf);
    }
    ReadAhead::start(file, offset, len, buf).bytes().await
}

/// Reads up to `len` bytes at `offset` into `buf` (grown to `len` if shorter); short only at the
/// end of file.
fn read_blocking(file: &std::fs::File, offset: u64, len: usize, mut buf: Vec<u8>) -> (Vec<u8>, std::io::Result<usize>) {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..len], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (buf, Err(e)),
        }
    }
    (buf, Ok(got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_requests_parse() {
        let mut pkt = vec![0x12];
        pkt.extend_from_slice(&1234u32.to_le_bytes());
        pkt.extend_from_slice(&BINLOG_DUMP_NON_BLOCK.to_le_bytes());
        pkt.extend_from_slice(&77u32.to_le_bytes());
        pkt.extend_from_slice(b"mysql-bin.000003");
        assert_eq!(
            DumpRequest::parse(&pkt),
            Some(DumpRequest { pos: 1234, flags: 1, server_id: 77, file: "mysql-bin.000003".into(), gtids: None })
        );
        assert_eq!(DumpRequest::parse(&pkt[..8]), None);
    }

    #[test]
    fn dump_gtid_requests_parse_untagged_and_tagged_sets() {
        use crate::source::dump::com_binlog_dump_gtid;
        for text in [
            "",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:9",
            "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,3e11fa47-71ca-11e1-9e33-c80aa9429562:blue:1-2",
        ] {
            // What our own MySQL-flavor client sends.
            let set = GtidSet::parse(text).unwrap();
            let req = DumpRequest::parse_gtid(&com_binlog_dump_gtid(77, &set)).unwrap();
            assert_eq!(
                req,
                DumpRequest {
                    pos: 4,
                    flags: BINLOG_THROUGH_GTID,
                    server_id: 77,
                    file: String::new(),
                    gtids: Some(set)
                },
                "{text}"
            );
        }
        // With a file name, and a truncated packet.
        let mut pkt = vec![0x1e, 0, 0];
        pkt.extend_from_slice(&9u32.to_le_bytes());
        pkt.extend_from_slice(&10u32.to_le_bytes());
        pkt.extend_from_slice(b"bin.000002");
        pkt.extend_from_slice(&120u64.to_le_bytes());
        let req = DumpRequest::parse_gtid(&pkt).unwrap();
        assert_eq!((req.file.as_str(), req.pos, req.gtids), ("bin.000002", 120, Some(GtidSet::new())));
        let e = DumpRequest::parse_gtid(&pkt[..pkt.len() - 3]).unwrap_err();
        assert!(e.contains("position"), "{e}");
        let mut bad = crate::source::dump::com_binlog_dump_gtid(1, &GtidSet::new());
        bad.truncate(bad.len() - 1);
        assert!(DumpRequest::parse_gtid(&bad).unwrap_err().contains("GTID set"));
    }

    /// An event of `size` bytes (a header naming its size, then filler).
    fn event(size: usize) -> Vec<u8> {
        let mut e = vec![0xAB; size];
        e[9..13].copy_from_slice(&(size as u32).to_le_bytes());
        e
    }

    #[test]
    fn only_whole_events_count_towards_the_next_read() {
        let (a, b, c) = (event(19), event(300), event(4096));
        let all: Vec<u8> = [a.clone(), b.clone(), c.clone()].concat();
        let mut bad = event(HEADER_LEN);
        bad[9..13].copy_from_slice(&3u32.to_le_bytes());
        let cases: Vec<(&str, Vec<u8>, usize)> = vec![
            ("nothing", vec![], 0),
            ("a header cut short", all[..10].to_vec(), 0),
            ("one event", a.clone(), 19),
            ("three events", all.clone(), 19 + 300 + 4096),
            ("the last one cut", all[..all.len() - 1].to_vec(), 19 + 300),
            ("the last one's header only", all[..19 + 300 + HEADER_LEN].to_vec(), 19 + 300),
            ("an event larger than the buffer", c[..1000].to_vec(), 0),
            ("an implausible size ends the count", [a.clone(), bad.clone(), a.clone()].concat(), 19),
        ];
        for (what, buf, want) in cases {
            assert_eq!(complete_events_len(&buf), want, "{what}");
        }
    }
}
