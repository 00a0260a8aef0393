-- Task ids are derived, never written back (docs/ARCHITECTURE.md "Upload lifecycle"): the
-- ProcessUpload task of an upload is a function of its id and `job_generation`, which every
-- transition that queues work (complete, retry, replay, requeue) increments in the same UPDATE.
-- Rows from before this migration keep generation 0, whose task id matches no queued task, so
-- the sweeper treats their job as lost and queues generation 1 once; the claim's fencing makes
-- a duplicate delivery harmless.
ALTER TABLE uploads ADD COLUMN job_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE uploads DROP COLUMN job_id;

-- `error_message` is what clients see (a fixed message per code plus safe facts); the internal
-- detail (S3 operation, key, transport error) moves to `error_detail`, shown to operators only.
ALTER TABLE uploads ADD COLUMN error_detail TEXT;
UPDATE uploads SET error_detail = error_message, error_message = NULL WHERE error_message IS NOT NULL;
