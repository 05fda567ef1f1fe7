//! Pure code on binlog bytes: event framing, checksums, GTID sets, file names, transaction
//! boundaries, file summaries, and where a source position lies in our copy of a file.
//!
//! No actors, no async, no database, no sockets: everything here is a function of its inputs,
//! which is why this is the most tested folder. Parsers here read bytes from the network and
//! from disk: they must return errors on any input, never panic.

pub mod event;
pub mod gtid;
pub mod name;
pub mod stream;
pub mod summary;
pub mod tail;

crate::string_enum::string_enum!(
    /// The source server's dialect of the replication protocol.
    Flavor {
        Mysql => "mysql",
        Mariadb => "mariadb",
    }
);

/// Our file's offset of source position `source_pos`, in a file whose first event after the
/// header (`header_len` bytes: the magic, plus the FDE of a file joined mid-way) is at source
/// position `start_pos`. A file fetched from position 4 has the source's offsets.
pub fn local_offset(start_pos: u64, header_len: u64, source_pos: u64) -> u64 {
    if start_pos <= 4 { source_pos } else { source_pos - start_pos + header_len }
}

/// The source position of our file's offset `offset` (the inverse of [`local_offset`]).
pub fn source_pos(start_pos: u64, header_len: u64, offset: u64) -> u64 {
    if start_pos <= 4 { offset } else { offset - header_len + start_pos }
}

/// Where the real MySQL binlog fixtures live: `$BINLOG_FIXTURES`, else the workplace's
/// `shared/fixtures/mysql-binlogs` next to the checkout, else at its absolute home.
#[cfg(test)]
pub(crate) fn fixture_dir() -> std::path::PathBuf {
    let candidates = [
        std::env::var("BINLOG_FIXTURES").ok(),
        Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/mysql-binlogs").to_string()),
        Some("/work/shared/fixtures/mysql-binlogs".to_string()),
    ];
    for c in candidates.into_iter().flatten() {
        let p = std::path::PathBuf::from(c);
        if p.join("mariadb-bin.000001").is_file() {
            return p;
        }
    }
    panic!("MySQL binlog fixtures not found: set BINLOG_FIXTURES to the folder holding mariadb-bin.000001");
}

#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let p = fixture_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// A file of this repository's `tests/fixtures/<dir>/`: bytes a real MariaDB 10.11 wrote or
/// sent (each folder's README says how they were made).
#[cfg(test)]
pub(crate) fn local_fixture(dir: &str, name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir).join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// Files a real MariaDB 10.11 wrote under `binlog_checksum` NONE and CRC32, and the FDE as it
/// re-sends it (`tests/fixtures/mariadb-10.11-checksum/README.md` says how they were made).
#[cfg(test)]
pub(crate) fn maria_checksum_fixture(name: &str) -> Vec<u8> {
    local_fixture("mariadb-10.11-checksum", name)
}
