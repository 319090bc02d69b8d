//! Submissions read in the order the HTTP API lists operations (not started, running, then
//! completed; each oldest first, then by id), a batch at a time, filtered by a [`Condition`]
//! the database evaluates: `GET /v1.0/operations` reads one page's worth of rows, not the
//! table. Migration `20260401000000_listing.sql` indexes the order.

use sqlx::{Postgres, QueryBuilder, Row};

use super::records::{record_of, SubmissionRecord};
use super::{failed, failure, PostgresInterface};
use crate::interface::InterfaceError;

/// The operation status of submission `s` as the HTTP API names it: the SQL twin of
/// `store::Status::of`, over the same `attempt_over` and `retry_pending` as the records.
macro_rules! listing_status {
    () => {
        concat!(
            "CASE WHEN s.state = 'queued' THEN 'notstarted'",
            " WHEN s.state = 'cancelled' THEN 'cancelled'",
            " WHEN s.state = 'judged' THEN 'succeeded'",
            " WHEN s.state = 'compileError' AND ",
            attempt_over!(),
            " THEN 'succeeded'",
            " WHEN s.state = 'invalidData' THEN 'failed'",
            " WHEN s.state = 'error' AND NOT ",
            retry_pending!(),
            " THEN 'failed'",
            " ELSE 'running' END"
        )
    };
}

/// The operation status as the API shows it: [`listing_status`], or `timeout` for a submission
/// ended at its deadline (whose state is `cancelled`: the same place in the listing), or
/// `unresponsive` for a running one whose lease has expired and that no worker has taken again
/// (still running in the listing's order).
macro_rules! operation_status {
    () => {
        concat!(
            "CASE WHEN s.timed_out THEN 'timeout' WHEN s.lease_expires_at <= now() AND (",
            listing_status!(),
            ") = 'running' THEN 'unresponsive' ELSE (",
            listing_status!(),
            ") END"
        )
    };
}

/// Ends every unfinished submission whose deadline has passed (the state `cancelled`,
/// `timed_out` set, the claim dropped so its worker's writes are fenced out); their ids.
pub const EXPIRE: &str = concat!(
    "UPDATE submissions s SET state = 'cancelled', timed_out = true, claim_token = NULL,
        claimed_by = NULL, lease_expires_at = NULL, not_before = NULL, updated_at = now()
    WHERE s.deadline_at <= now() AND NOT s.timed_out AND (",
    listing_status!(),
    ") IN ('notstarted', 'running')
    RETURNING s.id"
);

/// Where a status comes in the listing: not started 0, running 1, completed 2.
macro_rules! status_rank {
    () => {
        concat!(
            "(CASE ",
            listing_status!(),
            " WHEN 'notstarted' THEN 0 WHEN 'running' THEN 1 ELSE 2 END)"
        )
    };
}

/// The listing order; the migration's index has exactly these expressions (ids in byte order,
/// as the API sorts them).
macro_rules! listing_order {
    () => {
        concat!(
            status_rank!(),
            ", ",
            submitted_ms!(),
            ", s.id COLLATE \"C\""
        )
    };
}

/// The columns a listing's subquery chooses, for [`record_columns`] over them.
macro_rules! listed_columns {
    () => {
        "s.id, s.problem, s.language, s.state, s.score, s.failed_subtasks, s.reason,
         s.compile_output, s.submission_time, s.updated_at, s.lease_expires_at, s.not_before,
         s.callback_url, s.callback_sent_at, s.timed_out"
    };
}

/// A listing's statement up to its condition: the rows are chosen in a subquery, so that the
/// results of only the rows chosen are counted.
macro_rules! listing_head {
    () => {
        concat!(
            "SELECT ",
            record_columns!(),
            ", ",
            status_rank!(),
            " AS status_rank FROM (SELECT ",
            listed_columns!(),
            " FROM submissions s WHERE s.judging_of IS NULL AND ("
        )
    };
}

/// Up to the condition: the rows are chosen in a subquery, so that the results of only the
/// rows of the batch are counted.
const BATCH_HEAD: &str = listing_head!();
/// After the condition: rows past the last one handed out.
const BATCH_AFTER: &str = concat!(") AND (", listing_order!(), ") > (");
/// After the condition: rows past every id of a status rank and submission time (a prefix of
/// the index order, so the index serves it as well).
const BATCH_AFTER_TIME: &str = concat!(") AND (", status_rank!(), ", ", submitted_ms!(), ") > (");
/// After the condition, with no key to start after.
const BATCH_ALL: &str = ")";
const BATCH_ORDER: &str = concat!(" ORDER BY ", listing_order!(), " LIMIT ");
const BATCH_TAIL: &str = concat!(") s ORDER BY ", listing_order!());

/// The listing order backwards (the index read from its end).
macro_rules! listing_order_desc {
    () => {
        concat!(
            status_rank!(),
            " DESC, ",
            submitted_ms!(),
            " DESC, s.id COLLATE \"C\" DESC"
        )
    };
}

/// The last rows of the listing's completed group (status rank 2), last first; `$1` of them.
const LAST_FINISHED: &str = concat!(
    listing_head!(),
    status_rank!(),
    " = 2) ORDER BY ",
    listing_order_desc!(),
    " LIMIT $1) s ORDER BY ",
    listing_order_desc!()
);

/// A column of a submission that a [`Condition`] compares. None is ever NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    /// The operation kind as the HTTP API names it: `run` for an ad-hoc run (no problem),
    /// else `submission`.
    Kind,
    Problem,
    Language,
    /// The operation status as the HTTP API names it (`notstarted`, `running`, `succeeded`,
    /// `failed`, `cancelled`).
    Status,
    /// When it was made, ms since the epoch (as [`SubmissionRecord::submitted_ms`]).
    SubmittedMs,
    /// When it last changed, ms since the epoch (as [`SubmissionRecord::updated_ms`]).
    UpdatedMs,
}

impl Column {
    fn sql(self) -> &'static str {
        match self {
            Column::Id => "s.id",
            Column::Kind => "(CASE WHEN s.problem = '' THEN 'run' ELSE 'submission' END)",
            Column::Problem => "s.problem",
            Column::Language => "s.language",
            Column::Status => concat!("(", operation_status!(), ")"),
            Column::SubmittedMs => submitted_ms!(),
            Column::UpdatedMs => updated_ms!(),
        }
    }
}

/// What a [`Condition`] compares: a column, or a value (bound as a parameter, never spliced
/// into the statement).
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Column(Column),
    /// Compared with a text column. Contains no NUL (no stored text can).
    Text(String),
    /// Compared with an ms column.
    Ms(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparison {
    fn sql(self) -> &'static str {
        match self {
            Comparison::Eq => "=",
            Comparison::Ne => "<>",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        }
    }
}

/// Which submissions to read. Texts are ordered by their UTF-8 bytes and equal when their
/// bytes are; the operands of a comparison are of one type (texts, or ms).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    True,
    False,
    Not(Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
    Compare(Operand, Comparison, Operand),
}

/// `NOT c`, constants folded.
impl std::ops::Not for Condition {
    type Output = Condition;

    fn not(self) -> Condition {
        match self {
            Condition::True => Condition::False,
            Condition::False => Condition::True,
            c => Condition::Not(Box::new(c)),
        }
    }
}

impl Condition {
    pub fn constant(value: bool) -> Condition {
        if value {
            Condition::True
        } else {
            Condition::False
        }
    }

    /// `a AND b`, constants folded.
    pub fn and(a: Condition, b: Condition) -> Condition {
        match (a, b) {
            (Condition::False, _) | (_, Condition::False) => Condition::False,
            (Condition::True, c) | (c, Condition::True) => c,
            (a, b) => Condition::And(Box::new(a), Box::new(b)),
        }
    }

    /// `a OR b`, constants folded.
    pub fn or(a: Condition, b: Condition) -> Condition {
        match (a, b) {
            (Condition::True, _) | (_, Condition::True) => Condition::True,
            (Condition::False, c) | (c, Condition::False) => c,
            (a, b) => Condition::Or(Box::new(a), Box::new(b)),
        }
    }

    fn push(&self, query: &mut QueryBuilder<'_, Postgres>) {
        match self {
            Condition::True => {
                query.push("TRUE");
            }
            Condition::False => {
                query.push("FALSE");
            }
            Condition::Not(c) => {
                query.push("(NOT ");
                c.push(query);
                query.push(")");
            }
            Condition::And(a, b) | Condition::Or(a, b) => {
                let join = if matches!(self, Condition::And(..)) {
                    " AND "
                } else {
                    " OR "
                };
                query.push("(");
                a.push(query);
                query.push(join);
                b.push(query);
                query.push(")");
            }
            Condition::Compare(left, op, right) => {
                // Equality needs no collation (the database's is deterministic: equal means
                // the same bytes), and without one an index on the column still serves it.
                let bytewise = !matches!(op, Comparison::Eq | Comparison::Ne);
                query.push("(");
                push_operand(query, left, bytewise);
                query.push(" ").push(op.sql()).push(" ");
                push_operand(query, right, bytewise);
                query.push(")");
            }
        }
    }
}

fn push_operand(query: &mut QueryBuilder<'_, Postgres>, operand: &Operand, bytewise: bool) {
    let text = match operand {
        Operand::Column(column) => {
            query.push(column.sql());
            !matches!(column, Column::SubmittedMs | Column::UpdatedMs)
        }
        Operand::Text(text) => {
            query.push_bind(text.clone());
            true
        }
        Operand::Ms(ms) => {
            query.push_bind(*ms);
            false
        }
    };
    if text && bytewise {
        query.push(" COLLATE \"C\"");
    }
}

/// Where a scan stands: rows strictly after this in the listing order are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingKey {
    /// Not started 0, running 1, completed 2.
    pub rank: i32,
    pub submitted_ms: i64,
    /// `None`: after every id of this rank and time.
    pub id: Option<String>,
}

/// One batch: the rows `condition` selects after `after`, in the listing order.
fn batch_query<'a>(
    condition: &Condition,
    after: Option<&ListingKey>,
    limit: usize,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(BATCH_HEAD);
    condition.push(&mut query);
    if let Some(key) = after {
        query.push(if key.id.is_some() {
            BATCH_AFTER
        } else {
            BATCH_AFTER_TIME
        });
        query.push_bind(key.rank).push(", ");
        query.push_bind(key.submitted_ms);
        if let Some(id) = &key.id {
            query.push(", ").push_bind(id.clone());
        }
        query.push(")");
    } else {
        query.push(BATCH_ALL);
    }
    query.push(BATCH_ORDER);
    query.push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    query.push(BATCH_TAIL);
    query
}

impl PostgresInterface {
    /// Hands the submissions `condition` selects and listed after `after` (all without it) to
    /// `take`, in the order the HTTP API lists operations, until `take` answers `false` or none
    /// are left. Reads `batch` rows per statement, all in one snapshot: a submission that
    /// changes meanwhile is neither skipped nor handed out twice.
    pub async fn scan_listing(
        &self,
        condition: &Condition,
        after: Option<ListingKey>,
        batch: usize,
        mut take: impl FnMut(SubmissionRecord) -> bool + Send,
    ) -> Result<(), InterfaceError> {
        let read = |e: String| failure(format!("listing the submissions: {e}"));
        // A failure of the database itself keeps its error (transient or not).
        let sql = |e: sqlx::Error| failed(format!("listing the submissions: {e}"), e);
        let batch = batch.max(1);
        let mut tx = self
            .shared
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await
            .map_err(sql)?;
        let mut after = after;
        loop {
            let rows = batch_query(condition, after.as_ref(), batch)
                .build()
                .fetch_all(&mut *tx)
                .await
                .map_err(sql)?;
            let full = rows.len() == batch;
            for row in &rows {
                let record = record_of(row).map_err(read)?;
                let rank: i32 = row
                    .try_get("status_rank")
                    .map_err(|e| read(e.to_string()))?;
                after = Some(ListingKey {
                    rank,
                    submitted_ms: record.submitted_ms,
                    id: Some(record.id.clone()),
                });
                if !take(record) {
                    return tx.commit().await.map_err(sql);
                }
            }
            if !full {
                return tx.commit().await.map_err(sql);
            }
        }
    }
}

impl PostgresInterface {
    /// The last `limit` submissions of the listing's completed group (finished, the last
    /// submitted), last first: read from the end of the listing index.
    pub async fn last_finished(
        &self,
        limit: usize,
    ) -> Result<Vec<SubmissionRecord>, InterfaceError> {
        let read = |e: String| failure(format!("reading the last finished submissions: {e}"));
        let rows = sqlx::query(LAST_FINISHED)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|e| failed(format!("reading the last finished submissions: {e}"), e))?;
        rows.iter()
            .map(|row| record_of(row).map_err(read))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalized(sql: &str) -> String {
        sql.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .replace("s.", "")
    }

    #[test]
    fn the_index_has_the_listing_order() {
        let migration = normalized(include_str!(
            "../../../../migrations/20260401000000_listing.sql"
        ));
        for key in [status_rank!(), submitted_ms!(), "s.id COLLATE \"C\""] {
            assert!(
                migration.contains(&normalized(key)),
                "the index lacks {key}"
            );
        }
    }

    #[test]
    fn values_are_bound_and_orderings_are_bytewise() {
        let condition = Condition::and(
            Condition::Compare(
                Operand::Column(Column::Problem),
                Comparison::Eq,
                Operand::Text("a'; DROP TABLE submissions; --".into()),
            ),
            !Condition::or(
                Condition::Compare(
                    Operand::Column(Column::Id),
                    Comparison::Lt,
                    Operand::Text("b".into()),
                ),
                Condition::Compare(
                    Operand::Column(Column::SubmittedMs),
                    Comparison::Ge,
                    Operand::Ms(5),
                ),
            ),
        );
        let key = ListingKey {
            rank: 1,
            submitted_ms: 2,
            id: Some("x".into()),
        };
        let query = batch_query(&condition, Some(&key), 10);
        let sql = query.sql();
        let head = "FROM submissions s WHERE s.judging_of IS NULL AND (";
        let at = sql.find(head).unwrap() + head.len();
        let expected = concat!(
            "((s.problem = $1) AND (NOT ((s.id COLLATE \"C\" < $2 COLLATE \"C\") OR (",
            submitted_ms!(),
            " >= $3))))"
        );
        assert_eq!(&sql[at..at + expected.len()], expected);
        assert!(!sql.contains("DROP"));
        assert!(sql.contains(") > ($4, $5, $6) ORDER BY "));
        assert!(sql.contains(" LIMIT $7) s ORDER BY "));

        let past_every_id = ListingKey { id: None, ..key };
        let query = batch_query(&Condition::True, Some(&past_every_id), 10);
        let expected = concat!(
            "TRUE) AND (",
            status_rank!(),
            ", ",
            submitted_ms!(),
            ") > ($1, $2) ORDER BY "
        );
        assert!(query.sql().contains(expected), "{}", query.sql());
        assert!(query.sql().contains(" LIMIT $3) s ORDER BY "));
    }

    #[test]
    fn constants_fold() {
        let atom = || {
            Condition::Compare(
                Operand::Column(Column::Status),
                Comparison::Eq,
                Operand::Text("running".into()),
            )
        };
        assert_eq!(Condition::and(Condition::True, atom()), atom());
        assert_eq!(Condition::and(atom(), Condition::False), Condition::False);
        assert_eq!(Condition::or(Condition::False, atom()), atom());
        assert_eq!(Condition::or(atom(), Condition::True), Condition::True);
        assert_eq!(!Condition::constant(true), Condition::False);
        assert_eq!(!atom(), Condition::Not(Box::new(atom())));
    }
}
