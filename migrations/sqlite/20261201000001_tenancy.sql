-- Tenancy: the same tables, column and usage bookkeeping as ../postgres/20261201000001_tenancy.sql
-- (read its comments), in SQLite's types and trigger syntax.

CREATE TABLE api_keys (
    prefix        TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL,
    owner         TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    name          TEXT,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    revoked_at    TEXT,
    last_used_at  TEXT
);
CREATE INDEX api_keys_owner_idx ON api_keys (owner, created_at);

CREATE TABLE owners (
    owner         TEXT PRIMARY KEY,
    max_bytes     INTEGER,
    max_uploads   INTEGER,
    max_pending   INTEGER,
    updated_at    TEXT NOT NULL
);

CREATE TABLE owner_usage (
    owner         TEXT    PRIMARY KEY,
    bytes         INTEGER NOT NULL DEFAULT 0,
    uploads       INTEGER NOT NULL DEFAULT 0,
    pending       INTEGER NOT NULL DEFAULT 0,
    waiting       INTEGER NOT NULL DEFAULT 0
);

ALTER TABLE uploads ADD COLUMN held BOOLEAN NOT NULL DEFAULT 0 CHECK (NOT held OR state = 'uploaded');
CREATE INDEX uploads_held_idx ON uploads (owner, updated_at, id) WHERE held;

CREATE TRIGGER uploads_owner_usage_insert AFTER INSERT ON uploads BEGIN
    INSERT OR IGNORE INTO owner_usage (owner) VALUES (NEW.owner);
    UPDATE owner_usage SET
        bytes = bytes + (CASE WHEN NEW.state IN ('pending', 'uploaded', 'processing', 'ready') THEN NEW.byte_size ELSE 0 END),
        uploads = uploads + (NEW.state IN ('pending', 'uploaded', 'processing', 'ready')),
        pending = pending + (NEW.state = 'pending'),
        waiting = waiting + (NEW.state = 'uploaded' AND NOT NEW.held AND NEW.attempts = 0)
    WHERE owner = NEW.owner;
END;

CREATE TRIGGER uploads_owner_usage_update AFTER UPDATE OF state, held, attempts, byte_size ON uploads BEGIN
    INSERT OR IGNORE INTO owner_usage (owner) VALUES (NEW.owner);
    UPDATE owner_usage SET
        bytes = bytes + (CASE WHEN NEW.state IN ('pending', 'uploaded', 'processing', 'ready') THEN NEW.byte_size ELSE 0 END)
                      - (CASE WHEN OLD.state IN ('pending', 'uploaded', 'processing', 'ready') THEN OLD.byte_size ELSE 0 END),
        uploads = uploads + (NEW.state IN ('pending', 'uploaded', 'processing', 'ready'))
                          - (OLD.state IN ('pending', 'uploaded', 'processing', 'ready')),
        pending = pending + (NEW.state = 'pending') - (OLD.state = 'pending'),
        waiting = waiting + (NEW.state = 'uploaded' AND NOT NEW.held AND NEW.attempts = 0)
                          - (OLD.state = 'uploaded' AND NOT OLD.held AND OLD.attempts = 0)
    WHERE owner = NEW.owner;
END;

CREATE TRIGGER uploads_owner_usage_delete AFTER DELETE ON uploads BEGIN
    UPDATE owner_usage SET
        bytes = bytes - (CASE WHEN OLD.state IN ('pending', 'uploaded', 'processing', 'ready') THEN OLD.byte_size ELSE 0 END),
        uploads = uploads - (OLD.state IN ('pending', 'uploaded', 'processing', 'ready')),
        pending = pending - (OLD.state = 'pending'),
        waiting = waiting - (OLD.state = 'uploaded' AND NOT OLD.held AND OLD.attempts = 0)
    WHERE owner = OLD.owner;
END;

INSERT INTO owner_usage (owner, bytes, uploads, pending, waiting)
SELECT owner,
       COALESCE(SUM(CASE WHEN state IN ('pending', 'uploaded', 'processing', 'ready') THEN byte_size ELSE 0 END), 0),
       SUM(state IN ('pending', 'uploaded', 'processing', 'ready')),
       SUM(state = 'pending'),
       SUM(state = 'uploaded' AND attempts = 0)
FROM uploads GROUP BY owner;
