//! The embedded run's state on disk: `DATA_DIR/state.db`, a SQLite database, so memory
//! stays flat however large the catalog (a state in RAM was ~1.6 KB per resource: 1.6 GB for
//! a million datasets).
//!
//! - `resources`: one row per resource, its state as JSON, written as it is counted, so a
//!   run that dies keeps what it had done (up to the last committed group, below);
//! - `sources`, `sessions`, `pages`: JSON, each written in the same batch as the rows whose
//!   counts it carries, so on disk a session's counters always agree with its markers and
//!   states. A run killed mid-way leaves its session `running`, as a crashed function leaves
//!   one on AWS; the next harvest in the data directory winds it up as the watchdog would
//!   (`local::run::wind_up_interrupted`);
//! - `markers`: the running session's, written as the session lists and counts; they only
//!   matter until it closes, so [`DiskStore::save`] deletes those (and the pages) of
//!   sessions no longer running (one harvest per data directory at a time, which the CLI
//!   enforces with a lock, so none of them belongs to another process).
//!
//! Batches are grouped: each is a savepoint (kept or undone on its own), and the enclosing
//! transaction is committed every [`GROUP_BATCHES`] batches or [`GROUP_AGE`], at
//! [`DiskStore::save`], by [`DiskStore::commit`] (the CLI calls it on a timer, so a run that
//! waits on a retry does not hold back what it counted) and when the store is dropped. One commit per batch of ~8 resources
//! wrote each touched page to the WAL again, ~4 KB per resource, and cost a fifth of the
//! embedded run's throughput. A process that dies loses at most the open group: those
//! resources look new to the next run, which harvests them again. WAL with
//! `synchronous = NORMAL`: a power cut may lose the last commits, the same way.

use super::rows::{Kept, Loaded, Rows, Settled};
use super::store::LocalStore;
use crate::model::{ResourceState, SessionStatus};
use crate::ports::StoreError;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

/// The file under the data directory.
pub const STATE_DB: &str = "state.db";

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    -- Each batch is a savepoint, and SQLite keeps a savepoint's undo pages in a temporary
    -- file unless told otherwise. They are a batch's pages, freed when it ends, so memory
    -- is the right place.
    PRAGMA temp_store = MEMORY;
    -- Checkpoints less often than the default (fewer copies back into the file).
    PRAGMA wal_autocheckpoint = 4000;
    CREATE TABLE IF NOT EXISTS resources (
        source_id TEXT NOT NULL, resource_id TEXT NOT NULL, state TEXT NOT NULL,
        PRIMARY KEY (source_id, resource_id)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS sources (id TEXT PRIMARY KEY, entry TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, session TEXT NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS pages (
        session_id TEXT NOT NULL, page INTEGER NOT NULL, state TEXT NOT NULL,
        PRIMARY KEY (session_id, page)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS markers (
        session_id TEXT NOT NULL, resource_id TEXT NOT NULL, outcome TEXT,
        PRIMARY KEY (session_id, resource_id)) WITHOUT ROWID;
";

fn db_error(e: rusqlite::Error) -> StoreError {
    StoreError::new(format!("state database: {e}"))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::new(format!("state database: unreadable {what}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("states serialize")
}

/// Batches per commit, and the longest a group stays open (a reader in another process, such
/// as `trawl serve`, sees a group once it is committed).
const GROUP_BATCHES: usize = 256;
const GROUP_AGE: std::time::Duration = std::time::Duration::from_millis(500);

pub struct SqliteRows {
    conn: Connection,
    /// When the open group's transaction began, and how many batches it holds.
    group: Option<(std::time::Instant, usize)>,
    /// For a reader: the database's `data_version` when it last loaded the runs (it moves
    /// when another connection commits).
    reader: Option<i64>,
}

impl Drop for SqliteRows {
    fn drop(&mut self) {
        if let Err(e) = self.commit_group() {
            tracing::error!(error = %e, "the state database's last batches were not saved");
        }
    }
}

impl SqliteRows {
    pub fn open(path: &Path) -> Result<SqliteRows, StoreError> {
        let conn = Connection::open(path).map_err(|e| {
            StoreError::new(format!(
                "opening the state database {}: {e}",
                path.display()
            ))
        })?;
        // A `trawl serve` reading, or a second harvest, waits for a write rather than failing.
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(|e| {
            StoreError::new(format!(
                "{} is not a Trawl state database: {e}",
                path.display()
            ))
        })?;
        Ok(SqliteRows {
            conn,
            group: None,
            reader: None,
        })
    }

    /// A statement without parameters, prepared once (`execute_batch` parses it every time,
    /// and savepoint statements run twice per batch).
    fn run_cached(&mut self, sql: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute([]))
            .map(drop)
            .map_err(db_error)
    }

    /// Commits the open group of batches, if any.
    fn commit_group(&mut self) -> Result<(), StoreError> {
        if self.group.take().is_some() {
            self.conn.execute_batch("COMMIT").map_err(db_error)?;
        }
        Ok(())
    }

    fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("PRAGMA data_version", [], |row| row.get(0))
            .map_err(db_error)
    }

    fn load_runs(&self) -> Result<Loaded, StoreError> {
        let mut pages = Vec::new();
        let mut stmt = self
            .conn
            .prepare("SELECT session_id, state FROM pages ORDER BY session_id, page")
            .map_err(db_error)?;
        let mut rows = stmt.query([]).map_err(db_error)?;
        while let Some(row) = rows.next().map_err(db_error)? {
            let session_id: String = row.get(0).map_err(db_error)?;
            let state: String = row.get(1).map_err(db_error)?;
            pages.push((session_id, from_json("page", &state)?));
        }
        Ok(Loaded {
            sources: all_json(
                &self.conn,
                "SELECT entry FROM sources ORDER BY id",
                [],
                "source",
            )?,
            sessions: all_json(
                &self.conn,
                "SELECT session FROM sessions ORDER BY id",
                [],
                "session",
            )?,
            pages,
        })
    }

    /// Drops every marker and page not of a session in `running` (the sources and sessions
    /// are written as they change).
    fn drop_finished(
        &mut self,
        running: &std::collections::HashSet<&str>,
    ) -> Result<(), StoreError> {
        self.commit_group()?;
        let tx = self.conn.transaction().map_err(db_error)?;
        for table in ["markers", "pages"] {
            let marked: Vec<String> = tx
                .prepare(&format!("SELECT DISTINCT session_id FROM {table}"))
                .and_then(|mut stmt| {
                    stmt.query_map([], |row| row.get(0))?
                        .collect::<Result<_, _>>()
                })
                .map_err(db_error)?;
            for session_id in marked.iter().filter(|id| !running.contains(id.as_str())) {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE session_id = ?1"),
                    [session_id],
                )
                .map_err(db_error)?;
            }
        }
        tx.commit().map_err(db_error)
    }

    fn states(
        &mut self,
        sql: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<ResourceState>, StoreError> {
        all_json(&self.conn, sql, args, "resource state")
    }
}

/// Runs `sql` and hands `each` the first column of every row, read as JSON (what every
/// table here keeps).
fn each_json<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    what: &str,
    mut each: impl FnMut(T) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_error)?;
    let mut rows = stmt.query(args).map_err(db_error)?;
    while let Some(row) = rows.next().map_err(db_error)? {
        each(from_json(
            what,
            &row.get::<_, String>(0).map_err(db_error)?,
        )?)?;
    }
    Ok(())
}

/// [`each_json`], collected.
fn all_json<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    what: &str,
) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    each_json(conn, sql, args, what, |value| {
        out.push(value);
        Ok(())
    })?;
    Ok(out)
}

impl Rows for SqliteRows {
    fn resource(
        &mut self,
        source_id: &str,
        resource_id: &str,
    ) -> Result<Option<ResourceState>, StoreError> {
        Ok(self
            .states(
                "SELECT state FROM resources WHERE source_id = ?1 AND resource_id = ?2",
                params![source_id, resource_id],
            )?
            .pop())
    }

    fn put_resource(&mut self, state: &ResourceState) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO resources (source_id, resource_id, state) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![state.source_id, state.resource_id, to_json(state)])
            })
            .map(drop)
            .map_err(db_error)
    }

    fn resources_after(
        &mut self,
        source_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ResourceState>, StoreError> {
        // `>=` with "" from the start: the same statement shape either way.
        let (op, after) = match after {
            Some(after) => (">", after),
            None => (">=", ""),
        };
        self.states(
            &format!(
                "SELECT state FROM resources WHERE source_id = ?1 AND resource_id {op} ?2 \
                 ORDER BY resource_id LIMIT ?3"
            ),
            params![source_id, after, limit as i64],
        )
    }

    fn each_resource(
        &mut self,
        each: &mut dyn FnMut(&ResourceState) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        each_json(
            &self.conn,
            "SELECT state FROM resources ORDER BY source_id, resource_id",
            [],
            "resource state",
            |state: ResourceState| each(&state),
        )
    }

    fn remove_resources(&mut self, source_id: &str) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached("DELETE FROM resources WHERE source_id = ?1")
            .and_then(|mut stmt| stmt.execute([source_id]))
            .map(|n| n as u64)
            .map_err(db_error)
    }

    fn marker(
        &mut self,
        session_id: &str,
        resource_id: &str,
    ) -> Result<Option<Option<Settled>>, StoreError> {
        let outcome: Option<Option<String>> = self
            .conn
            .prepare_cached(
                "SELECT outcome FROM markers WHERE session_id = ?1 AND resource_id = ?2",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![session_id, resource_id], |row| row.get(0))
                    .optional()
            })
            .map_err(db_error)?;
        match outcome {
            None => Ok(None),
            Some(None) => Ok(Some(None)),
            Some(Some(json)) => Ok(Some(Some(from_json("marker", &json)?))),
        }
    }

    fn put_pending(&mut self, session_id: &str, resource_ids: &[String]) -> Result<(), StoreError> {
        let sql =
            "INSERT OR IGNORE INTO markers (session_id, resource_id, outcome) VALUES (?1, ?2, NULL)";
        let mut stmt = self.conn.prepare_cached(sql).map_err(db_error)?;
        for id in resource_ids {
            stmt.execute(params![session_id, id]).map_err(db_error)?;
        }
        Ok(())
    }

    fn settle_marker(
        &mut self,
        session_id: &str,
        resource_id: &str,
        settled: &Settled,
    ) -> Result<bool, StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE markers SET outcome = ?3 \
                 WHERE session_id = ?1 AND resource_id = ?2 AND outcome IS NULL",
            )
            .and_then(|mut stmt| stmt.execute(params![session_id, resource_id, to_json(settled)]))
            .map(|changed| changed == 1)
            .map_err(db_error)
    }

    fn markers_after(
        &mut self,
        session_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Option<Settled>)>, StoreError> {
        let (op, after) = match after {
            Some(after) => (">", after),
            None => (">=", ""),
        };
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT resource_id, outcome FROM markers \
                 WHERE session_id = ?1 AND resource_id {op} ?2 ORDER BY resource_id LIMIT ?3"
            ))
            .map_err(db_error)?;
        let mut rows = stmt
            .query(params![session_id, after, limit as i64])
            .map_err(db_error)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(db_error)? {
            let id: String = row.get(0).map_err(db_error)?;
            let outcome: Option<String> = row.get(1).map_err(db_error)?;
            let outcome = match outcome {
                Some(json) => Some(from_json("marker", &json)?),
                None => None,
            };
            out.push((id, outcome));
        }
        Ok(out)
    }

    fn reload(&mut self) -> Result<Option<Loaded>, StoreError> {
        let Some(seen) = self.reader else {
            return Ok(None);
        };
        let now = self.data_version()?;
        if now == seen {
            return Ok(None);
        }
        self.reader = Some(now);
        self.load_runs().map(Some)
    }

    fn keep(&mut self, run: Kept<'_>) -> Result<(), StoreError> {
        let (sql, args) = match run {
            Kept::Source(entry) => (
                "INSERT OR REPLACE INTO sources (id, entry) VALUES (?1, ?2)",
                vec![entry.source.id.clone(), to_json(entry)],
            ),
            Kept::SourceRemoved(id) => ("DELETE FROM sources WHERE id = ?1", vec![id.to_string()]),
            Kept::Session(session) => (
                "INSERT OR REPLACE INTO sessions (id, session) VALUES (?1, ?2)",
                vec![session.id.clone(), to_json(session)],
            ),
            Kept::Page(session_id, page) => (
                "INSERT OR REPLACE INTO pages (session_id, page, state) VALUES (?1, ?3, ?2)",
                vec![session_id.to_string(), to_json(page), page.page.to_string()],
            ),
        };
        self.conn
            .prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(rusqlite::params_from_iter(args)))
            .map(drop)
            .map_err(db_error)
    }

    fn begin_batch(&mut self) -> Result<(), StoreError> {
        if self.group.is_none() {
            // IMMEDIATE: take the write lock now, not halfway through (where another writer
            // could make the upgrade fail instead of wait).
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(db_error)?;
            self.group = Some((std::time::Instant::now(), 0));
        }
        self.run_cached("SAVEPOINT batch")
    }

    fn end_batch(&mut self, commit: bool) -> Result<(), StoreError> {
        if !commit {
            self.run_cached("ROLLBACK TO batch")?;
        }
        self.run_cached("RELEASE batch")?;
        if let Some((began, batches)) = &mut self.group {
            *batches += 1;
            if *batches >= GROUP_BATCHES || began.elapsed() >= GROUP_AGE {
                self.commit_group()?;
            }
        }
        Ok(())
    }
}

/// The embedded run's store: [`LocalStore`] with its resource rows in `state.db`.
pub type DiskStore = LocalStore<SqliteRows>;

impl DiskStore {
    /// Opens (creating) `dir/state.db` and reads its sources, sessions and pages.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::new(format!("creating {}: {e}", dir.display())))?;
        let db = dir.join(STATE_DB);
        let rows = SqliteRows::open(&db)?;
        let loaded = rows.load_runs()?;
        let store = LocalStore::with_rows(rows);
        store.lock().load(loaded);
        Ok(store)
    }

    /// [`DiskStore::open`] for a reader beside a harvest in another process (`trawl serve`):
    /// sources, sessions and pages are read again whenever that harvest has committed.
    pub fn open_reader(dir: &Path) -> Result<DiskStore, StoreError> {
        let store = DiskStore::open(dir)?;
        {
            let mut s = store.lock();
            let version = s.rows.data_version()?;
            s.rows.reader = Some(version);
        }
        Ok(store)
    }

    /// Commits the open group of rows and drops the closed sessions' markers and pages. Call
    /// it after each session closes.
    pub fn save(&self) -> Result<(), StoreError> {
        let mut s = self.lock();
        let state = &mut *s;
        let running = state
            .sessions
            .values()
            .filter(|session| session.status == SessionStatus::Running)
            .map(|session| session.id.as_str())
            .collect();
        state.rows.drop_finished(&running)
    }

    /// Commits the open group of rows now, whatever its age: what was counted becomes
    /// visible to readers (`trawl serve`) and survives the process.
    pub fn commit(&self) -> Result<(), StoreError> {
        self.lock().rows.commit_group()
    }
}
