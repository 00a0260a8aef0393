-- The fingerprint of the recipe each derivative was rendered with (`Rendition::fingerprint`:
-- 16 hex digits). A derivative is stale when its recipe_version or recipe_hash differs from the
-- configured recipe's; rows from before this column (NULL) are stale.
ALTER TABLE derivatives ADD COLUMN recipe_hash TEXT;

-- `kiln renditions regenerate` walks ready uploads in id order (keyset pagination).
CREATE INDEX uploads_ready_id_idx ON uploads (id) WHERE state = 'ready';
