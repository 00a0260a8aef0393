-- The apalis task id of the upload's latest ProcessUpload job (replay and the sweeper check
-- whether it is still live), and how often an operator replayed it.
ALTER TABLE uploads ADD COLUMN job_id TEXT;
ALTER TABLE uploads ADD COLUMN replays INTEGER NOT NULL DEFAULT 0;
CREATE INDEX uploads_failed_idx ON uploads (updated_at DESC) WHERE state = 'failed';
