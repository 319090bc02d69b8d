-- The further source files of a multi-file submission (SPEC §1 `files`): a JSON array of
-- {"name", "content"}, NULL for a one-file submission.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS files jsonb;
