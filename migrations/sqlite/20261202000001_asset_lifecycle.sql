-- Asset lifecycle: the same columns, table and usage rules as
-- ../postgres/20261202000001_asset_lifecycle.sql, in SQLite's types.

ALTER TABLE uploads ADD COLUMN deleted_at TEXT CHECK (deleted_at IS NULL OR NOT held);
CREATE INDEX uploads_deleted_idx ON uploads (deleted_at) WHERE deleted_at IS NOT NULL;

ALTER TABLE uploads ADD COLUMN duplicate_of BLOB;
CREATE INDEX uploads_dedup_idx ON uploads (owner, sha256) WHERE state = 'ready' AND deleted_at IS NULL;
CREATE INDEX uploads_final_key_idx ON uploads (final_key);
CREATE INDEX derivatives_object_key_idx ON derivatives (object_key);

CREATE TABLE shares (
    id             TEXT    PRIMARY KEY,
    token_hash     TEXT    NOT NULL UNIQUE,
    upload_id      BLOB    NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    owner          TEXT    NOT NULL,
    rendition      TEXT    NOT NULL,
    expires_at     TEXT    NOT NULL,
    max_downloads  INTEGER,
    downloads      INTEGER NOT NULL DEFAULT 0,
    revoked_at     TEXT,
    created_at     TEXT    NOT NULL
);
CREATE INDEX shares_upload_idx ON shares (upload_id, created_at);
CREATE INDEX shares_owner_idx ON shares (owner);

-- Usage counts only uploads that are not deleted.
DROP TRIGGER uploads_owner_usage_insert;
DROP TRIGGER uploads_owner_usage_update;
DROP TRIGGER uploads_owner_usage_delete;

CREATE TRIGGER uploads_owner_usage_insert AFTER INSERT ON uploads BEGIN
    INSERT OR IGNORE INTO owner_usage (owner) VALUES (NEW.owner);
    UPDATE owner_usage SET
        bytes = bytes + (CASE WHEN NEW.deleted_at IS NULL AND NEW.state IN ('pending', 'uploaded', 'processing', 'ready') THEN NEW.byte_size ELSE 0 END),
        uploads = uploads + (NEW.deleted_at IS NULL AND NEW.state IN ('pending', 'uploaded', 'processing', 'ready')),
        pending = pending + (NEW.deleted_at IS NULL AND NEW.state = 'pending'),
        waiting = waiting + (NEW.deleted_at IS NULL AND NEW.state = 'uploaded' AND NOT NEW.held AND NEW.attempts = 0)
    WHERE owner = NEW.owner;
END;

CREATE TRIGGER uploads_owner_usage_update AFTER UPDATE OF state, held, attempts, byte_size, deleted_at ON uploads BEGIN
    INSERT OR IGNORE INTO owner_usage (owner) VALUES (NEW.owner);
    UPDATE owner_usage SET
        bytes = bytes + (CASE WHEN NEW.deleted_at IS NULL AND NEW.state IN ('pending', 'uploaded', 'processing', 'ready') THEN NEW.byte_size ELSE 0 END)
                      - (CASE WHEN OLD.deleted_at IS NULL AND OLD.state IN ('pending', 'uploaded', 'processing', 'ready') THEN OLD.byte_size ELSE 0 END),
        uploads = uploads + (NEW.deleted_at IS NULL AND NEW.state IN ('pending', 'uploaded', 'processing', 'ready'))
                          - (OLD.deleted_at IS NULL AND OLD.state IN ('pending', 'uploaded', 'processing', 'ready')),
        pending = pending + (NEW.deleted_at IS NULL AND NEW.state = 'pending')
                          - (OLD.deleted_at IS NULL AND OLD.state = 'pending'),
        waiting = waiting + (NEW.deleted_at IS NULL AND NEW.state = 'uploaded' AND NOT NEW.held AND NEW.attempts = 0)
                          - (OLD.deleted_at IS NULL AND OLD.state = 'uploaded' AND NOT OLD.held AND OLD.attempts = 0)
    WHERE owner = NEW.owner;
END;

CREATE TRIGGER uploads_owner_usage_delete AFTER DELETE ON uploads BEGIN
    UPDATE owner_usage SET
        bytes = bytes - (CASE WHEN OLD.deleted_at IS NULL AND OLD.state IN ('pending', 'uploaded', 'processing', 'ready') THEN OLD.byte_size ELSE 0 END),
        uploads = uploads - (OLD.deleted_at IS NULL AND OLD.state IN ('pending', 'uploaded', 'processing', 'ready')),
        pending = pending - (OLD.deleted_at IS NULL AND OLD.state = 'pending'),
        waiting = waiting - (OLD.deleted_at IS NULL AND OLD.state = 'uploaded' AND NOT OLD.held AND OLD.attempts = 0)
    WHERE owner = OLD.owner;
END;
