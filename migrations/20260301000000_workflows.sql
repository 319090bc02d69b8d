-- What the HTTP API and the workflow engine keep in the Postgres store, beside the judging of
-- 20260101000000_submissions.sql: cancelled submissions, progress notifications, and the state
-- of workflows so a restarted service continues them.

-- The HTTP API withdraws a submission that no worker has taken yet: 'cancelled' is final and
-- never claimable (claims only take 'queued' ones, or ones whose worker vanished).
ALTER TABLE submissions DROP CONSTRAINT submissions_state_check;
ALTER TABLE submissions ADD CONSTRAINT submissions_state_check CHECK (state IN (
    'queued', 'judging', 'compiling', 'compiled', 'compileError',
    'judged', 'error', 'invalidData', 'cancelled'));

-- 'executioner_result' carries the id of the submission a judge result was recorded for, so
-- that a follower (the HTTP API's event streams) sees each test as it finishes, not only state
-- changes ('executioner_state').
CREATE FUNCTION executioner_notify_result() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('executioner_result', left(NEW.submission_id, 1000));
    RETURN NULL;
END
$$;

CREATE TRIGGER judge_results_notify
    AFTER INSERT ON judge_results
    FOR EACH ROW EXECUTE FUNCTION executioner_notify_result();

-- One row per workflow (rejudge, problem validation): what it is and where its steps stand.
CREATE TABLE workflows (
    name        text PRIMARY KEY,
    -- What rebuilds the workflow's steps after a restart: its kind and inputs.
    definition  jsonb NOT NULL,
    -- The engine's snapshot (every step's state, attempts, result, error), replaced on every
    -- change; NULL until the engine first saved it.
    snapshot    jsonb,
    -- Every step has finished: nothing left to continue after a restart.
    finished    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX workflows_unfinished ON workflows (created_at) WHERE NOT finished;
