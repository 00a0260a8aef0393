-- Tenancy (docs/ARCHITECTURE.md "Tenancy"): API keys, per-owner quotas and usage, and the
-- per-owner admission window of the fair scheduler.

-- API keys: `kiln_{prefix}_{secret}`. Only the SHA-256 of the secret is stored; the prefix is
-- public and names the key in lists and logs.
CREATE TABLE api_keys (
    prefix        TEXT        PRIMARY KEY,
    secret_hash   TEXT        NOT NULL,
    owner         TEXT        NOT NULL,
    scopes        TEXT        NOT NULL,
    name          TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ
);
CREATE INDEX api_keys_owner_idx ON api_keys (owner, created_at);

-- Per-owner quota overrides; a NULL limit falls back to the configured default ([quotas]).
CREATE TABLE owners (
    owner         TEXT        PRIMARY KEY,
    max_bytes     BIGINT,
    max_uploads   BIGINT,
    max_pending   BIGINT,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- What each owner holds now, kept by the trigger below in the same statement as the row change,
-- so it can never drift from `uploads`. `bytes` and `uploads` count live uploads (pending,
-- uploaded, processing, ready: the declared size is reserved at authorize); `pending` counts
-- authorized uploads not yet completed; `waiting` counts uploads admitted to the job queue and
-- not yet claimed by a worker (the fair scheduler's window; retries in backoff are not counted).
CREATE TABLE owner_usage (
    owner         TEXT   PRIMARY KEY,
    bytes         BIGINT NOT NULL DEFAULT 0,
    uploads       BIGINT NOT NULL DEFAULT 0,
    pending       BIGINT NOT NULL DEFAULT 0,
    waiting       BIGINT NOT NULL DEFAULT 0
);

-- An `uploaded` upload waiting in Postgres for its owner's admission window (no task queued yet).
ALTER TABLE uploads ADD COLUMN held BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE uploads ADD CONSTRAINT uploads_held_is_uploaded CHECK (NOT held OR state = 'uploaded');
CREATE INDEX uploads_held_idx ON uploads (owner, updated_at, id) WHERE held;

CREATE FUNCTION kiln_owner_usage() RETURNS trigger AS $$
DECLARE
    d_bytes BIGINT := 0; d_uploads BIGINT := 0; d_pending BIGINT := 0; d_waiting BIGINT := 0;
    o TEXT;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        o := NEW.owner;
        IF NEW.state IN ('pending', 'uploaded', 'processing', 'ready') THEN
            d_bytes := d_bytes + NEW.byte_size; d_uploads := d_uploads + 1;
        END IF;
        IF NEW.state = 'pending' THEN d_pending := d_pending + 1; END IF;
        IF NEW.state = 'uploaded' AND NOT NEW.held AND NEW.attempts = 0 THEN
            d_waiting := d_waiting + 1;
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        o := OLD.owner;
        IF OLD.state IN ('pending', 'uploaded', 'processing', 'ready') THEN
            d_bytes := d_bytes - OLD.byte_size; d_uploads := d_uploads - 1;
        END IF;
        IF OLD.state = 'pending' THEN d_pending := d_pending - 1; END IF;
        IF OLD.state = 'uploaded' AND NOT OLD.held AND OLD.attempts = 0 THEN
            d_waiting := d_waiting - 1;
        END IF;
    END IF;
    IF d_bytes <> 0 OR d_uploads <> 0 OR d_pending <> 0 OR d_waiting <> 0 THEN
        INSERT INTO owner_usage AS u (owner, bytes, uploads, pending, waiting)
        VALUES (o, d_bytes, d_uploads, d_pending, d_waiting)
        ON CONFLICT (owner) DO UPDATE SET bytes = u.bytes + d_bytes,
            uploads = u.uploads + d_uploads, pending = u.pending + d_pending,
            waiting = u.waiting + d_waiting;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

-- Owners never change, so one row's old and new contributions belong to the same owner.
CREATE TRIGGER uploads_owner_usage AFTER INSERT OR DELETE OR UPDATE OF state, held, attempts, byte_size
    ON uploads FOR EACH ROW EXECUTE FUNCTION kiln_owner_usage();

-- Usage of the uploads that exist already.
INSERT INTO owner_usage (owner, bytes, uploads, pending, waiting)
SELECT owner,
       COALESCE(SUM(CASE WHEN state IN ('pending', 'uploaded', 'processing', 'ready') THEN byte_size ELSE 0 END), 0),
       COUNT(*) FILTER (WHERE state IN ('pending', 'uploaded', 'processing', 'ready')),
       COUNT(*) FILTER (WHERE state = 'pending'),
       COUNT(*) FILTER (WHERE state = 'uploaded' AND attempts = 0)
FROM uploads GROUP BY owner;
