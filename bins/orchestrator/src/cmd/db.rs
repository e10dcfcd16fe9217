//! `orchestrator db export|import`: a portable, versioned, checksummed dump of a chain's jobs
//! and their history, for backups, restores and moves between backends.
//!
//! The dump is JSON lines:
//! 1. a header `{"orch_dump":1,"chain":…,"backend":…,"exported_at":…,"orch_version":…}`;
//! 2. one [`JobRecord`] per line, in key order;
//! 3. a trailer `{"end":{"jobs":N,"sha256":…}}`, the SHA-256 of every record line's bytes
//!    (each with its newline).
//!
//! Import reads the whole file once to check it (format, version, every record, the count and
//! the checksum) before it writes anything, imports in batches, then reads every record back
//! from the target and recomputes the checksum: the import is verified, not assumed.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use orch_core::db::Database;
use orch_core::engine::EngineConfig;
use orch_core::job::{JobQuery, JobRecord};
use orch_core::types::{ChainId, JobId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{user, Ctx};
use crate::{output, providers};

/// The dump format this binary writes and reads.
const DUMP_VERSION: u32 = 1;
/// Records per page on export and per `import_jobs` call on import.
const BATCH: u32 = 500;

/// Backup, restore and migration of the job store.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCmd {
    /// Write every job of the configured chain, with its history, to a dump file.
    Export(ExportArgs),
    /// Load a dump into the configured store (which may be another backend), then verify it.
    Import(ImportArgs),
}

/// Options of `db export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The dump file to write (replaced atomically when complete).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// Options of `db import`.
#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The dump file to read.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    orch_dump: u32,
    chain: String,
    backend: String,
    exported_at: Timestamp,
    orch_version: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Trailer {
    end: End,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    jobs: u64,
    sha256: String,
}

/// What `db export` / `db import` report.
#[derive(Debug, Serialize)]
struct Summary {
    file: String,
    chain: String,
    backend: String,
    jobs: u64,
    /// Records written by the import (the rest were already there, unchanged).
    #[serde(skip_serializing_if = "Option::is_none")]
    imported: Option<u64>,
    sha256: String,
    /// Import only: the checksum recomputed from the target store matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
}

pub(crate) async fn db(ctx: &Ctx, cmd: DbCmd) -> anyhow::Result<()> {
    let cfg = ctx.load(EngineConfig::default())?;
    let chain = cfg.chain_id.clone();
    match cmd {
        DbCmd::Export(a) => {
            let db = providers::open_store(&cfg, providers::StoreMode::Existing).await?.db;
            let s = export(&*db, &chain, &a.out).await?;
            report(&s, a.json, "exported")
        }
        DbCmd::Import(a) => {
            let checked = check_dump(&a.input, &chain)?;
            let db = providers::open_store(&cfg, providers::StoreMode::Setup).await?.db;
            db.migrate().await?;
            let s = import(&*db, &chain, &a.input, checked).await?;
            report(&s, a.json, "imported")
        }
    }
}

fn report(s: &Summary, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        return output::json(s);
    }
    let extra = match (s.imported, s.verified) {
        (Some(n), Some(true)) => format!(" ({n} new, checksum verified against the store)"),
        _ => String::new(),
    };
    output::line(format!(
        "{verb} {} jobs of chain {} ({}){extra}: {} sha256 {}",
        s.jobs, s.chain, s.backend, s.file, s.sha256
    ));
    Ok(())
}

fn bar(len: u64, what: &str) -> ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} jobs ({per_sec}, eta {eta})") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.to_string());
    pb
}

/// One record as a dump line (with its newline).
fn record_line(r: &JobRecord) -> anyhow::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(r)?;
    line.push(b'\n');
    Ok(line)
}

async fn read_record(db: &dyn Database, id: JobId) -> anyhow::Result<JobRecord> {
    let job = db.get_job(id).await?;
    let history = db.history(id).await?;
    Ok(JobRecord { job, history })
}

async fn export(db: &dyn Database, chain: &ChainId, out: &Path) -> anyhow::Result<Summary> {
    if out.is_dir() {
        return Err(user(format!("--out {} is a directory: pass a file path", out.display())));
    }
    let total: u64 = db.count_jobs(chain).await?.iter().map(|c| c.count).sum();
    let tmp = out.with_extension(format!("partial-{}", std::process::id()));
    let file = File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut w = BufWriter::new(file);
    let header = Header {
        orch_dump: DUMP_VERSION,
        chain: chain.to_string(),
        backend: db.backend().to_string(),
        exported_at: orch_core::clock::Clock::now(&orch_core::clock::SystemClock),
        orch_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    serde_json::to_writer(&mut w, &header)?;
    w.write_all(b"\n")?;
    let pb = bar(total, "export");
    let mut hash = Sha256::new();
    let mut n = 0u64;
    let mut q = JobQuery::all(chain.clone(), BATCH);
    loop {
        let page = db.list_jobs(&q).await?;
        let Some(last) = page.last() else { break };
        q.after = Some(last.key.clone());
        let full = page.len() == BATCH as usize;
        for job in page {
            // History is read after the job: a live store may move on between the two reads,
            // which is why `db export` is meant for a stopped (or quiet) orchestrator.
            let history = db.history(job.id).await?;
            let line = record_line(&JobRecord { job, history })?;
            hash.update(&line);
            w.write_all(&line)?;
            n += 1;
            pb.inc(1);
        }
        if !full {
            break;
        }
    }
    let sha = hex::encode(hash.finalize());
    serde_json::to_writer(&mut w, &Trailer { end: End { jobs: n, sha256: sha.clone() } })?;
    w.write_all(b"\n")?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot move the dump into place at {}", out.display()))?;
    pb.finish_and_clear();
    Ok(Summary {
        file: out.display().to_string(),
        chain: chain.to_string(),
        backend: db.backend().to_string(),
        jobs: n,
        imported: None,
        sha256: sha,
        verified: None,
    })
}

/// What the checking pass learned.
struct Checked {
    jobs: u64,
    sha256: String,
}

/// Reads the whole dump and checks it before anything is written: header, every record, the
/// trailer's count and checksum.
fn check_dump(path: &Path, chain: &ChainId) -> anyhow::Result<Checked> {
    let bad = |what: String| user(format!("dump {} is not usable: {what}", path.display()));
    let file = File::open(path).map_err(|e| user(format!("cannot read dump {}: {e}", path.display())))?;
    let mut lines = BufReader::new(file).split(b'\n');
    let first = lines.next().transpose()?.ok_or_else(|| bad("it is empty".into()))?;
    let header: Header = serde_json::from_slice(&first).map_err(|e| {
        bad(format!("line 1 is not an orch dump header ({e}); was it written by `orchestrator db export`?"))
    })?;
    if header.orch_dump != DUMP_VERSION {
        return Err(bad(format!(
            "format version {} is not supported by this orchestrator (reads version {DUMP_VERSION}); use the orch release that wrote it",
            header.orch_dump
        )));
    }
    if header.chain != chain.as_str() {
        return Err(bad(format!(
            "it holds chain \"{}\" but the configuration's chain_id is \"{chain}\"; set chain_id = \"{}\" to import it",
            header.chain, header.chain
        )));
    }
    let mut hash = Sha256::new();
    let mut n = 0u64;
    let mut trailer = None;
    for (i, line) in lines.enumerate() {
        let line = line?;
        let lineno = i + 2;
        if trailer.is_some() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Err(bad(format!("line {lineno} follows the end marker")));
        }
        if line.starts_with(b"{\"end\"") {
            let t: Trailer =
                serde_json::from_slice(&line).map_err(|e| bad(format!("line {lineno}: bad end marker: {e}")))?;
            trailer = Some(t.end);
            continue;
        }
        let r: JobRecord =
            serde_json::from_slice(&line).map_err(|e| bad(format!("line {lineno}: not a job record: {e}")))?;
        r.validate().map_err(|e| bad(format!("line {lineno}: {e}")))?;
        if r.job.key.chain != *chain {
            return Err(bad(format!("line {lineno}: job {} belongs to chain {}", r.job.id, r.job.key.chain)));
        }
        hash.update(&line);
        hash.update(b"\n");
        n += 1;
    }
    let end = trailer
        .ok_or_else(|| bad("it has no end marker: the file is truncated (an export that did not finish?)".into()))?;
    let sha = hex::encode(hash.finalize());
    if end.jobs != n {
        return Err(bad(format!("the end marker counts {} jobs but the file holds {n}", end.jobs)));
    }
    if end.sha256 != sha {
        return Err(bad(format!(
            "checksum mismatch: the end marker says {} but the records hash to {sha}; the file was changed or damaged",
            end.sha256
        )));
    }
    Ok(Checked { jobs: n, sha256: sha })
}

async fn import(db: &dyn Database, chain: &ChainId, path: &Path, checked: Checked) -> anyhow::Result<Summary> {
    let file = File::open(path).with_context(|| format!("cannot read dump {}", path.display()))?;
    let pb = bar(checked.jobs, "import");
    let mut imported = 0u64;
    let mut ids = Vec::with_capacity(checked.jobs as usize);
    let mut batch = Vec::with_capacity(BATCH as usize);
    // What the store must read back: each record as this orchestrator writes it. A dump from
    // an older release may spell a record differently (a field that moved), so its bytes are
    // checked against its own checksum in `check_dump`, and the store against this.
    let mut expected = Sha256::new();
    // Already checked: skip the header and the trailer, parse the records.
    for line in BufReader::new(file).split(b'\n').skip(1) {
        let line = line?;
        if line.starts_with(b"{\"end\"") {
            break;
        }
        let r: JobRecord = serde_json::from_slice(&line)?;
        expected.update(record_line(&r)?);
        ids.push(r.job.id);
        batch.push(r);
        if batch.len() == BATCH as usize {
            imported += flush(db, &mut batch, &pb).await?;
        }
    }
    imported += flush(db, &mut batch, &pb).await?;
    pb.finish_and_clear();

    // Verify: the target's records must hash to the dump's checksum.
    let pb = bar(checked.jobs, "verify");
    let mut hash = Sha256::new();
    for id in ids {
        hash.update(record_line(&read_record(db, id).await?)?);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let sha = hex::encode(hash.finalize());
    let want = hex::encode(expected.finalize());
    if sha != want {
        bail!(
            "imported {imported} of {} jobs, but the store's copy hashes to {sha}, not the dump's {want}: some jobs were already in the store with other contents (an orchestrator ran on it?); import into an empty store",
            checked.jobs
        );
    }
    Ok(Summary {
        file: path.display().to_string(),
        chain: chain.to_string(),
        backend: db.backend().to_string(),
        jobs: checked.jobs,
        imported: Some(imported),
        sha256: checked.sha256,
        verified: Some(true),
    })
}

async fn flush(db: &dyn Database, batch: &mut Vec<JobRecord>, pb: &ProgressBar) -> anyhow::Result<u64> {
    if batch.is_empty() {
        return Ok(0);
    }
    let written = db.import_jobs(batch).await?;
    pb.inc(batch.len() as u64);
    batch.clear();
    Ok(written.iter().filter(|w| **w).count() as u64)
}
