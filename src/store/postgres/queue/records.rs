//! What the HTTP API and the workflows do with the Postgres store besides judging: read
//! submissions as records, select submissions to rejudge, replace a submission's results with
//! a rejudge's, withdraw a queued submission, and hand back a claim held for a remote worker.

use sqlx::postgres::PgRow;
use sqlx::Row;
use tracing::{info, instrument};

use super::{failed, failure, result_message, PostgresInterface};
use crate::interface::{InterfaceError, SubmissionState};
use crate::protocol::{Body, CompileResult, Message, Submission};
use crate::verdict::Verdict;

/// A `timestamptz` column of `s` as ms since the epoch (no date type needed). Taken at UTC so
/// that the expression is immutable and can be indexed (`EXTRACT` of a `timestamptz` is only
/// stable); the value is the same. NULL for an infinite time (a front end may write one), which
/// no `int8` holds: an index on the expression must not refuse the row.
macro_rules! epoch_ms {
    ($column:literal) => {
        concat!(
            "(CASE WHEN isfinite(s.",
            $column,
            ") THEN (EXTRACT(EPOCH FROM s.",
            $column,
            " AT TIME ZONE 'UTC') * 1000)::int8 END)"
        )
    };
}

/// When the submission was made, ms since the epoch.
macro_rules! submitted_ms {
    () => {
        epoch_ms!("submission_time")
    };
}

/// When the submission last changed, ms since the epoch.
macro_rules! updated_ms {
    () => {
        epoch_ms!("updated_at")
    };
}

/// No worker holds the submission: its last attempt (if any) has ended.
macro_rules! attempt_over {
    () => {
        "(s.lease_expires_at IS NULL)"
    };
}

/// It ended in `error` and will be tried again.
macro_rules! retry_pending {
    () => {
        "(s.state = 'error' AND s.not_before IS NOT NULL)"
    };
}

/// The columns of a [`SubmissionRecord`] (`s` being a row of `submissions`).
macro_rules! record_columns {
    () => {
        concat!(
            "s.id, s.problem, s.language, s.state, s.score, s.failed_subtasks, s.reason,
             s.compile_output, ",
            submitted_ms!(),
            " AS submitted_ms, ",
            updated_ms!(),
            " AS updated_ms, ",
            attempt_over!(),
            " AS attempt_over, ",
            retry_pending!(),
            " AS retry_pending,
             (SELECT count(*) FROM judge_results r
                WHERE r.submission_id = s.id AND r.state = 'tested') AS tests_done,
             s.callback_url, ",
            epoch_ms!("callback_sent_at"),
            " AS callback_sent_ms, s.timed_out,
             (s.lease_expires_at <= now()) IS TRUE AS lease_expired"
        )
    };
}

const RECORD: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM submissions s WHERE s.id = $1"
);

const RECORDS: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM submissions s WHERE s.judging_of IS NULL ORDER BY s.submission_time, s.id"
);

/// Submissions whose callback may be due (their operations may still run: the caller looks).
const CALLBACKS_DUE: &str = concat!(
    "SELECT ",
    record_columns!(),
    " FROM submissions s
      WHERE s.callback_url IS NOT NULL AND s.callback_sent_at IS DISTINCT FROM s.updated_at
      ORDER BY s.updated_at"
);

/// The callback of `$1` went out for the outcome reached at `$2` (ms since the epoch); nothing
/// if the submission changed since.
const CALLBACK_SETTLED: &str = concat!(
    "UPDATE submissions s SET callback_sent_at = s.updated_at WHERE s.id = $1 AND ",
    updated_ms!(),
    " = $2"
);

const TIMED_RESULTS: &str = "
    SELECT state, test_case, subtask, result, time, memory, score, output::text AS output,
           (EXTRACT(EPOCH FROM judge_time) * 1000)::int8 AS judge_ms
    FROM judge_results WHERE submission_id = $1 ORDER BY seq";

const QUEUED_COUNT: &str = "SELECT count(*) FROM submissions WHERE state = 'queued'";

const BY_PROBLEM: &str = "
    SELECT id, problem, language, source_code, files::text AS files, run::text AS run FROM submissions
    WHERE problem = $1 AND state <> 'cancelled' AND judging_of IS NULL
    ORDER BY submission_time, id";

const BY_IDS: &str = "
    SELECT id, problem, language, source_code, files::text AS files, run::text AS run FROM submissions
    WHERE id = ANY($1) AND judging_of IS NULL ORDER BY submission_time, id";

/// Queues the judging `$1` of `$2` (see `store::Judgings`): problem `$3`, language `$4`,
/// source `$5`, further files `$6` (JSON or NULL), run `$7` (JSON or NULL).
const ENQUEUE_JUDGING: &str = "
    INSERT INTO submissions (id, judging_of, problem, language, source_code, files, run)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)";

/// Deletes the judging `$1` (its results go with it): a worker judging it loses its claim.
const FORGET_JUDGING: &str = "DELETE FROM submissions WHERE id = $1 AND judging_of IS NOT NULL";

/// Deletes every judging of `$1`.
const FORGET_JUDGINGS_OF: &str = "DELETE FROM submissions WHERE judging_of = $1";

/// Whether `$1` is a judging.
const IS_JUDGING: &str = "SELECT judging_of IS NOT NULL FROM submissions WHERE id = $1";

/// Withdraws a submission no worker has taken. Returns the state it is in afterwards.
const CANCEL: &str = "
    WITH cancelled AS (
        UPDATE submissions SET state = 'cancelled', updated_at = now()
        WHERE id = $1 AND state = 'queued'
        RETURNING state
    )
    SELECT state FROM cancelled
    UNION ALL
    SELECT state FROM submissions WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM cancelled)";

/// Gives back the claim `$2` on submission `$1`: queued again, for any worker.
const RELEASE: &str = "
    UPDATE submissions SET
        state = 'queued',
        claim_token = NULL,
        claimed_by = NULL,
        lease_expires_at = NULL,
        not_before = NULL,
        updated_at = now()
    WHERE id = $1 AND claim_token = $2 AND lease_expires_at IS NOT NULL";

/// The end of a rejudge, written over whatever the submission held: a worker still judging it
/// loses its claim (its later writes are fenced on the token, which is gone).
const REPLACE: &str = "
    UPDATE submissions SET
        state = $2,
        score = $3,
        failed_subtasks = $4,
        reason = $5,
        compile_output = $6,
        claim_token = NULL,
        claimed_by = $7,
        lease_expires_at = NULL,
        not_before = NULL,
        updated_at = now()
    WHERE id = $1";

const DELETE_RESULTS: &str = "DELETE FROM judge_results WHERE submission_id = $1";

const INSERT_RESULTS: &str = "
    INSERT INTO judge_results
        (submission_id, seq, state, test_case, subtask, result, time, memory, score, output)
    SELECT $1, seq, state, test_case, subtask, result, time, memory, score, output::jsonb
    FROM unnest($2::int[], $3::text[], $4::int[], $5::int[], $6::text[],
                $7::int8[], $8::int8[], $9::float8[], $10::text[])
        AS u(seq, state, test_case, subtask, result, time, memory, score, output)";

/// A submission as the store holds it, for readers (the HTTP API).
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionRecord {
    pub id: String,
    pub problem: String,
    pub language: String,
    pub state: SubmissionState,
    pub score: Option<f64>,
    pub failed_subtasks: Option<Vec<u32>>,
    pub reason: Option<String>,
    pub compile_output: Option<String>,
    pub submitted_ms: i64,
    pub updated_ms: i64,
    /// No worker holds it: the last attempt (if any) has ended.
    pub attempt_over: bool,
    /// Ended in `error` and will be tried again.
    pub retry_pending: bool,
    /// `tested` results of the current attempt.
    pub tests_done: usize,
    /// Where the finished submission is sent, if anywhere.
    pub callback_url: Option<String>,
    /// The `updated_ms` of the outcome the callback last went out for.
    pub callback_sent_ms: Option<i64>,
    /// Ended at its deadline (its state is then `Cancelled`).
    pub timed_out: bool,
    /// Held, but its lease has expired: the worker stopped renewing it.
    pub lease_expired: bool,
}

/// What `cancel` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// Now (or already) cancelled.
    Yes,
    /// Taken by a worker or finished: the state it is in.
    TooLate(SubmissionState),
    NotFound,
}

/// How a sequence of messages ends up in the `submissions` row (SPEC §6).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Ending {
    pub state: SubmissionState,
    pub score: Option<f64>,
    pub failed_subtasks: Option<Vec<i32>>,
    pub reason: Option<String>,
    pub compile_output: Option<String>,
}

impl Ending {
    pub fn of(messages: &[Message]) -> Ending {
        let mut ending = Ending {
            state: SubmissionState::Queued,
            score: None,
            failed_subtasks: None,
            reason: None,
            compile_output: None,
        };
        for message in messages {
            ending.state = ending.state.after(&message.body);
            match &message.body {
                Body::Compiled {
                    result,
                    compile_output,
                } => {
                    ending.compile_output = compile_output.clone();
                    if *result == CompileResult::Error {
                        ending.score = Some(0.0);
                    }
                }
                // After a compile error `done` has no score: the score stays 0.
                Body::Done {
                    score,
                    failed_subtasks,
                } => {
                    ending.score = Some(score.unwrap_or(0.0));
                    ending.failed_subtasks = failed_subtasks.as_ref().map(|f| {
                        f.iter()
                            .map(|&n| i32::try_from(n).unwrap_or(i32::MAX))
                            .collect()
                    });
                }
                Body::Error { reason } | Body::Invalid { reason } => {
                    ending.reason = reason.clone();
                }
                _ => {}
            }
        }
        ending
    }
}

/// A `testing` or `tested` message as the columns of its `judge_results` row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ResultRow {
    pub state: &'static str,
    pub test_case: i32,
    pub subtask: Option<i32>,
    pub result: Option<&'static str>,
    pub time: Option<i64>,
    pub memory: Option<i64>,
    pub score: Option<f64>,
    /// An ad-hoc run's output, as JSON text.
    pub output: Option<String>,
}

impl ResultRow {
    /// `None` for a message that is not a test result.
    pub fn of(body: &Body) -> Option<ResultRow> {
        let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let (test_case, subtask, result, time, memory, score, output) = match body {
            Body::Testing { test_case, subtask } => {
                (*test_case, *subtask, None, None, None, None, None)
            }
            Body::Tested {
                test_case,
                subtask,
                result,
                time,
                memory,
                score,
                output,
            } => (
                *test_case,
                *subtask,
                Some(*result),
                *time,
                *memory,
                *score,
                output.as_ref().map(|output| {
                    serde_json::to_string(output).expect("a run's output serialises")
                }),
            ),
            _ => return None,
        };
        Some(ResultRow {
            state: body.state(),
            test_case: int(test_case),
            subtask: subtask.map(int),
            result: result.map(Verdict::as_str),
            time: time.map(big),
            memory: memory.map(big),
            score,
            output,
        })
    }
}

/// The `testing`/`tested` messages of `messages` as `judge_results` columns, each at its index.
#[derive(Default)]
struct ResultColumns {
    seq: Vec<i32>,
    state: Vec<&'static str>,
    test_case: Vec<i32>,
    subtask: Vec<Option<i32>>,
    result: Vec<Option<&'static str>>,
    time: Vec<Option<i64>>,
    memory: Vec<Option<i64>>,
    score: Vec<Option<f64>>,
    output: Vec<Option<String>>,
}

impl ResultColumns {
    fn of(messages: &[Message]) -> Self {
        let mut columns = ResultColumns::default();
        for (i, message) in messages.iter().enumerate() {
            let Some(row) = ResultRow::of(&message.body) else {
                continue;
            };
            columns.seq.push(i32::try_from(i).unwrap_or(i32::MAX));
            columns.state.push(row.state);
            columns.test_case.push(row.test_case);
            columns.subtask.push(row.subtask);
            columns.result.push(row.result);
            columns.time.push(row.time);
            columns.memory.push(row.memory);
            columns.score.push(row.score);
            columns.output.push(row.output);
        }
        columns
    }
}

fn submission_of(row: &PgRow) -> Result<Submission, sqlx::Error> {
    Ok(Submission {
        id: row.try_get("id")?,
        problem: row.try_get("problem")?,
        language: row.try_get("language")?,
        source_code: row.try_get("source_code")?,
        files: super::files_of(row)?,
        run: super::run_of(row)?.map(Box::new),
    })
}

pub(super) fn record_of(row: &PgRow) -> Result<SubmissionRecord, String> {
    let get_err = |e: sqlx::Error| e.to_string();
    let state: String = row.try_get("state").map_err(get_err)?;
    let failed: Option<Vec<i32>> = row.try_get("failed_subtasks").map_err(get_err)?;
    let tests_done: i64 = row.try_get("tests_done").map_err(get_err)?;
    Ok(SubmissionRecord {
        id: row.try_get("id").map_err(get_err)?,
        problem: row.try_get("problem").map_err(get_err)?,
        language: row.try_get("language").map_err(get_err)?,
        state: state.parse().map_err(|e| format!("{e}"))?,
        score: row.try_get("score").map_err(get_err)?,
        failed_subtasks: failed.map(|f| {
            f.into_iter()
                .map(|n| u32::try_from(n).unwrap_or(0))
                .collect()
        }),
        reason: row.try_get("reason").map_err(get_err)?,
        compile_output: row.try_get("compile_output").map_err(get_err)?,
        submitted_ms: row.try_get("submitted_ms").map_err(get_err)?,
        updated_ms: row.try_get("updated_ms").map_err(get_err)?,
        attempt_over: row.try_get("attempt_over").map_err(get_err)?,
        retry_pending: row.try_get("retry_pending").map_err(get_err)?,
        tests_done: usize::try_from(tests_done).unwrap_or(0),
        callback_url: row.try_get("callback_url").map_err(get_err)?,
        callback_sent_ms: row.try_get("callback_sent_ms").map_err(get_err)?,
        timed_out: row.try_get("timed_out").map_err(get_err)?,
        lease_expired: row.try_get("lease_expired").map_err(get_err)?,
    })
}

impl PostgresInterface {
    /// One submission as a record, `None` if there is no such id.
    pub async fn record(&self, id: &str) -> Result<Option<SubmissionRecord>, InterfaceError> {
        let read = |e: String| failure(format!("reading submission {id}: {e}"));
        let row = sqlx::query(RECORD)
            .bind(id)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("reading submission {id}: {e}"), e))?;
        row.as_ref().map(record_of).transpose().map_err(read)
    }

    /// Every submission, oldest first.
    pub async fn records(&self) -> Result<Vec<SubmissionRecord>, InterfaceError> {
        self.records_of(RECORDS, "the submissions").await
    }

    /// Submissions with a callback not sent for their latest change, oldest change first.
    pub async fn callback_candidates(&self) -> Result<Vec<SubmissionRecord>, InterfaceError> {
        self.records_of(CALLBACKS_DUE, "the callbacks due").await
    }

    /// The records `query` (of `record_columns!`, no parameters) selects; `what` for errors.
    async fn records_of(
        &self,
        query: &'static str,
        what: &str,
    ) -> Result<Vec<SubmissionRecord>, InterfaceError> {
        let read = |e: String| failure(format!("reading {what}: {e}"));
        let rows = sqlx::query(query)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("reading {what}: {e}"), e))?;
        rows.iter()
            .map(record_of)
            .collect::<Result<_, _>>()
            .map_err(read)
    }

    /// Records that the callback of `id` went out for the outcome it reached at `outcome_ms`.
    pub async fn settle_callback(&self, id: &str, outcome_ms: i64) -> Result<(), InterfaceError> {
        sqlx::query(CALLBACK_SETTLED)
            .bind(id)
            .bind(outcome_ms)
            .execute(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("recording the callback of submission {id}: {e}"), e))?;
        Ok(())
    }

    /// The `testing` and `tested` messages of the current attempt, in order, each with when it
    /// was recorded (ms since the epoch).
    pub async fn timed_results(&self, id: &str) -> Result<Vec<(Message, i64)>, InterfaceError> {
        let read = |e: String| failure(format!("reading the results of submission {id}: {e}"));
        let rows = sqlx::query(TIMED_RESULTS)
            .bind(id)
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("reading the results of submission {id}: {e}"), e))?;
        rows.iter()
            .map(|row| {
                let at: i64 = row.try_get("judge_ms").map_err(|e| e.to_string())?;
                Ok((result_message(id, row)?, at))
            })
            .collect::<Result<_, String>>()
            .map_err(read)
    }

    /// Submissions waiting for a worker.
    pub async fn queued(&self) -> Result<usize, InterfaceError> {
        let n: i64 = sqlx::query_scalar(QUEUED_COUNT)
            .fetch_one(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("counting queued submissions: {e}"), e))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Every submission of `problem` (cancelled ones left out), oldest first.
    pub async fn submissions_of_problem(
        &self,
        problem: &str,
    ) -> Result<Vec<Submission>, InterfaceError> {
        let rows = sqlx::query(BY_PROBLEM)
            .bind(problem)
            .fetch_all(&self.shared.pool)
            .await
            .and_then(|rows| rows.iter().map(submission_of).collect());
        rows.map_err(|e| {
            failed(
                format!("reading the submissions of problem {problem}: {e}"),
                e,
            )
        })
    }

    /// The submissions with these ids that exist, oldest first.
    pub async fn submissions_by_ids(
        &self,
        ids: &[String],
    ) -> Result<Vec<Submission>, InterfaceError> {
        let rows = sqlx::query(BY_IDS)
            .bind(ids)
            .fetch_all(&self.shared.pool)
            .await
            .and_then(|rows| rows.iter().map(submission_of).collect());
        rows.map_err(|e| failed(format!("reading submissions by id: {e}"), e))
    }

    /// Queues `judging` (its id the key) as a judging of `of`, after deleting every earlier
    /// judging of `of`, in one transaction.
    #[instrument(skip(self, judging), fields(judging = %judging.id))]
    pub async fn enqueue_judging(
        &self,
        of: &str,
        judging: &Submission,
    ) -> Result<(), InterfaceError> {
        let files = (!judging.files.is_empty())
            .then(|| serde_json::to_string(&judging.files).expect("files serialise"));
        let run = judging
            .run
            .as_ref()
            .map(|run| serde_json::to_string(run).expect("a run serialises"));
        let shared = &self.shared;
        self.shared
            .retrying("queueing a judging", &judging.id, || async {
                let mut tx = shared.pool.begin().await?;
                sqlx::query(FORGET_JUDGINGS_OF)
                    .bind(of)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(ENQUEUE_JUDGING)
                    .bind(&judging.id)
                    .bind(of)
                    .bind(&judging.problem)
                    .bind(&judging.language)
                    .bind(&judging.source_code)
                    .bind(&files)
                    .bind(&run)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await
            })
            .await
    }

    /// Deletes the judging `key`; idempotent.
    #[instrument(skip(self))]
    pub async fn forget_judging(&self, key: &str) -> Result<(), InterfaceError> {
        self.shared
            .retrying("forgetting a judging", key, || {
                sqlx::query(FORGET_JUDGING)
                    .bind(key)
                    .execute(&self.shared.pool)
            })
            .await
            .map(drop)
    }

    /// Whether `id` is a judging (`None`: no such row).
    pub async fn is_judging(&self, id: &str) -> Result<Option<bool>, InterfaceError> {
        sqlx::query_scalar(IS_JUDGING)
            .bind(id)
            .fetch_optional(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("reading judging {id}: {e}"), e))
    }

    /// Withdraws a submission while it is queued; idempotent.
    #[instrument(skip(self), fields(submission_id = %id))]
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, InterfaceError> {
        let state: Option<String> = self
            .shared
            .retrying("cancelling", id, || {
                sqlx::query_scalar(CANCEL)
                    .bind(id)
                    .fetch_optional(&self.shared.pool)
            })
            .await?;
        let Some(state) = state else {
            return Ok(Cancelled::NotFound);
        };
        let state: SubmissionState = state
            .parse()
            .map_err(|e| failure(format!("submission {id}: {e}")))?;
        Ok(match state {
            SubmissionState::Cancelled => Cancelled::Yes,
            other => Cancelled::TooLate(other),
        })
    }

    /// Gives back a claim this instance holds (for a remote worker that stopped answering): the
    /// submission is queued again and its next claim removes what this attempt recorded.
    /// `false` when this instance does not hold it (any more).
    #[instrument(skip(self), fields(submission_id = %id))]
    pub async fn release(&self, id: &str) -> Result<bool, InterfaceError> {
        let Some(held) = self.drop_claim(id) else {
            return Ok(false);
        };
        let done = self
            .shared
            .retrying("releasing", id, || {
                sqlx::query(RELEASE)
                    .bind(id)
                    .bind(held.token)
                    .execute(&self.shared.pool)
            })
            .await?;
        let released = done.rows_affected() == 1;
        if released {
            info!("claim given back: the submission is queued again");
        }
        Ok(released)
    }

    /// Replaces what the store holds for submission `id` with the messages of a complete
    /// judging (a rejudge), in one transaction: readers see the old result or the new one,
    /// never a mix. `false` if there is no such submission.
    #[instrument(skip(self, messages), fields(submission_id = %id))]
    pub async fn replace(&self, id: &str, messages: &[Message]) -> Result<bool, InterfaceError> {
        let ending = Ending::of(messages);
        let columns = ResultColumns::of(messages);
        let by = format!("rejudge@{}", self.shared.config.worker_name);
        let shared = &self.shared;
        self.shared
            .retrying("replacing the results", id, || async {
                let mut tx = shared.pool.begin().await?;
                let updated = sqlx::query(REPLACE)
                    .bind(id)
                    .bind(ending.state.as_str())
                    .bind(ending.score)
                    .bind(ending.failed_subtasks.as_deref())
                    .bind(ending.reason.as_deref())
                    .bind(ending.compile_output.as_deref())
                    .bind(&by)
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() == 0 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(DELETE_RESULTS)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(INSERT_RESULTS)
                    .bind(id)
                    .bind(&columns.seq)
                    .bind(&columns.state)
                    .bind(&columns.test_case)
                    .bind(&columns.subtask)
                    .bind(&columns.result)
                    .bind(&columns.time)
                    .bind(&columns.memory)
                    .bind(&columns.score)
                    .bind(&columns.output)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ending_is_what_the_workers_would_have_written() {
        let id = "s";
        let of = |bodies: Vec<Body>| {
            let messages: Vec<_> = bodies.into_iter().map(|b| Message::new(id, b)).collect();
            Ending::of(&messages)
        };
        let judged = of(vec![
            Body::Executing,
            Body::Done {
                score: Some(0.5),
                failed_subtasks: Some(vec![2]),
            },
        ]);
        assert_eq!(judged.state, SubmissionState::Judged);
        assert_eq!(
            (judged.score, judged.failed_subtasks),
            (Some(0.5), Some(vec![2]))
        );
        let compile_error = of(vec![
            Body::Executing,
            Body::Compiling,
            Body::Compiled {
                result: CompileResult::Error,
                compile_output: Some("oops".into()),
            },
            Body::Done {
                score: None,
                failed_subtasks: None,
            },
        ]);
        assert_eq!(compile_error.state, SubmissionState::CompileError);
        assert_eq!(compile_error.score, Some(0.0));
        assert_eq!(compile_error.compile_output.as_deref(), Some("oops"));
        let invalid = of(vec![
            Body::Executing,
            Body::Invalid {
                reason: Some("bad".into()),
            },
        ]);
        assert_eq!(
            (invalid.state, invalid.reason.as_deref()),
            (SubmissionState::InvalidData, Some("bad"))
        );
    }

    #[test]
    fn results_keep_their_index_in_the_attempt() {
        let messages = vec![
            Message::new("s", Body::Executing),
            Message::new(
                "s",
                Body::Testing {
                    test_case: 1,
                    subtask: Some(2),
                },
            ),
            Message::new(
                "s",
                Body::Tested {
                    test_case: 1,
                    subtask: Some(2),
                    result: Verdict::TimeLimitExceeded,
                    time: Some(1001),
                    memory: None,
                    score: None,
                    output: None,
                },
            ),
        ];
        let columns = ResultColumns::of(&messages);
        assert_eq!(columns.seq, [1, 2]);
        assert_eq!(columns.state, ["testing", "tested"]);
        assert_eq!(columns.result, [None, Some("TLE")]);
        assert_eq!(columns.subtask, [Some(2), Some(2)]);
        assert_eq!(columns.time, [None, Some(1001)]);
    }
}
