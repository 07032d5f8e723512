//! The one writer: every write of the relay goes through one thread that owns one connection
//! and runs whatever arrived together in one transaction (group commit).
//!
//! SQLite admits one writer at a time; several pooled connections writing at once wait for
//! each other in SQLite's busy handler, which sleeps in steps of milliseconds. With a single
//! writer there is no such waiting, a burst of session set-ups costs a few commits instead of
//! thousands, and reads (on the pooled connections, WAL mode) never block.
//!
//! The writer is a plain thread with its own blocking connection and cached prepared
//! statements: a batch costs one wake-up of the thread and one per waiting caller, not a
//! round trip between threads per statement as an async connection would.
//!
//! A caller sends an [`Op`](Item) — one or more statements that stand or fall together — and
//! waits for its [`Outcome`], which is sent only after the batch holding it has been
//! committed, so "written first, then announced" holds. Fire-and-forget ops (audit and session
//! event lines) use the same queue and keep their order. If a batch cannot be committed, each
//! of its ops is tried again alone, so one bad op never loses the others.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, Value as SqlValue};
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

/// Most ops committed in one transaction.
const BATCH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("database write failed")]
    Sql(#[from] rusqlite::Error),
    #[error("the database writer has stopped")]
    Stopped,
    #[error("cannot start the database writer thread")]
    Thread(#[source] std::io::Error),
}

/// A value bound to a statement parameter.
#[derive(Debug, Clone)]
pub enum Value {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<Option<i64>> for Value {
    fn from(v: Option<i64>) -> Self {
        Value::OptInt(v)
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::OptText(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Int(v) | Value::OptInt(Some(v)) => ToSqlOutput::Owned(SqlValue::Integer(*v)),
            Value::Text(v) | Value::OptText(Some(v)) => ToSqlOutput::from(v.as_str()),
            Value::OptInt(None) | Value::OptText(None) => ToSqlOutput::Owned(SqlValue::Null),
        })
    }
}

/// One statement of an op.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub sql: &'static str,
    pub args: Vec<Value>,
    /// When this statement changes no row, the op stops here, undoes what it did, and
    /// reports `completed: false` (e.g. "the ticket was already used").
    pub require_change: bool,
}

impl Stmt {
    pub fn new(sql: &'static str, args: Vec<Value>) -> Self {
        Stmt {
            sql,
            args,
            require_change: false,
        }
    }

    pub fn requiring_change(mut self) -> Self {
        self.require_change = true;
        self
    }
}

/// What an op did, reported after its batch was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// False when a `require_change` statement changed nothing (and the op was undone).
    pub completed: bool,
    /// Rows changed by the op's last statement.
    pub rows_affected: u64,
    /// Row id of the op's last insert.
    pub last_insert_rowid: i64,
}

type Reply = oneshot::Sender<Result<Outcome, WriteError>>;

#[derive(Debug)]
enum Item {
    Op {
        stmts: Vec<Stmt>,
        reply: Option<Reply>,
    },
    Flush(oneshot::Sender<()>),
}

/// The writer's queue; cheap to clone. The thread ends when the last clone is dropped,
/// after writing everything queued.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Item>,
}

impl Writer {
    /// Opens a connection of its own to the database at `path` (already created and
    /// migrated) and starts the writer thread on it.
    pub fn start(path: &Path) -> Result<Writer, WriteError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.set_prepared_statement_cache_capacity(64);
        let (tx, rx) = mpsc::channel(16 * 1024);
        std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || run(conn, rx))
            .map_err(WriteError::Thread)?;
        Ok(Writer { tx })
    }

    /// Runs `stmts` as one op and waits until it is committed.
    pub async fn write(&self, stmts: Vec<Stmt>) -> Result<Outcome, WriteError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Item::Op {
                stmts,
                reply: Some(reply),
            })
            .await
            .map_err(|_| WriteError::Stopped)?;
        wait.await.map_err(|_| WriteError::Stopped)?
    }

    /// Queues `stmts` without waiting (append-only lines); errors are logged by the writer.
    pub async fn append(&self, stmts: Vec<Stmt>) -> Result<(), WriteError> {
        self.tx
            .send(Item::Op { stmts, reply: None })
            .await
            .map_err(|_| WriteError::Stopped)
    }

    /// Waits until everything queued before this call has been committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let results = match run_batch(&mut conn, &batch) {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!(error = %e, ops = batch.len(), "a write batch failed; writing its ops one by one");
                batch
                    .iter()
                    .map(|item| match item {
                        Item::Op { stmts, .. } => run_alone(&mut conn, stmts),
                        Item::Flush(_) => Ok(done()),
                    })
                    .collect()
            }
        };
        for (item, result) in batch.drain(..).zip(results) {
            match item {
                Item::Op {
                    reply: Some(reply), ..
                } => {
                    let _ = reply.send(result.map_err(WriteError::Sql));
                }
                Item::Op { stmts, reply: None } => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, sql = stmts[0].sql, "cannot write a journal line");
                    }
                }
                Item::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }
}

fn done() -> Outcome {
    Outcome {
        completed: true,
        rows_affected: 0,
        last_insert_rowid: 0,
    }
}

type OpResult = rusqlite::Result<Outcome>;

/// Runs every op of the batch in one transaction; an op's own failure is its result, a
/// failure of the transaction is the batch's.
fn run_batch(conn: &mut Connection, batch: &[Item]) -> rusqlite::Result<Vec<OpResult>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let results = batch
        .iter()
        .map(|item| match item {
            Item::Op { stmts, .. } => run_op(&tx, stmts),
            Item::Flush(_) => Ok(done()),
        })
        .collect();
    tx.commit()?;
    Ok(results)
}

fn run_alone(conn: &mut Connection, stmts: &[Stmt]) -> OpResult {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let outcome = run_op(&tx, stmts)?;
    tx.commit()?;
    Ok(outcome)
}

/// Runs one op inside the batch's transaction, under a savepoint when it has several
/// statements, so a failing op leaves nothing behind.
fn run_op(conn: &Connection, stmts: &[Stmt]) -> OpResult {
    if let [stmt] = stmts {
        let changed = exec(conn, stmt)?;
        return Ok(Outcome {
            completed: !stmt.require_change || changed > 0,
            rows_affected: changed as u64,
            last_insert_rowid: conn.last_insert_rowid(),
        });
    }
    conn.execute_batch("SAVEPOINT op")?;
    let undo = |conn: &Connection| conn.execute_batch("ROLLBACK TO op; RELEASE op");
    let mut outcome = done();
    for stmt in stmts {
        let changed = match exec(conn, stmt) {
            Ok(n) => n,
            Err(e) => {
                undo(conn)?;
                return Err(e);
            }
        };
        outcome.rows_affected = changed as u64;
        outcome.last_insert_rowid = conn.last_insert_rowid();
        if stmt.require_change && changed == 0 {
            undo(conn)?;
            outcome.completed = false;
            return Ok(outcome);
        }
    }
    conn.execute_batch("RELEASE op")?;
    Ok(outcome)
}

/// Runs one statement (prepared once per connection) and returns the rows it changed.
fn exec(conn: &Connection, stmt: &Stmt) -> rusqlite::Result<usize> {
    conn.prepare_cached(stmt.sql)?
        .execute(rusqlite::params_from_iter(stmt.args.iter()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    async fn pool(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(&url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, used INTEGER)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool
    }

    #[tokio::test]
    async fn ops_commit_undo_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&dir).await;
        let w = Writer::start(&dir.path().join("t.db")).unwrap();
        let insert = |name: &str| Stmt::new("INSERT INTO t (name) VALUES (?)", vec![name.into()]);
        // Many ops at once: one batch; each gets its own row id.
        let mut waits = Vec::new();
        for i in 0..50 {
            let w = w.clone();
            let stmt = insert(&format!("n{i}"));
            waits.push(tokio::spawn(async move { w.write(vec![stmt]).await }));
        }
        let mut ids = Vec::new();
        for wait in waits {
            ids.push(wait.await.unwrap().unwrap().last_insert_rowid);
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50);
        // A failing op (unique name) fails alone; the next op still commits.
        let err = w.write(vec![insert("n1")]).await;
        assert!(err.is_err());
        assert!(w.write(vec![insert("fresh")]).await.unwrap().completed);
        // A require_change statement that changes nothing undoes the op.
        let op = vec![
            Stmt::new("INSERT INTO t (name) VALUES ('undone')", vec![]),
            Stmt::new("UPDATE t SET used = 1 WHERE name = 'nobody'", vec![]).requiring_change(),
        ];
        let out = w.write(op).await.unwrap();
        assert!(!out.completed);
        // A failing statement in the middle of an op undoes its earlier statements.
        let op = vec![
            Stmt::new("INSERT INTO t (name) VALUES ('half')", vec![]),
            insert("n2"),
        ];
        assert!(w.write(op).await.is_err());
        w.append(vec![insert("appended")]).await.unwrap();
        w.flush().await;
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM t WHERE name IN ('undone', 'half', 'appended', 'fresh') ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(names, ["appended", "fresh"]);
    }
}
