-- The Postgres store of SPEC §6: submissions and their judge results, shared by any number of
-- workers. Applied by every worker at start (sqlx takes an advisory lock, so concurrent starts
-- are safe).

CREATE TABLE submissions (
    id               text PRIMARY KEY,
    -- Carried along for the front end and ignored by the executioner (SPEC §1).
    "user"           text,
    problem          text NOT NULL,
    problem_name     text,
    subtasks_count   integer,
    source_code      text NOT NULL,
    language         text NOT NULL,
    submission_time  timestamptz NOT NULL DEFAULT now(),
    -- The Firestore states of SPEC §6; a front end inserts new submissions as 'queued'.
    state            text NOT NULL DEFAULT 'queued' CHECK (state IN (
                         'queued', 'judging', 'compiling', 'compiled', 'compileError',
                         'judged', 'error', 'invalidData')),
    score            double precision,
    failed_subtasks  integer[],
    -- Why it ended as 'error' or 'invalidData'; what the compiler said.
    reason           text,
    compile_output   text,
    updated_at       timestamptz NOT NULL DEFAULT now(),

    -- Recovery. A claim sets a fresh claim_token; every later write of that attempt is fenced
    -- on it, so a worker that lost its claim can no longer change anything.
    claim_token      uuid,
    claimed_by       text,
    -- Set while a worker holds the submission, renewed by its heartbeat; once it has passed,
    -- any worker may claim the submission again.
    lease_expires_at timestamptz,
    -- Claims so far (reset when a 'queued' submission is claimed).
    attempts         integer NOT NULL DEFAULT 0,
    -- 'queued': not to be claimed before then (NULL = at once). 'error': when it will be tried
    -- again (NULL = never: its retries are used up).
    not_before       timestamptz
);

-- The three ways a submission becomes claimable, each with a small partial index.
CREATE INDEX submissions_queued ON submissions (submission_time, id) WHERE state = 'queued';
CREATE INDEX submissions_leased ON submissions (lease_expires_at) WHERE lease_expires_at IS NOT NULL;
CREATE INDEX submissions_retry ON submissions (not_before)
    WHERE state = 'error' AND not_before IS NOT NULL;

CREATE TABLE judge_results (
    submission_id text NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    -- The message's index in its attempt ('executing' = 0): the order of the results, and what
    -- makes a repeated write after a lost connection a no-op.
    seq           integer NOT NULL,
    state         text NOT NULL CHECK (state IN ('testing', 'tested')),
    judge_time    timestamptz NOT NULL DEFAULT now(),
    test_case     integer NOT NULL,
    subtask       integer,
    result        text CHECK (result IN ('accepted', 'wrong', 'MLE', 'TLE', 'error')),
    -- KB and ms.
    memory        bigint,
    time          bigint,
    PRIMARY KEY (submission_id, seq)
);

-- Workers LISTEN on 'executioner_queued' to notice new (or re-queued) submissions at once; the
-- payload is empty so that one transaction inserting many submissions sends one notification.
CREATE FUNCTION executioner_notify_queued() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('executioner_queued', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER submissions_queued_notify
    AFTER INSERT OR UPDATE OF state ON submissions
    FOR EACH ROW WHEN (NEW.state = 'queued')
    EXECUTE FUNCTION executioner_notify_queued();

-- 'executioner_state' carries the id of every submission whose state changed, for whoever
-- follows progress (tests, an HTTP API).
CREATE FUNCTION executioner_notify_state() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- (Payloads are limited to 8000 bytes: a longer id is only a hint anyway.)
    PERFORM pg_notify('executioner_state', left(NEW.id, 1000));
    RETURN NULL;
END
$$;

CREATE TRIGGER submissions_state_notify
    AFTER UPDATE OF state ON submissions
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION executioner_notify_state();
