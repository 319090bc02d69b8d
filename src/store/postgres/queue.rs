//! The Postgres interface (SPEC §6): submissions and their judge results in two tables, shared
//! by any number of workers.
//!
//! It is the lease engine ([`crate::interface::lease`]: offer cache, wake-up plus sweep, heartbeat, held
//! claims, retries) over this file's primitives ([`PostgresLeases`]).
//!
//! How a submission moves through it:
//! - A front end (or [`PostgresInterface::enqueue`]) inserts it as `queued`; a trigger NOTIFYs
//!   `executioner_queued`, which wakes every worker's [`crate::interface::Interface::next`] at once (the
//!   LISTEN loop is `queue/listener.rs`, started by the engine with the first `next()`). The
//!   engine's periodic sweep finds anything a lost notification would have hidden (e.g. across
//!   a reconnect).
//! - `next()` only reads (`look`): it offers the oldest claimable submission. The claim
//!   (`executing`) is one atomic `UPDATE ... RETURNING` that succeeds for exactly one worker; it
//!   gives the attempt a fresh `claim_token` and a lease, and removes the results of any
//!   earlier attempt.
//! - While this instance holds submissions, the engine's heartbeat renews their leases
//!   (`renew`, which also ends abandoned submissions). A worker that dies stops renewing; once
//!   the lease has passed, another worker claims the submission again.
//! - Every later write of the attempt is fenced on its token (a worker that lost its claim
//!   changes nothing) and idempotent (results are keyed by the message's index in the attempt),
//!   so a write whose answer was lost with the connection is simply sent again, with backoff
//!   ([`crate::interface::lease::retrying`]), for a bounded time.
//! - A submission that ends in `error` is claimable again after a backoff, until its retries
//!   are used up.

#[macro_use]
mod records;
mod listener;
mod listing;
mod sql;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, instrument, warn};
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::interface::lease::{
    self, LeaseStore, Leased, Look, Recorded, Skip, Timing, Wake, RETRY,
};
use crate::interface::InterfaceError;
use crate::protocol::{Body, CompileResult, Message, RunSpec, SourceFile, Submission};

pub use crate::interface::state::{SubmissionState, UnknownState};
pub(crate) use listener::{listen, Heard};
pub use listing::{Column, Comparison, Condition, ListingKey, Operand};
pub use records::{Cancelled, SubmissionRecord};

/// The further files of a submission row (`files`, read as text): none when NULL.
pub(crate) fn files_of(row: &PgRow) -> Result<Vec<SourceFile>, sqlx::Error> {
    let text: Option<String> = row.try_get("files")?;
    match text {
        None => Ok(Vec::new()),
        Some(text) => serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: "files".into(),
            source: Box::new(e),
        }),
    }
}

/// The run of a submission row (`run`, read as text): none when NULL.
pub(crate) fn run_of(row: &PgRow) -> Result<Option<RunSpec>, sqlx::Error> {
    let text: Option<String> = row.try_get("run")?;
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
            index: "run".into(),
            source: Box::new(e),
        })
    })
    .transpose()
}

/// The embedded schema (`migrations/`), applied by [`PostgresInterface::connect`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The channel the `submissions` trigger notifies when a submission is (re-)queued.
const QUEUED_CHANNEL: &str = "executioner_queued";
/// The channel notified with a submission's id whenever its state changes.
pub const STATE_CHANNEL: &str = "executioner_state";

/// Settings of the Postgres interface. Defaults are in [`PostgresConfig::new`].
#[derive(Debug, Clone)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/database`.
    pub url: String,
    /// How long a claim lasts without a heartbeat. The heartbeat renews it every third of this.
    pub lease: Duration,
    /// How often a submission that ended in `error` (or whose worker vanished) is tried again.
    pub retries: u32,
    /// Pause before the first retry after `error`; doubles with each further attempt.
    pub retry_backoff: Duration,
    /// Longest pause before a retry.
    pub retry_backoff_max: Duration,
    /// How often `next()` looks for submissions without being notified.
    pub sweep_interval: Duration,
    /// How long a failed write is tried again before `send` gives up with an error.
    pub write_deadline: Duration,
    /// Most connections in the pool (the LISTEN connection comes on top).
    pub max_connections: u32,
    /// Stored in `claimed_by`, for people reading the table.
    pub worker_name: String,
    /// Take only workflows' judgings (`store::Judgings`), not the submissions: the worker of a
    /// standalone `executioner workflow rejudge`.
    pub judgings_only: bool,
}

impl PostgresConfig {
    /// A 30 s lease, 3 retries after 10 s (doubling, at most 10 min apart), a sweep every 5 s,
    /// 60 s to get a write through, 4 connections; named `host:pid`.
    pub fn new(url: impl Into<String>) -> Self {
        PostgresConfig {
            url: url.into(),
            lease: Duration::from_secs(30),
            retries: 3,
            retry_backoff: Duration::from_secs(10),
            retry_backoff_max: Duration::from_secs(600),
            sweep_interval: Duration::from_secs(5),
            write_deadline: Duration::from_secs(60),
            max_connections: 4,
            worker_name: crate::interface::worker_name(),
            judgings_only: false,
        }
    }

    /// The pause before the retry that follows attempt `attempt` (1-based), or `None` when the
    /// retries are used up.
    fn retry_after(&self, attempt: i32) -> Option<Duration> {
        Backoff::new(self.retry_backoff, self.retry_backoff_max)
            .attempts(self.retries.saturating_add(1))
            .after(u32::try_from(attempt).ok()?)
    }
}

/// A submission as the store holds it: its state, its end and its judge results in order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSubmission {
    pub state: SubmissionState,
    pub score: Option<f64>,
    pub failed_subtasks: Option<Vec<u32>>,
    /// Why it ended as `error` or `invalidData`.
    pub reason: Option<String>,
    /// Claims so far.
    pub attempts: u32,
    /// The `testing` and `tested` messages of its last attempt, in order.
    pub results: Vec<Message>,
}

/// A claim this instance holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    token: Uuid,
    attempt: i32,
    /// Index of the next message in the attempt (`executing` was 0).
    seq: i32,
}

/// The lease primitives of a PostgreSQL database: what the lease engine ([`Leased`]) needs to
/// be the Postgres interface.
pub struct PostgresLeases {
    pool: PgPool,
    config: PostgresConfig,
}

/// Submissions from, and messages to, a PostgreSQL database: the lease engine over
/// [`PostgresLeases`].
pub type PostgresInterface = Leased<PostgresLeases>;

/// A failure that trying again would not mend (an unreadable row, an unknown state).
fn failure(reason: impl Into<String>) -> InterfaceError {
    InterfaceError::permanent("postgres", reason)
}

/// A failure of the driver, transient or not as [`is_transient`] says.
fn failed(reason: impl Into<String>, error: sqlx::Error) -> InterfaceError {
    lease::failed::<PostgresLeases>(reason, error)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Failures worth another try: the connection or the server went away, or the server asks to
/// try again. Anything else (a constraint, a bug in a statement) would fail again.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P: shutdown/restart;
            // 40001/40P01: serialization failure/deadlock.
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }),
        _ => false,
    }
}

impl PostgresLeases {
    /// Runs `op` until it succeeds, fails for good, or `write_deadline` has passed.
    async fn retrying<T, F, Fut>(&self, what: &str, id: &str, op: F) -> Result<T, InterfaceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        lease::retrying(self, what, id, op)
            .await
            .map_err(|e| failed(format!("{what} of submission {id}: {e}"), e))
    }

    fn retries(&self) -> i32 {
        i32::try_from(self.config.retries).unwrap_or(i32::MAX)
    }

    /// The oldest claimable submission not offered lately, or how long until one may be due.
    /// (One this instance holds is not claimable while its lease is renewed.)
    async fn candidate(&self, skip: &Skip) -> Result<Look, sqlx::Error> {
        let row = sqlx::query(sql::CANDIDATE)
            .bind(self.retries())
            .bind(&skip.offered)
            .bind(self.config.judgings_only)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = row {
            let submission = Submission {
                id: row.try_get("id")?,
                problem: row.try_get("problem")?,
                language: row.try_get("language")?,
                source_code: row.try_get("source_code")?,
                files: files_of(&row)?,
                run: run_of(&row)?.map(Box::new),
            };
            return Ok(Look::Found(submission));
        }
        let due: Option<f64> = sqlx::query_scalar(sql::NEXT_DUE)
            .bind(self.retries())
            .fetch_one(&self.pool)
            .await?;
        // An infinite or absurd due time (a hand-set 'infinity') is no due time at all.
        let due = due.and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok());
        Ok(Look::Wait(due))
    }

    /// Records a message after `executing` for the claim `held`: whether the claim still held.
    async fn write(&self, id: &str, held: Held, body: &Body) -> Result<bool, InterfaceError> {
        let what = body.state();
        let holds = match body {
            Body::Executing => return Err(failure(format!("submission {id}: claimed twice"))),
            Body::Testing { .. } | Body::Tested { .. } => self.result(id, held, body).await?,
            Body::Compiling => {
                self.step(id, held, what, SubmissionState::Compiling, None, None)
                    .await?
            }
            Body::Compiled {
                result: CompileResult::Success,
                compile_output,
            } => {
                self.step(
                    id,
                    held,
                    what,
                    SubmissionState::Compiled,
                    compile_output.as_deref(),
                    None,
                )
                .await?
            }
            Body::Compiled {
                result: CompileResult::Error,
                compile_output,
            } => {
                let output = compile_output.as_deref();
                self.step(
                    id,
                    held,
                    what,
                    SubmissionState::CompileError,
                    output,
                    Some(0.0),
                )
                .await?
            }
            Body::Done {
                score,
                failed_subtasks,
            } => {
                let failed = failed_subtasks.as_ref().map(|f| {
                    f.iter()
                        .map(|&n| i32::try_from(n).unwrap_or(i32::MAX))
                        .collect::<Vec<_>>()
                });
                // After a compile error `done` has no score: the score stays 0.
                let end = End {
                    state: SubmissionState::Judged,
                    score: Some(score.unwrap_or(0.0)),
                    failed_subtasks: failed,
                    reason: None,
                    retry_after: None,
                };
                self.finish(id, held, what, end).await?
            }
            Body::Error { reason } => {
                let retry_after = self.config.retry_after(held.attempt);
                match retry_after {
                    Some(after) => {
                        info!(submission_id = %id, attempt = held.attempt, retry_in = ?after, "error; will be tried again")
                    }
                    None => {
                        info!(submission_id = %id, attempt = held.attempt, "error; no retries left")
                    }
                }
                let end = End {
                    state: SubmissionState::Error,
                    score: None,
                    failed_subtasks: None,
                    reason: reason.clone(),
                    retry_after,
                };
                self.finish(id, held, what, end).await?
            }
            Body::Invalid { reason } => {
                let end = End {
                    state: SubmissionState::InvalidData,
                    score: None,
                    failed_subtasks: None,
                    reason: reason.clone(),
                    retry_after: None,
                };
                self.finish(id, held, what, end).await?
            }
        };
        Ok(holds)
    }

    async fn step(
        &self,
        id: &str,
        held: Held,
        what: &str,
        state: SubmissionState,
        compile_output: Option<&str>,
        score: Option<f64>,
    ) -> Result<bool, InterfaceError> {
        let lease = millis(self.config.lease);
        let done = self
            .retrying(what, id, || {
                sqlx::query(sql::STEP)
                    .bind(id)
                    .bind(held.token)
                    .bind(state.as_str())
                    .bind(compile_output)
                    .bind(score)
                    .bind(lease)
                    .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish(
        &self,
        id: &str,
        held: Held,
        what: &str,
        end: End,
    ) -> Result<bool, InterfaceError> {
        let retry_after = end.retry_after.map(millis);
        let done = self
            .retrying(what, id, || {
                sqlx::query(sql::FINISH)
                    .bind(id)
                    .bind(held.token)
                    .bind(end.state.as_str())
                    .bind(end.score)
                    .bind(end.failed_subtasks.as_deref())
                    .bind(end.reason.as_deref())
                    .bind(retry_after)
                    .execute(&self.pool)
            })
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A `testing` or `tested` message as a `judge_results` row.
    async fn result(&self, id: &str, held: Held, body: &Body) -> Result<bool, InterfaceError> {
        let Some(row) = records::ResultRow::of(body) else {
            return Err(failure(format!(
                "submission {id}: {} is not a test result",
                body.state()
            )));
        };
        let holders: i64 = self
            .retrying(body.state(), id, || {
                sqlx::query_scalar(sql::RESULT)
                    .bind(id)
                    .bind(held.token)
                    .bind(held.seq)
                    .bind(row.state)
                    .bind(row.test_case)
                    .bind(row.subtask)
                    .bind(row.result)
                    .bind(row.time)
                    .bind(row.memory)
                    .bind(row.score)
                    .bind(row.output.as_deref())
                    .fetch_one(&self.pool)
            })
            .await?;
        Ok(holders == 1)
    }

    /// Renews the leases of the claims `held` here and ends abandoned submissions.
    async fn heartbeat(&self, held: Vec<(String, Held)>) {
        let (ids, tokens): (Vec<String>, Vec<Uuid>) =
            held.into_iter().map(|(id, held)| (id, held.token)).unzip();
        if !ids.is_empty() {
            let renewed: Result<Vec<String>, _> = sqlx::query_scalar(sql::RENEW)
                .bind(&ids)
                .bind(&tokens)
                .bind(millis(self.config.lease))
                .fetch_all(&self.pool)
                .await;
            match renewed {
                Ok(renewed) if renewed.len() < ids.len() => {
                    let lost: Vec<&String> =
                        ids.iter().filter(|id| !renewed.contains(id)).collect();
                    // Their next write will fail: the worker drops them then.
                    warn!(
                        ?lost,
                        "claims lost: their leases expired and other workers took them"
                    );
                }
                Ok(_) => debug!(held = ids.len(), "leases renewed"),
                Err(e) => warn!(error = %e, "could not renew leases"),
            }
        }
        match sqlx::query_scalar::<_, String>(sql::ABANDON)
            .bind(self.retries())
            .fetch_all(&self.pool)
            .await
        {
            Ok(ids) if !ids.is_empty() => {
                warn!(
                    ?ids,
                    "submissions abandoned: their workers vanished too often"
                )
            }
            Ok(_) => {}
            Err(e) => debug!(error = %e, "could not look for abandoned submissions"),
        }
    }
}

/// How an attempt ends.
struct End {
    state: SubmissionState,
    score: Option<f64>,
    failed_subtasks: Option<Vec<i32>>,
    reason: Option<String>,
    retry_after: Option<Duration>,
}

#[async_trait]
impl LeaseStore for PostgresLeases {
    type Claim = Held;
    type Error = sqlx::Error;

    const NAME: &'static str = "postgres";

    fn is_transient(error: &sqlx::Error) -> bool {
        is_transient(error)
    }

    fn timing(&self) -> Timing {
        Timing {
            lease: self.config.lease,
            sweep_interval: self.config.sweep_interval,
            write_deadline: self.config.write_deadline,
        }
    }

    async fn look(&self, skip: &Skip) -> Result<Look, sqlx::Error> {
        self.candidate(skip).await
    }

    #[instrument(skip_all, fields(submission_id = %id))]
    async fn claim(&self, id: &str) -> Result<Option<Held>, InterfaceError> {
        let token = Uuid::new_v4();
        let lease = millis(self.config.lease);
        let attempt: Option<i32> = self
            .retrying("claiming", id, || {
                sqlx::query_scalar(sql::CLAIM)
                    .bind(self.retries())
                    .bind(id)
                    .bind(token)
                    .bind(&self.config.worker_name)
                    .bind(lease)
                    .fetch_optional(&self.pool)
            })
            .await?;
        Ok(attempt.map(|attempt| {
            debug!(attempt, "claimed");
            Held {
                token,
                attempt,
                seq: 1,
            }
        }))
    }

    async fn record(
        &self,
        id: &str,
        held: &Held,
        body: &Body,
    ) -> Result<Recorded<Held>, InterfaceError> {
        Ok(if !self.write(id, *held, body).await? {
            Recorded::Lost
        } else if body.is_terminal() {
            Recorded::Ended
        } else {
            Recorded::Holds(Held {
                seq: held.seq + 1,
                ..*held
            })
        })
    }

    /// Claims whose lease could not be renewed stay held: their next write finds them lost.
    async fn renew(&self, held: Vec<(String, Held)>) -> Vec<String> {
        self.heartbeat(held).await;
        Vec::new()
    }

    /// Keeps a LISTEN connection open, reconnecting when it is lost; every notification, and
    /// every (re)connect (notifications may have been missed meanwhile), wakes `next()`.
    async fn listen(&self, wake: &Wake, stop: &CancellationToken) {
        listen(&self.pool, &[QUEUED_CHANNEL], RETRY, stop, |_| wake.wake()).await;
    }

    /// Closes the pool.
    async fn close(&self) {
        self.pool.close().await;
    }
}

impl PostgresInterface {
    /// Connects, applies the migrations and starts the heartbeat (the listener starts with the
    /// first `next()`).
    pub async fn connect(config: PostgresConfig) -> Result<Self, InterfaceError> {
        let options: PgConnectOptions = config
            .url
            .parse()
            .map_err(|e| failed(format!("invalid database URL: {e}"), e))?;
        let options = options.application_name("executioner");
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| failed(format!("connecting to the database: {e}"), e))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| failure(format!("applying the migrations: {e}")).caused_by(e))?;
        Ok(Leased::start(PostgresLeases { pool, config }))
    }

    /// The pool, for callers that read the tables themselves.
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// Queues submissions (state `queued`). Returns how many were new: an id that exists is
    /// left as it is.
    pub async fn enqueue(&self, submissions: &[Submission]) -> Result<u64, InterfaceError> {
        let none = vec![None; submissions.len()];
        self.enqueue_with(submissions, &none, &vec![None; submissions.len()])
            .await
    }

    /// Queues submissions as [`PostgresInterface::enqueue`] does, each with its callback URL
    /// and its deadline, ms since the epoch (`callbacks[i]` and `deadlines[i]` for
    /// `submissions[i]`).
    pub async fn enqueue_with(
        &self,
        submissions: &[Submission],
        callbacks: &[Option<String>],
        deadlines: &[Option<i64>],
    ) -> Result<u64, InterfaceError> {
        let column = |f: fn(&Submission) -> &String| -> Vec<&str> {
            submissions.iter().map(|s| f(s).as_str()).collect()
        };
        let (ids, problems) = (column(|s| &s.id), column(|s| &s.problem));
        let (languages, sources) = (column(|s| &s.language), column(|s| &s.source_code));
        // NULL for a one-file submission, so its row is as before.
        let files: Vec<Option<String>> = submissions
            .iter()
            .map(|s| {
                (!s.files.is_empty())
                    .then(|| serde_json::to_string(&s.files).expect("files serialise"))
            })
            .collect();
        let runs: Vec<Option<String>> = submissions
            .iter()
            .map(|s| {
                s.run
                    .as_ref()
                    .map(|run| serde_json::to_string(run).expect("a run serialises"))
            })
            .collect();
        let first = submissions.first().map_or("", |s| s.id.as_str());
        let inserted = self
            .shared
            .retrying("queueing", first, || {
                sqlx::query(sql::ENQUEUE)
                    .bind(&ids)
                    .bind(&problems)
                    .bind(&languages)
                    .bind(&sources)
                    .bind(&files)
                    .bind(callbacks)
                    .bind(&runs)
                    .bind(deadlines)
                    .execute(&self.shared.pool)
            })
            .await?;
        Ok(inserted.rows_affected())
    }

    /// Ends every unfinished submission whose deadline has passed ([`listing::EXPIRE`]); their ids.
    pub async fn expire(&self) -> Result<Vec<String>, InterfaceError> {
        self.shared
            .retrying("expiring deadlines", "", || {
                sqlx::query_scalar(listing::EXPIRE).fetch_all(&self.shared.pool)
            })
            .await
    }

    /// The stored state and judge results of one submission, `None` if there is no such id.
    pub async fn status(&self, id: &str) -> Result<Option<StoredSubmission>, InterfaceError> {
        let read = |e: sqlx::Error| failed(format!("reading submission {id}: {e}"), e);
        let Some(row) = sqlx::query(sql::STATUS)
            .bind(id)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(read)?
        else {
            return Ok(None);
        };
        let state: String = row.try_get("state").map_err(read)?;
        let failed: Option<Vec<i32>> = row.try_get("failed_subtasks").map_err(read)?;
        let attempts: i32 = row.try_get("attempts").map_err(read)?;
        let rows = sqlx::query(sql::RESULTS)
            .bind(id)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(read)?;
        let results = rows
            .iter()
            .map(|row| result_message(id, row))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failure(format!("reading the results of submission {id}: {e}")))?;
        Ok(Some(StoredSubmission {
            state: state
                .parse()
                .map_err(|e: UnknownState| failure(format!("submission {id}: {e}")))?,
            score: row.try_get("score").map_err(read)?,
            failed_subtasks: failed.map(|f| {
                f.into_iter()
                    .map(|n| u32::try_from(n).unwrap_or(0))
                    .collect()
            }),
            reason: row.try_get("reason").map_err(read)?,
            attempts: u32::try_from(attempts).unwrap_or(0),
            results,
        }))
    }
}

/// A `judge_results` row as the message it records.
fn result_message(id: &str, row: &sqlx::postgres::PgRow) -> Result<Message, String> {
    let get_u32 = |column: &str| -> Result<Option<u32>, String> {
        let n: Option<i32> = row.try_get(column).map_err(|e| e.to_string())?;
        Ok(n.map(|n| u32::try_from(n).unwrap_or(0)))
    };
    let get_u64 = |column: &str| -> Result<Option<u64>, String> {
        let n: Option<i64> = row.try_get(column).map_err(|e| e.to_string())?;
        Ok(n.map(|n| u64::try_from(n).unwrap_or(0)))
    };
    let state: String = row.try_get("state").map_err(|e| e.to_string())?;
    let test_case = get_u32("test_case")?.unwrap_or(0);
    let subtask = get_u32("subtask")?;
    let body = match state.as_str() {
        "testing" => Body::Testing { test_case, subtask },
        "tested" => {
            let result: Option<String> = row.try_get("result").map_err(|e| e.to_string())?;
            let result = result.ok_or("a tested row without result")?;
            Body::Tested {
                test_case,
                subtask,
                result: serde_json::from_value(serde_json::Value::String(result))
                    .map_err(|e| e.to_string())?,
                time: get_u64("time")?,
                memory: get_u64("memory")?,
                score: row.try_get("score").map_err(|e| e.to_string())?,
                output: {
                    let text: Option<String> = row.try_get("output").map_err(|e| e.to_string())?;
                    text.map(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
                        .transpose()?
                },
            }
        }
        other => return Err(format!("unknown result state {other:?}")),
    };
    Ok(Message::new(id, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_until_used_up() {
        let config = PostgresConfig::new("postgres://x@localhost/db");
        assert_eq!(config.retry_after(1), Some(Duration::from_secs(10)));
        assert_eq!(config.retry_after(2), Some(Duration::from_secs(20)));
        assert_eq!(config.retry_after(3), Some(Duration::from_secs(40)));
        assert_eq!(config.retry_after(4), None);
        let mut config = config;
        config.retries = 40;
        assert_eq!(config.retry_after(30), Some(Duration::from_secs(600)));
    }

    #[test]
    fn only_connection_failures_are_retried() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(is_transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset
        ))));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_transient(&sqlx::Error::PoolClosed));
    }
}
