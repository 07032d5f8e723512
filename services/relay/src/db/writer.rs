//! The one writer: every write of the relay goes through one task that owns one connection
//! and runs whatever arrived together in one transaction (group commit).
//!
//! SQLite admits one writer at a time; several pooled connections writing at once wait for
//! each other in SQLite's busy handler, which sleeps in steps of milliseconds. With a single
//! writer there is no such waiting, a burst of session set-ups costs a few commits instead of
//! thousands, and reads (on the other pooled connections, WAL mode) never block.
//!
//! A caller sends an [`Op`] — one or more statements that stand or fall together — and waits
//! for its [`Outcome`], which is sent only after the batch holding it has been committed, so
//! "written first, then announced" holds as before. Fire-and-forget ops (audit and session
//! event lines) use the same queue and keep their order. If a batch cannot be committed, each
//! of its ops is tried again alone, so one bad op never loses the others.

use sqlx::pool::PoolConnection;
use sqlx::{Acquire, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

/// Most ops committed in one transaction.
const BATCH: usize = 512;

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

type Reply = oneshot::Sender<Result<Outcome, sqlx::Error>>;

#[derive(Debug)]
enum Item {
    Op {
        stmts: Vec<Stmt>,
        reply: Option<Reply>,
    },
    Flush(oneshot::Sender<()>),
}

/// The writer's queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::Sender<Item>,
}

impl Writer {
    /// Starts the writer task on a connection taken from `pool` for good.
    pub async fn start(pool: &SqlitePool) -> Result<Writer, sqlx::Error> {
        let conn = pool.acquire().await?;
        let (tx, rx) = mpsc::channel(16 * 1024);
        tokio::spawn(run(conn, rx));
        Ok(Writer { tx })
    }

    /// Runs `stmts` as one op and waits until it is committed.
    pub async fn write(&self, stmts: Vec<Stmt>) -> Result<Outcome, sqlx::Error> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Item::Op {
                stmts,
                reply: Some(reply),
            })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        wait.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Queues `stmts` without waiting (append-only lines); errors are logged by the writer.
    pub async fn append(&self, stmts: Vec<Stmt>) -> Result<(), sqlx::Error> {
        self.tx
            .send(Item::Op { stmts, reply: None })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)
    }

    /// Waits until everything queued before this call has been committed.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(mut conn: PoolConnection<Sqlite>, mut rx: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        let results = match run_batch(&mut conn, &batch).await {
            Ok(results) => results,
            Err(e) => {
                tracing::warn!(error = %e, ops = batch.len(), "a write batch failed; writing its ops one by one");
                let mut results = Vec::with_capacity(batch.len());
                for item in &batch {
                    results.push(match item {
                        Item::Op { stmts, .. } => run_alone(&mut conn, stmts).await,
                        Item::Flush(_) => Ok(done()),
                    });
                }
                results
            }
        };
        for (item, result) in batch.drain(..).zip(results) {
            match item {
                Item::Op {
                    reply: Some(reply), ..
                } => {
                    let _ = reply.send(result);
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

/// Runs every op of the batch in one transaction; an op's own failure is its result, a
/// failure of the transaction is the batch's.
async fn run_batch(
    conn: &mut SqliteConnection,
    batch: &[Item],
) -> Result<Vec<Result<Outcome, sqlx::Error>>, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
        results.push(match item {
            Item::Op { stmts, .. } => run_op(&mut tx, stmts).await,
            Item::Flush(_) => Ok(done()),
        });
    }
    tx.commit().await?;
    Ok(results)
}

async fn run_alone(conn: &mut SqliteConnection, stmts: &[Stmt]) -> Result<Outcome, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let outcome = run_op(&mut tx, stmts).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Runs one op inside the batch's transaction, under a savepoint when it has several
/// statements, so a failing op leaves nothing behind.
async fn run_op(conn: &mut SqliteConnection, stmts: &[Stmt]) -> Result<Outcome, sqlx::Error> {
    if let [stmt] = stmts {
        let r = exec(conn, stmt).await?;
        return Ok(Outcome {
            completed: !stmt.require_change || r.rows_affected() > 0,
            rows_affected: r.rows_affected(),
            last_insert_rowid: r.last_insert_rowid(),
        });
    }
    let mut sp = conn.begin().await?;
    let mut outcome = done();
    for stmt in stmts {
        let r = exec(&mut sp, stmt).await?;
        outcome.rows_affected = r.rows_affected();
        outcome.last_insert_rowid = r.last_insert_rowid();
        if stmt.require_change && r.rows_affected() == 0 {
            sp.rollback().await?;
            outcome.completed = false;
            return Ok(outcome);
        }
    }
    sp.commit().await?;
    Ok(outcome)
}

async fn exec(
    conn: &mut SqliteConnection,
    stmt: &Stmt,
) -> Result<sqlx::sqlite::SqliteQueryResult, sqlx::Error> {
    let mut q = sqlx::query(stmt.sql);
    for arg in &stmt.args {
        q = match arg {
            Value::Int(v) => q.bind(*v),
            Value::OptInt(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.as_str()),
            Value::OptText(v) => q.bind(v.as_deref()),
        };
    }
    q.execute(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    async fn pool(dir: &tempfile::TempDir) -> SqlitePool {
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
        let w = Writer::start(&pool).await.unwrap();
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
