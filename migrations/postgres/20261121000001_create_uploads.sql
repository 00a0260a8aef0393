-- Uploads: one row per direct upload, the source of truth for its state (DESIGN.md state machine).
CREATE TABLE uploads (
    id               UUID PRIMARY KEY,
    owner            TEXT        NOT NULL,
    state            TEXT        NOT NULL CHECK (state IN ('pending', 'uploaded', 'processing', 'ready', 'failed', 'expired')),
    filename         TEXT        NOT NULL,
    content_type     TEXT        NOT NULL,
    byte_size        BIGINT      NOT NULL CHECK (byte_size > 0),
    method           TEXT        NOT NULL CHECK (method IN ('put', 'post')),
    temp_key         TEXT        NOT NULL UNIQUE,
    final_key        TEXT,
    sha256           TEXT,
    metadata         JSONB,
    error_code       TEXT,
    error_message    TEXT,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at     TIMESTAMPTZ,
    ready_at         TIMESTAMPTZ
);

-- Keyset pagination of an owner's uploads, newest first: ORDER BY created_at DESC, id DESC.
CREATE INDEX uploads_owner_created_idx ON uploads (owner, created_at DESC, id DESC);
-- The sweeper and the per-state gauges scan by state.
CREATE INDEX uploads_state_idx ON uploads (state, updated_at);

-- Derivatives: one row per rendition of a ready upload.
CREATE TABLE derivatives (
    upload_id        UUID        NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    rendition        TEXT        NOT NULL,
    object_key       TEXT        NOT NULL,
    format           TEXT        NOT NULL,
    width            INTEGER     NOT NULL,
    height           INTEGER     NOT NULL,
    byte_size        BIGINT      NOT NULL,
    recipe_version   INTEGER     NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, rendition)
);
