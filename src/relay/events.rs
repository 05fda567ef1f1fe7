//! The events a relay makes up, as a source would: the artificial ROTATE that names the file a
//! dump reads, the FDE re-sent when a dump starts inside a file, and heartbeats. Pure code.

use crate::binlog::Flavor;
use crate::binlog::event::{ChecksumAlg, FDE_CREATED_OFFSET, Fde, HEADER_LEN, LOG_POS_OFFSET, flags, types};

fn header(type_code: u8, server_id: u32, size: usize, log_pos: u32, flags: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(size);
    h.extend_from_slice(&0u32.to_le_bytes()); // timestamp 0: made up, not logged
    h.push(type_code);
    h.extend_from_slice(&server_id.to_le_bytes());
    h.extend_from_slice(&(size as u32).to_le_bytes());
    h.extend_from_slice(&log_pos.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h
}

fn finish(mut ev: Vec<u8>, crc: bool) -> Vec<u8> {
    if crc {
        let c = crc32fast::hash(&ev);
        ev.extend_from_slice(&c.to_le_bytes());
    }
    ev
}

/// The ROTATE a source sends first in a dump (and when it moves to the next file): "you are
/// reading `name` from `pos`". `log_pos` 0 and the artificial flag: it is in no file.
pub fn artificial_rotate(server_id: u32, name: &str, pos: u64, crc: bool) -> Vec<u8> {
    let size = HEADER_LEN + 8 + name.len() + if crc { 4 } else { 0 };
    let mut ev = header(types::ROTATE, server_id, size, 0, flags::ARTIFICIAL);
    ev.extend_from_slice(&pos.to_le_bytes());
    ev.extend_from_slice(name.as_bytes());
    finish(ev, crc)
}

/// A heartbeat: the dump is alive and at `log_pos` of `name`.
pub fn heartbeat(server_id: u32, name: &str, log_pos: u64, crc: bool) -> Vec<u8> {
    stamped_heartbeat(0, server_id, name, log_pos, crc)
}

/// A heartbeat with a timestamp: MySQL stamps the heartbeats it sends while waiting with the
/// time (those that follow skipped transactions, and MariaDB's, carry 0).
pub fn stamped_heartbeat(timestamp: u32, server_id: u32, name: &str, log_pos: u64, crc: bool) -> Vec<u8> {
    let size = HEADER_LEN + name.len() + if crc { 4 } else { 0 };
    let mut ev = header(types::HEARTBEAT, server_id, size, log_pos.min(u64::from(u32::MAX)) as u32, 0);
    ev[..4].copy_from_slice(&timestamp.to_le_bytes());
    ev.extend_from_slice(name.as_bytes());
    finish(ev, crc)
}

/// The heartbeat a dump sends while it waits at `log_pos` of `name`. Its CRC follows the
/// checksum of the file being sent (`file_crc`, from its FDE), as a source's does: a replica
/// verifies every event after an FDE with that FDE's algorithm, whatever `@master_binlog_checksum`
/// it set when it connected (that value only covers the artificial ROTATE before the first FDE).
/// MySQL stamps it with the time; MariaDB's carry 0.
pub fn idle_heartbeat(flavor: Flavor, now: u32, server_id: u32, name: &str, log_pos: u64, file_crc: bool) -> Vec<u8> {
    match flavor {
        Flavor::Mysql => stamped_heartbeat(now, server_id, name, log_pos, file_crc),
        Flavor::Mariadb => heartbeat(server_id, name, log_pos, file_crc),
    }
}

/// The file's FDE as re-sent to a dump that starts past it: `log_pos` zeroed (the replica must
/// not take it for a position), its CRC recomputed in a CRC32 file (as the source does; in a
/// NONE file the stored CRC is left as written).
pub fn resent_fde(stored: &[u8], fde: &Fde) -> Vec<u8> {
    let mut ev = stored.to_vec();
    ev[LOG_POS_OFFSET..LOG_POS_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
    if fde.checksum == ChecksumAlg::Crc32 && ev.len() >= HEADER_LEN + 4 {
        let body = ev.len() - 4;
        let c = crc32fast::hash(&ev[..body]);
        ev[body..].copy_from_slice(&c.to_le_bytes());
    }
    ev
}

/// The file's FDE as a MySQL source sends it in a GTID dump that skips the file's first
/// transaction: `created` zeroed (the replica keeps its temporary tables), the in-use flag
/// cleared, `log_pos` kept, the CRC recomputed in a CRC32 file.
pub fn gtid_dump_fde(stored: &[u8], fde: &Fde) -> Vec<u8> {
    let mut ev = stored.to_vec();
    if ev.len() >= FDE_CREATED_OFFSET + 4 {
        ev[FDE_CREATED_OFFSET..FDE_CREATED_OFFSET + 4].copy_from_slice(&0u32.to_le_bytes());
    }
    crate::binlog::event::clear_in_use_flag(&mut ev);
    if fde.checksum == ChecksumAlg::Crc32 && ev.len() >= HEADER_LEN + 4 {
        let body = ev.len() - 4;
        let c = crc32fast::hash(&ev[..body]);
        ev[body..].copy_from_slice(&c.to_le_bytes());
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binlog::event::{EventHeader, parse_rotate, verify_crc32};

    #[test]
    fn artificial_rotates_read_back_with_and_without_crc() {
        for crc in [false, true] {
            let ev = artificial_rotate(7, "mysql-bin.000042", 1234, crc);
            let h = EventHeader::parse(&ev).unwrap();
            assert_eq!((h.type_code, h.server_id, h.log_pos), (types::ROTATE, 7, 0));
            assert!(h.is_artificial());
            let (pos, name) = parse_rotate(&ev, crc).unwrap();
            assert_eq!((pos, name.as_str()), (1234, "mysql-bin.000042"));
            if crc {
                verify_crc32(&ev).unwrap();
            }
        }
    }

    #[test]
    fn heartbeats_carry_the_position_and_the_file() {
        let ev = heartbeat(3, "b.000001", 999, true);
        let h = EventHeader::parse(&ev).unwrap();
        assert_eq!((h.type_code, h.log_pos), (types::HEARTBEAT, 999));
        assert_eq!(&ev[HEADER_LEN..ev.len() - 4], b"b.000001");
        verify_crc32(&ev).unwrap();
        let stamped = stamped_heartbeat(1_700_000_000, 3, "b.000001", 999, true);
        let h = EventHeader::parse(&stamped).unwrap();
        assert_eq!((h.timestamp, h.log_pos), (1_700_000_000, 999));
        verify_crc32(&stamped).unwrap();
    }

    /// A replica verifies events after an FDE with that FDE's checksum: an idle heartbeat in a
    /// CRC32 file carries a CRC and one in a NONE file does not, for both flavors (a MariaDB
    /// heartbeat once followed the replica's `@master_binlog_checksum` instead, and a replica
    /// that had been told NONE stopped on the first one with "event checksum verification
    /// failed").
    #[test]
    fn idle_heartbeats_follow_the_files_checksum() {
        for flavor in [Flavor::Mariadb, Flavor::Mysql] {
            let with = idle_heartbeat(flavor, 1_700_000_000, 1, "b.000007", 389, true);
            verify_crc32(&with).unwrap();
            assert_eq!(with.len(), HEADER_LEN + "b.000007".len() + 4, "{flavor:?}");
            let without = idle_heartbeat(flavor, 1_700_000_000, 1, "b.000007", 389, false);
            assert_eq!(&without[HEADER_LEN..], b"b.000007", "{flavor:?}: no CRC in a NONE file");
            let h = EventHeader::parse(&with).unwrap();
            assert_eq!((h.type_code, h.log_pos), (types::HEARTBEAT, 389));
            let stamp = if flavor == Flavor::Mysql { 1_700_000_000 } else { 0 };
            assert_eq!(h.timestamp, stamp, "{flavor:?}");
        }
    }

    #[test]
    fn a_resent_fde_of_a_real_file_keeps_a_valid_crc() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        // Any real CRC32 binlog will do: the first MariaDB one the fixtures hold.
        let file = walk(&dir).into_iter().find_map(|p| {
            let data = std::fs::read(&p).ok()?;
            let ev = crate::binlog::event::FileEvents::new(&data).ok()?.next()?.1.to_vec();
            let fde = Fde::parse(&ev).ok()?;
            (fde.checksum == ChecksumAlg::Crc32).then_some((ev, fde))
        });
        let (stored, fde) = file.expect("a CRC32 binlog fixture under tests/fixtures");
        let sent = resent_fde(&stored, &fde);
        assert_eq!(EventHeader::parse(&sent).unwrap().log_pos, 0);
        verify_crc32(&sent).unwrap();
        assert_eq!(sent.len(), stored.len());
    }

    #[test]
    fn a_gtid_dump_fde_of_a_real_mysql_file_has_created_zeroed_and_a_valid_crc() {
        // MySQL 8.0.28, copied while the server wrote it: in-use flag on, `created` set.
        let data = crate::binlog::fixture("mysql-enum-string-set.000001");
        let (_, stored) = crate::binlog::event::FileEvents::new(&data).unwrap().next().unwrap();
        let fde = Fde::parse(stored).unwrap();
        assert_ne!(fde.create_timestamp, 0);
        let sent = gtid_dump_fde(stored, &fde);
        let back = Fde::parse(&sent).unwrap();
        assert_eq!(back.create_timestamp, 0);
        let h = EventHeader::parse(&sent).unwrap();
        assert_eq!(u64::from(h.log_pos), 4 + stored.len() as u64, "log_pos kept");
        assert_eq!(h.flags & flags::BINLOG_IN_USE, 0);
        verify_crc32(&sent).unwrap();
        assert_eq!(sent.len(), stored.len());
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    out.extend(walk(&p));
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }
}
