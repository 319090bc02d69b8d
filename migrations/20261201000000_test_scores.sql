-- A test's fraction of its points, when the problem's checker gave one (partial `tested`).
ALTER TABLE judge_results ADD COLUMN IF NOT EXISTS score double precision;
