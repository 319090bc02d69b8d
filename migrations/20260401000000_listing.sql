-- The order in which the HTTP API lists operations (GET /v1.0/operations): not started,
-- running, then completed; each oldest first (ms since the epoch, as the API shows them), then
-- by id in byte order. A page of the list, filtered or not, is read off this index instead of
-- sorting the whole table. The expressions are those of src/interface/postgres/listing.rs
-- (a unit test there checks it): an index whose expressions differ is simply not used. An
-- infinite submission time (which a front end may write) is indexed as NULL.
CREATE INDEX submissions_listing ON submissions (
    (CASE CASE WHEN state = 'queued' THEN 'notstarted'
               WHEN state = 'cancelled' THEN 'cancelled'
               WHEN state = 'judged' THEN 'succeeded'
               WHEN state = 'compileError' AND (lease_expires_at IS NULL) THEN 'succeeded'
               WHEN state = 'invalidData' THEN 'failed'
               WHEN state = 'error' AND NOT (state = 'error' AND not_before IS NOT NULL)
                   THEN 'failed'
               ELSE 'running' END
          WHEN 'notstarted' THEN 0 WHEN 'running' THEN 1 ELSE 2 END),
    ((CASE WHEN isfinite(submission_time)
           THEN (EXTRACT(EPOCH FROM submission_time AT TIME ZONE 'UTC') * 1000)::int8 END)),
    id COLLATE "C"
);
