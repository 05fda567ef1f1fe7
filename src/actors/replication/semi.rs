//! Semi-sync at connect: whether the source offers it, and whether this dump announces it now
//! or hands over later (`semisync::announce_when`).

use super::*;

/// Asks the source for semi-sync; says so (warning event) when it cannot be had, and streams
/// asynchronously then. Announces it before this dump only when the dump starts in the source's
/// current file (`semisync::announce_when`); otherwise the dump streams asynchronously and hands
/// over once the durable checkpoint reaches that file. `current`: the source's current file when
/// the caller has just asked for it (a LATEST start), so it is not asked twice. Returns whether
/// the stream carries semi-sync headers, and the hand-over point of an asynchronous one.
pub(super) async fn semi_sync_for(
    p: &ReplicationParams,
    conn: &mut SourceConn,
    info: &dump::SourceInfo,
    from: &DumpFrom,
    current: Option<crate::binlog::name::BinlogFileName>,
    report: &Recipient<ReplicationEvent>,
) -> Result<(bool, Option<semisync::Announce>), ReplError> {
    let announce = match dump::semi_sync_support(conn).await? {
        semisync::Support::Active { announce } => announce,
        semisync::Support::Unavailable { reason } => {
            warn!(p.log, "semi-sync requested but not available"; "reason" => &reason);
            report.do_send(ReplicationEvent::SemiSync { active: false, reason: Some(reason) });
            return Ok((false, None));
        }
    };
    let current = match current {
        Some(f) => Some(f),
        None => match dump::current_file(conn, info).await {
            Ok(f) => Some(f),
            Err(e) => {
                debug!(p.log, "cannot ask the source for its current binlog file; announcing semi-sync now"; "error" => %e);
                None
            }
        },
    };
    let from_file = match from {
        DumpFrom::FilePos { file, .. } => Some(file),
        DumpFrom::Gtid(_) => None,
    };
    match semisync::announce_when(from_file, current.as_ref()) {
        semisync::Announce::Now => {
            dump::announce_semi_sync(conn, announce).await?;
            info!(p.log, "semi-synchronous replica: the source's commits wait for our fsync"; "announced" => announce);
            report.do_send(ReplicationEvent::SemiSync { active: true, reason: None });
            Ok((true, None))
        }
        semisync::Announce::OnceIn(file) => {
            info!(p.log, "catching up asynchronously; semi-sync from the source's current file on"; "file" => %file);
            report.do_send(ReplicationEvent::SemiSync { active: false, reason: None });
            Ok((false, Some(semisync::Announce::OnceIn(file))))
        }
    }
}
