-- Asset lifecycle (docs/ARCHITECTURE.md "Delete, restore and purge", "Share links", "Dedup"):
-- soft delete, dedup by content within an owner, and share links.

-- A deleted upload keeps its row (and its state, so a restore returns it exactly there) until
-- the sweeper purges it `retention.deleted_secs` after `deleted_at`. A deleted row is never held
-- for admission.
ALTER TABLE uploads ADD COLUMN deleted_at TIMESTAMPTZ;
ALTER TABLE uploads ADD CONSTRAINT uploads_deleted_not_held CHECK (deleted_at IS NULL OR NOT held);
CREATE INDEX uploads_deleted_idx ON uploads (deleted_at) WHERE deleted_at IS NOT NULL;

-- A ready upload whose bytes (SHA-256) equal an earlier ready upload of the same owner shares
-- that upload's original and derivative objects; `duplicate_of` names it (informational: it may
-- be purged later, and the objects stay while any row points at them).
ALTER TABLE uploads ADD COLUMN duplicate_of UUID;
CREATE INDEX uploads_dedup_idx ON uploads (owner, sha256) WHERE state = 'ready' AND deleted_at IS NULL;
-- Purge keeps an object while any other row points at it.
CREATE INDEX uploads_final_key_idx ON uploads (final_key);
CREATE INDEX derivatives_object_key_idx ON derivatives (object_key);

-- Share links: `GET /s/{token}`. Only the SHA-256 of the token is stored; `id` names the share
-- in lists and revocation.
CREATE TABLE shares (
    id             TEXT        PRIMARY KEY,
    token_hash     TEXT        NOT NULL UNIQUE,
    upload_id      UUID        NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    owner          TEXT        NOT NULL,
    rendition      TEXT        NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    max_downloads  BIGINT,
    downloads      BIGINT      NOT NULL DEFAULT 0,
    revoked_at     TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX shares_upload_idx ON shares (upload_id, created_at);
CREATE INDEX shares_owner_idx ON shares (owner);

-- Usage counts only uploads that are not deleted: deleting frees quota, restoring takes it back.
CREATE OR REPLACE FUNCTION kiln_owner_usage() RETURNS trigger AS $$
DECLARE
    d_bytes BIGINT := 0; d_uploads BIGINT := 0; d_pending BIGINT := 0; d_waiting BIGINT := 0;
    o TEXT;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        o := NEW.owner;
        IF NEW.deleted_at IS NULL THEN
            IF NEW.state IN ('pending', 'uploaded', 'processing', 'ready') THEN
                d_bytes := d_bytes + NEW.byte_size; d_uploads := d_uploads + 1;
            END IF;
            IF NEW.state = 'pending' THEN d_pending := d_pending + 1; END IF;
            IF NEW.state = 'uploaded' AND NOT NEW.held AND NEW.attempts = 0 THEN
                d_waiting := d_waiting + 1;
            END IF;
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        o := OLD.owner;
        IF OLD.deleted_at IS NULL THEN
            IF OLD.state IN ('pending', 'uploaded', 'processing', 'ready') THEN
                d_bytes := d_bytes - OLD.byte_size; d_uploads := d_uploads - 1;
            END IF;
            IF OLD.state = 'pending' THEN d_pending := d_pending - 1; END IF;
            IF OLD.state = 'uploaded' AND NOT OLD.held AND OLD.attempts = 0 THEN
                d_waiting := d_waiting - 1;
            END IF;
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

DROP TRIGGER uploads_owner_usage ON uploads;
CREATE TRIGGER uploads_owner_usage AFTER INSERT OR DELETE OR UPDATE OF state, held, attempts, byte_size, deleted_at
    ON uploads FOR EACH ROW EXECUTE FUNCTION kiln_owner_usage();
