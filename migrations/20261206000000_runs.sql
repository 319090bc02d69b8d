-- Ad-hoc runs (`POST /v1.0/runs`): the run's input, expected output and limits as JSON
-- (SPEC §1 grows `run`), NULL for a submission; and what a run's program wrote and how it
-- ended, on its `tested` row, NULL for a problem's test.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS run jsonb;
ALTER TABLE judge_results ADD COLUMN IF NOT EXISTS output jsonb;
