-- Per-submission callbacks (POST /v1.0/submissions with "callbackUrl"): where `serve` sends the
-- finished submission, and the outcome it last sent (or gave up on), as the `updated_at` that
-- outcome had. A callback is due while the submission's operation has ended and
-- `callback_sent_at` differs from `updated_at`: a restarted service sends what is still due, and
-- a later outcome (a rejudge's) is sent again.
ALTER TABLE submissions ADD COLUMN callback_url text;
ALTER TABLE submissions ADD COLUMN callback_sent_at timestamptz;

-- What a service reads at start and now and then: the submissions whose callback may be due.
CREATE INDEX submissions_callback_due ON submissions (updated_at)
    WHERE callback_url IS NOT NULL AND callback_sent_at IS DISTINCT FROM updated_at;

-- An attempt can end without the state changing: `done` after `compileError` only releases the
-- lease, and a rejudge may end as the judging before it did. 'executioner_state' (whose
-- trigger fires on state changes) is sent for those too, so followers (callbacks, event
-- streams) see every end.
CREATE TRIGGER submissions_end_notify
    AFTER UPDATE ON submissions
    FOR EACH ROW WHEN (OLD.state IS NOT DISTINCT FROM NEW.state
        AND NEW.lease_expires_at IS NULL
        AND OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION executioner_notify_state();
