//! The settlement ledger file: an append-only log of checksummed JSON lines.
//!
//! ```text
//! <crc: 16 hex> <json>\n      first line: {"type":"header","format":…,"version":1}
//! <crc: 16 hex> <json>\n      then one line per applied update or registered proof
//! ```
//!
//! A record counts once its line, newline included, is written and fsynced; only then does the
//! settlement answer. So after a crash the file is every acknowledged record plus at most one
//! incomplete last line (no newline), which opening for writing cuts off and reading ignores.
//! Anything else that does not parse — a bad checksum, a complete line that is not JSON, a
//! record out of order — is corruption and an error naming the file and line.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use orch_core::error::{Error, Result};
use orch_core::types::BlockRange;
use serde::{Deserialize, Serialize};

use crate::mix::h_bytes;
use crate::settlement::{AppliedUpdate, RegisteredProof};

/// The ledger's file name inside a data dir.
pub const LEDGER_FILE: &str = "settlement.log";
const FORMAT: &str = "orch-devnet-settlement-ledger";
const VERSION: u32 = 1;
const CRC_SEED: u64 = 0x6c65_6467_6572;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Line {
    Header { format: String, version: u32 },
    StateUpdate(AppliedUpdate),
    Proof(RegisteredProof),
}

/// What a ledger file holds.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) updates: Vec<AppliedUpdate>,
    pub(crate) proofs: Vec<RegisteredProof>,
    /// Bytes of complete lines.
    pub(crate) valid_len: u64,
    /// An incomplete last line was found (a write interrupted by a crash).
    pub(crate) torn_tail: bool,
}

pub(crate) fn encode(line: &Line) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(line).map_err(|e| Error::internal_from("serializing a ledger record", e))?;
    let mut out = Vec::with_capacity(json.len() + 18);
    out.extend_from_slice(format!("{:016x} ", h_bytes(CRC_SEED, &json)).as_bytes());
    out.extend_from_slice(&json);
    out.push(b'\n');
    Ok(out)
}

fn corrupt(path: &Path, line: usize, why: impl std::fmt::Display) -> Error {
    Error::invalid_input(
        format!("devnet settlement ledger {}:{line}", path.display()),
        format!(
            "{why}. The ledger is corrupted: restore the file from a backup, or remove the data dir to start a fresh devnet"
        ),
    )
}

/// Parses a whole ledger file.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<Loaded> {
    let mut loaded = Loaded::default();
    let mut keys = HashSet::new();
    let mut proof_keys = HashSet::new();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let Some(nl) = bytes[offset..].iter().position(|b| *b == b'\n') else {
            loaded.torn_tail = true;
            break;
        };
        let raw = &bytes[offset..offset + nl];
        offset += nl + 1;
        let line = decode_line(path, line_no, raw)?;
        match line {
            Line::Header { format, version } => {
                if line_no != 1 {
                    return Err(corrupt(path, line_no, "a second header line"));
                }
                if format != FORMAT || version != VERSION {
                    return Err(corrupt(
                        path,
                        line_no,
                        format!("header says {format} version {version}; this orch reads {FORMAT} version {VERSION}"),
                    ));
                }
            }
            _ if line_no == 1 => return Err(corrupt(path, 1, "the first line is not the ledger header")),
            Line::StateUpdate(u) => {
                BlockRange::new(u.range.first(), u.range.last()).map_err(|e| corrupt(path, line_no, e))?;
                if let Some(prev) = loaded.updates.last() {
                    if u.range.first() != prev.range.last() + 1 || u.prev_root != prev.new_root {
                        return Err(corrupt(
                            path,
                            line_no,
                            format!(
                                "update of blocks {} does not follow the update of blocks {} (range or root)",
                                u.range, prev.range
                            ),
                        ));
                    }
                }
                if !keys.insert(u.dedup_key.clone()) {
                    return Err(corrupt(path, line_no, format!("dedup key {:?} appears twice", u.dedup_key)));
                }
                loaded.updates.push(u);
            }
            Line::Proof(p) => {
                BlockRange::new(p.range.first(), p.range.last()).map_err(|e| corrupt(path, line_no, e))?;
                if !proof_keys.insert(p.dedup_key.clone()) {
                    return Err(corrupt(path, line_no, format!("dedup key {:?} appears twice", p.dedup_key)));
                }
                loaded.proofs.push(p);
            }
        }
        loaded.valid_len = offset as u64;
    }
    if loaded.valid_len == 0 {
        return Err(corrupt(path, 1, "no complete header line (the file is empty or cut short)"));
    }
    Ok(loaded)
}

fn decode_line(path: &Path, line_no: usize, raw: &[u8]) -> Result<Line> {
    if raw.len() < 18 || raw[16] != b' ' {
        return Err(corrupt(path, line_no, "not a `<checksum> <json>` record"));
    }
    let crc = std::str::from_utf8(&raw[..16])
        .ok()
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| corrupt(path, line_no, "the checksum is not 16 hex digits"))?;
    let json = &raw[17..];
    if h_bytes(CRC_SEED, json) != crc {
        return Err(corrupt(path, line_no, "checksum mismatch"));
    }
    serde_json::from_slice(json).map_err(|e| corrupt(path, line_no, format!("unreadable record ({e})")))
}

/// Reads the ledger at `path` without changing it.
pub(crate) fn read(path: &Path) -> Result<Loaded> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::not_found(format!("devnet settlement ledger {}", path.display())));
        }
        Err(e) => return Err(io_error(path, "reading", e)),
    };
    parse(path, &bytes)
}

pub(crate) fn io_error(path: &Path, doing: &str, e: std::io::Error) -> Error {
    Error::unavailable_from("devnet settlement", format!("{doing} {}: {e}", path.display()))
}

/// An open ledger for appending.
#[derive(Debug)]
pub(crate) struct Writer {
    path: PathBuf,
    file: File,
    len: u64,
    fsync: bool,
    /// Set when a failed append could not be undone: the file's tail is unknown.
    poisoned: Option<String>,
}

impl Writer {
    /// Opens (creating it if absent) the ledger in `dir`; drops an incomplete last line.
    pub(crate) fn open(dir: &Path, fsync: bool) -> Result<(Writer, Loaded)> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, "creating", e))?;
        let path = dir.join(LEDGER_FILE);
        if !path.exists() {
            create(dir, &path)?;
        }
        let loaded = read(&path)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(|e| io_error(&path, "opening", e))?;
        if loaded.torn_tail {
            tracing::warn!(
                target: "orch::devnet",
                path = %path.display(),
                valid_len = loaded.valid_len,
                "dropping an incomplete last ledger record (a write interrupted by a crash; it was never acknowledged)"
            );
            file.set_len(loaded.valid_len).map_err(|e| io_error(&path, "truncating", e))?;
            file.sync_all().map_err(|e| io_error(&path, "syncing", e))?;
        }
        let w = Writer { path, file, len: loaded.valid_len, fsync, poisoned: None };
        Ok((w, loaded))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record; durable (when `fsync`) when this returns `Ok`. On error the file
    /// is cut back to its previous length, so a retry starts clean.
    pub(crate) fn append(&mut self, line: &Line) -> Result<()> {
        if let Some(why) = &self.poisoned {
            return Err(Error::internal(format!(
                "devnet settlement ledger {} is in an unknown state after a failed write ({why}); restart to recover",
                self.path.display()
            )));
        }
        let buf = encode(line)?;
        let res = self.file.write_all(&buf).and_then(|()| if self.fsync { self.file.sync_data() } else { Ok(()) });
        match res {
            Ok(()) => {
                self.len += buf.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Err(e2) = self.file.set_len(self.len) {
                    self.poisoned = Some(format!("{e}; undoing it failed: {e2}"));
                }
                Err(io_error(&self.path, "appending to", e))
            }
        }
    }
}

/// Creates the ledger with its header: temp file, fsync, rename, fsync the dir, so the header
/// is all there or the file does not exist.
fn create(dir: &Path, path: &Path) -> Result<()> {
    let tmp = dir.join(format!("{LEDGER_FILE}.tmp"));
    let header = encode(&Line::Header { format: FORMAT.into(), version: VERSION })?;
    let mut f = File::create(&tmp).map_err(|e| io_error(&tmp, "creating", e))?;
    f.write_all(&header).and_then(|()| f.sync_all()).map_err(|e| io_error(&tmp, "writing", e))?;
    drop(f);
    fs::rename(&tmp, path).map_err(|e| io_error(path, "renaming the new ledger to", e))?;
    sync_dir(dir)
}

/// fsyncs a directory so a rename in it is durable (a no-op where directories cannot be
/// opened, e.g. Windows).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, "syncing", e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
