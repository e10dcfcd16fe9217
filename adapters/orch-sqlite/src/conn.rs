//! Connections: one writer thread that owns the only write connection and commits requests
//! in groups, and a small pool of read connections used from `spawn_blocking`.
//!
//! Why a writer thread: SQLite admits one writer at a time anyway; funnelling writes through
//! one connection avoids lock contention inside the process, and lets the thread commit the
//! requests that queued up while it was busy in **one** transaction (each in its own
//! savepoint, so one failing request does not undo the others). Under load this turns many
//! small commits into few large ones, which is what makes batched claims and updates cheap.

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use orch_core::error::{Error, Result};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::config::SqliteConfig;
use crate::error::{duplicate, map_err};
use crate::schema;

/// Requests the writer commits together at most.
const MAX_GROUP: usize = 64;

/// How often the checkpointer folds the WAL back into the database file.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// WAL pages after which the writer checkpoints itself, in case the checkpointer lags.
const WAL_SAFETY_PAGES: u32 = 16_384;

/// Statements cached per connection (the claim and update statements, listings' variants).
const STATEMENT_CACHE: usize = 128;

/// What a request hands back after running: `true` to keep its changes, and a completion
/// called once the group's commit outcome is known.
type Ran = (bool, Box<dyn FnOnce(Option<Error>) + Send>);

/// A request to the writer thread.
trait Request: Send {
    /// Runs it inside the open transaction.
    fn run(self: Box<Self>, conn: &Connection) -> Ran;
    /// Answers it with `err` without running it.
    fn fail(self: Box<Self>, err: Error);
}

type Op = Box<dyn Request>;

struct Req<F, T> {
    f: F,
    tx: oneshot::Sender<Result<T>>,
    shared: Arc<Shared>,
}

impl<F, T> Request for Req<F, T>
where
    T: Send + 'static,
    F: FnOnce(&Connection, &Shared) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Ran {
        let Req { f, tx, shared } = *self;
        let r = f(conn, &shared);
        let keep = r.is_ok();
        let done = move |commit: Option<Error>| {
            let r = match commit {
                Some(e) if keep => Err(e),
                _ => r,
            };
            let _ = tx.send(r);
        };
        (keep, Box::new(done))
    }

    fn fail(self: Box<Self>, err: Error) {
        let _ = self.tx.send(Err(err));
    }
}

/// Facts every statement needs.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The database file, named in errors.
    pub(crate) path: PathBuf,
    pub(crate) config: SqliteConfig,
}

/// Owns the writer thread's channel and the read pool.
#[derive(Debug)]
pub(crate) struct Conns {
    pub(crate) shared: Arc<Shared>,
    writer: Mutex<Option<mpsc::Sender<Op>>>,
    /// Dropping it stops the checkpointer thread.
    checkpointer: Mutex<Option<mpsc::Sender<()>>>,
    readers: Mutex<Vec<Connection>>,
}

impl Conns {
    /// Opens the file (blocking), applies migrations, starts the writer thread.
    pub(crate) fn open(config: SqliteConfig) -> Result<Conns> {
        config.validate()?;
        let path = config.path.clone();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::invalid_input(
                    "database.path",
                    format!("cannot create directory {} for {}: {e}", dir.display(), path.display()),
                )
            })?;
        }
        if path.is_dir() {
            return Err(Error::invalid_input(
                "database.path",
                format!("{} is a directory; give a file path such as {}/orch.db", path.display(), path.display()),
            ));
        }
        let shared = Arc::new(Shared { path, config });
        let conn = open_connection(&shared, true)?;
        let tx = spawn_writer(conn, shared.clone())?;
        let stop = spawn_checkpointer(shared.clone())?;
        Ok(Conns {
            shared,
            writer: Mutex::new(Some(tx)),
            checkpointer: Mutex::new(Some(stop)),
            readers: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Runs `f` in the writer's transaction and returns once it is committed.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let op: Op = Box::new(Req { f, tx, shared: self.shared.clone() });
        let sender = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::internal("sqlite store is closed"))?;
        sender.send(op).map_err(|_| Error::internal("the sqlite writer thread stopped"))?;
        rx.await.map_err(|_| Error::internal("the sqlite writer thread dropped a request (it panicked)"))?
    }

    /// Runs `f` on a read connection, off the async executor.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.take_reader()?;
            let r = f(&conn, &this.shared);
            this.put_reader(conn);
            r
        })
        .await
        .map_err(|e| Error::internal_from("sqlite read task failed", e))?
    }

    fn take_reader(&self) -> Result<Connection> {
        if let Some(c) = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            return Ok(c);
        }
        open_connection(&self.shared, false)
    }

    fn put_reader(&self, conn: Connection) {
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < self.shared.config.read_connections {
            pool.push(conn);
        }
    }

    /// Stops accepting writes; the writer thread finishes queued requests and closes.
    pub(crate) fn close(&self) {
        self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.checkpointer.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.readers.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Opens and configures one connection; the writer's also switches the file to WAL and
/// migrates it.
fn open_connection(shared: &Shared, writer: bool) -> Result<Connection> {
    let path = &shared.path;
    let m = |e| map_err(e, path);
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(m)?;
    conn.busy_timeout(shared.config.busy_timeout).map_err(m)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // The first statement reads the header: garbage or a truncated header fails here, with
    // SQLITE_NOTADB, which `map_err` turns into an error naming the file.
    let cache = -i64::from(shared.config.cache_kib);
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {}; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = {cache};",
        shared.config.synchronous.pragma()
    ))
    .map_err(m)?;
    if writer {
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(m)?;
        // Checkpoints run on their own thread (below), off the writer's path; the writer's own
        // automatic checkpoint stays as a safety net.
        conn.execute_batch(&format!("PRAGMA wal_autocheckpoint = {WAL_SAFETY_PAGES}")).map_err(m)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(target: "orch::sqlite", path = %path.display(), mode, "WAL mode unavailable; readers will block the writer");
        }
        // Refuse a file from a newer orch before touching it; then bring older files up.
        let v = schema::current_version(&conn, path)?;
        schema::check_supported(v, path)?;
        conn.execute_batch("BEGIN IMMEDIATE").map_err(m)?;
        match schema::migrate(&conn, path) {
            Ok(()) => conn.execute_batch("COMMIT").map_err(m)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    } else {
        conn.execute_batch("PRAGMA query_only = ON").map_err(m)?;
    }
    Ok(conn)
}

fn spawn_writer(conn: Connection, shared: Arc<Shared>) -> Result<mpsc::Sender<Op>> {
    let (tx, rx) = mpsc::channel::<Op>();
    std::thread::Builder::new()
        .name("orch-sqlite-writer".into())
        .spawn(move || writer_loop(conn, rx, shared))
        .map_err(|e| Error::internal_from("cannot start the sqlite writer thread", e))?;
    Ok(tx)
}

/// Folds the WAL into the database file every [`CHECKPOINT_EVERY`] with a passive
/// checkpoint, which never blocks the writer or readers; stops when the store closes.
fn spawn_checkpointer(shared: Arc<Shared>) -> Result<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    let conn = open_connection(&shared, false)?;
    std::thread::Builder::new()
        .name("orch-sqlite-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(CHECKPOINT_EVERY) {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(target: "orch::sqlite", path = %shared.path.display(), error = %e, "checkpoint failed");
                }
            }
        })
        .map_err(|e| Error::internal_from("cannot start the sqlite checkpoint thread", e))?;
    Ok(tx)
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Op>, shared: Arc<Shared>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        run_group(&conn, group, &shared.path);
    }
    // Last connection to close checkpoints the WAL into the main file.
    drop(conn);
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// One transaction for the whole group, a savepoint per request so that a failing request
/// undoes only its own changes. The request that opens the transaction needs none: undoing it
/// is rolling the transaction back. That saves a group of one (common) the savepoint's cost —
/// SQLite copies every page a savepoint modifies into its sub-journal first.
fn run_group(conn: &Connection, group: Vec<Op>, path: &Path) {
    let mut dones: Vec<Box<dyn FnOnce(Option<Error>) + Send>> = Vec::with_capacity(group.len());
    let mut open = false;
    let mut ops = group.into_iter();
    while let Some(op) = ops.next() {
        let first = !open;
        if first {
            if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
                // Busy past busy_timeout (another process writes) or I/O: every request
                // queued behind would wait as long again, so fail them all now.
                op.fail(map_err(duplicate(&e), path));
                ops.for_each(|op| op.fail(map_err(duplicate(&e), path)));
                break;
            }
            open = true;
        } else if let Err(e) = exec(conn, "SAVEPOINT req") {
            op.fail(map_err(e, path));
            continue;
        }
        let (keep, done) = match std::panic::catch_unwind(AssertUnwindSafe(|| op.run(conn))) {
            Ok(r) => r,
            // The request's reply channel went down with the panic: its caller gets an
            // internal error. Undo whatever it did.
            Err(_) => (false, Box::new(|_: Option<Error>| {}) as Box<dyn FnOnce(Option<Error>) + Send>),
        };
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (disk full, I/O error): the changes of
            // the requests before this one are gone too.
            let lost = || {
                Error::unavailable(
                    crate::error::BACKEND,
                    format!("{}: transaction rolled back by SQLite after an I/O error; try again", path.display()),
                )
            };
            dones.drain(..).for_each(|d| d(Some(lost())));
            done(Some(lost()));
            open = false;
            continue;
        }
        if first {
            if !keep {
                // Nothing else is in the transaction yet: drop it; the next request opens
                // a new one.
                let _ = exec(conn, "ROLLBACK");
                open = false;
                done(None);
                continue;
            }
        } else {
            if !keep {
                let _ = exec(conn, "ROLLBACK TO req");
            }
            let _ = exec(conn, "RELEASE req");
        }
        dones.push(done);
    }
    if !open {
        return;
    }
    match exec(conn, "COMMIT") {
        Ok(()) => dones.into_iter().for_each(|d| d(None)),
        Err(e) => {
            let _ = exec(conn, "ROLLBACK");
            tracing::warn!(target: "orch::sqlite", path = %path.display(), error = %e, requests = dones.len(), "group commit failed");
            for d in dones {
                d(Some(map_err(duplicate(&e), path)));
            }
        }
    }
}
