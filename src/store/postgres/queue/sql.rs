//! The statements of the Postgres interface. Every write of an attempt is fenced on the
//! attempt's `claim_token`, and every write can be repeated after a lost connection without
//! changing its outcome.
//!
//! Parameters shared by several statements keep their numbers: `$1` is always `retries` where a
//! statement decides whether a submission is claimable.

/// The three ways a submission becomes claimable (`$1` = retries), each served by a partial
/// index: it is queued and due; the worker that held it stopped renewing its lease; it ended in
/// `error` and its retry is due.
macro_rules! queued_due {
    () => {
        "state = 'queued' AND (not_before IS NULL OR not_before <= now())"
    };
}
macro_rules! lease_expired {
    () => {
        "lease_expires_at <= now() AND attempts <= $1"
    };
}
macro_rules! retry_due {
    () => {
        "state = 'error' AND lease_expires_at IS NULL AND not_before <= now() AND attempts <= $1"
    };
}

/// Oldest claimable submission not among `$2` (ids this instance already offered), only a
/// workflow's judging if `$3`. One ordered index scan per way, so a long queue costs no more
/// than a short one.
pub const CANDIDATE: &str = concat!(
    "SELECT id, problem, language, source_code, files, run FROM (
        (SELECT id, problem, language, source_code, files::text AS files, run::text AS run, submission_time FROM submissions
         WHERE ",
    queued_due!(),
    " AND NOT (id = ANY($2)) AND (judging_of IS NOT NULL OR NOT $3)
         ORDER BY submission_time, id LIMIT 1)
        UNION ALL
        (SELECT id, problem, language, source_code, files::text AS files, run::text AS run, submission_time FROM submissions
         WHERE ",
    lease_expired!(),
    " AND NOT (id = ANY($2)) AND (judging_of IS NOT NULL OR NOT $3)
         ORDER BY submission_time, id LIMIT 1)
        UNION ALL
        (SELECT id, problem, language, source_code, files::text AS files, run::text AS run, submission_time FROM submissions
         WHERE ",
    retry_due!(),
    " AND NOT (id = ANY($2)) AND (judging_of IS NOT NULL OR NOT $3)
         ORDER BY submission_time, id LIMIT 1)
     ) AS candidates ORDER BY submission_time, id LIMIT 1"
);

/// Seconds until something that is not claimable yet becomes so (`$1` = retries), or NULL.
pub const NEXT_DUE: &str = "
    SELECT EXTRACT(EPOCH FROM min(due) - now())::float8 FROM (
        SELECT min(not_before) AS due FROM submissions
            WHERE state = 'queued' AND not_before > now()
        UNION ALL
        SELECT min(lease_expires_at) FROM submissions
            WHERE lease_expires_at > now() AND attempts <= $1
        UNION ALL
        SELECT min(not_before) FROM submissions
            WHERE state = 'error' AND lease_expires_at IS NULL AND not_before > now()
                AND attempts <= $1
    ) AS dues";

/// The claim, one statement: takes submission `$2` with token `$3` for worker `$4` and a lease
/// of `$5` ms if it is claimable (or already holds `$3`: the same claim sent again after a lost
/// answer), and removes the judge results of any earlier attempt. Returns the attempt number,
/// no row if not taken.
pub const CLAIM: &str = concat!(
    "WITH claimed AS (
        UPDATE submissions SET
            state = 'judging',
            attempts = CASE WHEN claim_token = $3 THEN attempts
                            WHEN state = 'queued' THEN 1
                            ELSE attempts + 1 END,
            claim_token = $3,
            claimed_by = $4,
            lease_expires_at = now() + $5::float8 * interval '1 millisecond',
            not_before = NULL,
            score = NULL,
            failed_subtasks = NULL,
            reason = NULL,
            compile_output = NULL,
            updated_at = now()
        WHERE id = $2 AND (claim_token = $3 OR (",
    queued_due!(),
    ") OR (",
    lease_expired!(),
    ") OR (",
    retry_due!(),
    "))
        RETURNING id, attempts
     ), purged AS (
        DELETE FROM judge_results r USING claimed c WHERE r.submission_id = c.id
     )
     SELECT attempts FROM claimed"
);

/// A step within the attempt (`compiling`, `compiled`): state `$3`, compile output `$4` and
/// score `$5` when given; renews the lease to `$6` ms.
pub const STEP: &str = "
    UPDATE submissions SET
        state = $3,
        compile_output = COALESCE($4, compile_output),
        score = COALESCE($5, score),
        lease_expires_at = now() + $6::float8 * interval '1 millisecond',
        updated_at = now()
    WHERE id = $1 AND claim_token = $2";

/// The end of the attempt (`done`, `error`, `invalid`): state `$3` (but `done` after a compile
/// error keeps `compileError`), score `$4` when given, failed subtasks `$5`, reason `$6`, the
/// next try in `$7` ms (NULL: none). Releases the lease.
pub const FINISH: &str = "
    UPDATE submissions SET
        state = CASE WHEN $3::text = 'judged' AND state = 'compileError' THEN state
                     ELSE $3::text END,
        score = COALESCE($4, score),
        failed_subtasks = $5,
        reason = $6,
        not_before = now() + $7::float8 * interval '1 millisecond',
        lease_expires_at = NULL,
        updated_at = now()
    WHERE id = $1 AND claim_token = $2";

/// A `testing` or `tested` message as row `$3` of submission `$1`, if the attempt `$2` still
/// holds it. The row lock makes a concurrent re-claim wait (and then remove the row) or makes
/// this insert see that the claim is gone. Returns 1 if the attempt holds the submission.
pub const RESULT: &str = "
    WITH holder AS (
        SELECT id FROM submissions WHERE id = $1 AND claim_token = $2 FOR SHARE
    ), inserted AS (
        INSERT INTO judge_results
            (submission_id, seq, state, test_case, subtask, result, time, memory, score, output)
        SELECT id, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb FROM holder
        ON CONFLICT (submission_id, seq) DO NOTHING
    )
    SELECT count(*) FROM holder";

/// The heartbeat: renews the leases of the (id, token) pairs `$1`, `$2` to `$3` ms. Returns
/// the ids still held.
pub const RENEW: &str = "
    UPDATE submissions s SET lease_expires_at = now() + $3::float8 * interval '1 millisecond'
    FROM unnest($1::text[], $2::uuid[]) AS held (id, token)
    WHERE s.id = held.id AND s.claim_token = held.token AND s.lease_expires_at IS NOT NULL
    RETURNING s.id";

/// Ends with `error` the submissions whose workers vanished more often than `$1` retries allow.
pub const ABANDON: &str = "
    UPDATE submissions SET
        state = 'error',
        reason = 'abandoned: the worker judging it stopped answering ' || attempts || ' times',
        lease_expires_at = NULL,
        not_before = NULL,
        updated_at = now()
    WHERE lease_expires_at <= now() AND attempts > $1
    RETURNING id";

/// Queues submissions: ids `$1`, problems `$2`, languages `$3`, sources `$4`, further files
/// `$5` (JSON or NULL), callback URLs `$6` (or NULL), runs `$7` (JSON or NULL), deadlines `$8`
/// (ms since the epoch, or NULL).
pub const ENQUEUE: &str = "
    INSERT INTO submissions
        (id, problem, language, source_code, files, callback_url, run, deadline_at)
    SELECT i, p, l, s, f::jsonb, c, r::jsonb, to_timestamp(d / 1000.0)
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::int8[])
        AS u(i, p, l, s, f, c, r, d)
    ON CONFLICT (id) DO NOTHING";

pub const STATUS: &str = "
    SELECT state, score, failed_subtasks, reason, attempts FROM submissions WHERE id = $1";

pub const RESULTS: &str = "
    SELECT state, test_case, subtask, result, time, memory, score, output::text AS output
    FROM judge_results WHERE submission_id = $1 ORDER BY seq";
