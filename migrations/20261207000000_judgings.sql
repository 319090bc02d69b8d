-- Judgings a workflow (a rejudge, a validation) hands to the workers (`store::Judgings`): a row
-- like a submission's, queued in the same order and taken by the same workers under the same
-- leases, whose id is a key of the workflow's and whose `judging_of` names the submission it
-- judges again (or the workflow's name for it). Listed nowhere: not among the operations, not
-- selected by a rejudge, never called back. The workflow reads its messages and deletes it.
ALTER TABLE submissions ADD COLUMN IF NOT EXISTS judging_of text;

-- What a workflow deletes before it queues a judging again (a stopped workflow's leftover).
CREATE INDEX IF NOT EXISTS submissions_judging_of ON submissions (judging_of)
    WHERE judging_of IS NOT NULL;
