-- Operation deadlines (`deadlineSeconds` on POST /v1.0/submissions and /v1.0/runs, or `serve
-- --deadline-seconds`): a submission unfinished at `deadline_at` is ended, its state set to
-- 'cancelled' (never handed out again; its worker fenced out) and `timed_out` set, which the
-- API shows as the operation status `timeout`.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS deadline_at timestamptz;
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS timed_out boolean NOT NULL DEFAULT false;

-- What the service's sweep reads every second: the deadlines still pending.
CREATE INDEX IF NOT EXISTS submissions_deadline ON submissions (deadline_at)
    WHERE deadline_at IS NOT NULL AND NOT timed_out;
