//! Deterministic apalis task ids. Kiln never writes a task id back to the database: each one
//! is derived from what the row already holds, so any process can name an upload's current
//! task (to check that it is live, or to remove it from the dead set) from the row alone.
//!
//! A derived id is a ULID (the form apalis-redis task ids take): its 48-bit time part is the
//! upload's creation time in Unix milliseconds (the leading 48 bits of its UUIDv7 id, the same
//! layout), and its 80 random bits are the first 80 bits of SHA-256 over a domain tag and the
//! parts that identify the task.

use sha2::{Digest, Sha256};
use ulid::Ulid;

use crate::domain::UploadId;

/// The ProcessUpload task of `upload` at job generation `generation`: the row's
/// `job_generation`, which every transition that queues work (complete, retry, replay,
/// requeue) increments in the same UPDATE. Generation 0 never has a task.
pub fn process_upload(upload: UploadId, generation: i32) -> Ulid {
    derive(
        upload,
        b"kiln-process-upload-1",
        &[&generation.to_be_bytes()],
    )
}

/// The task that retries task `parent` after its `retry`-th transient failure (1-based), for
/// jobs that count retries in their payload (RenderRenditions) and for a ProcessUpload that
/// could not reach the database to claim its row.
pub fn retry_of(upload: UploadId, parent: &str, retry: u32) -> Ulid {
    derive(
        upload,
        b"kiln-retry-1",
        &[parent.as_bytes(), &retry.to_be_bytes()],
    )
}

/// A ULID with `upload`'s creation time and 80 bits of SHA-256 over `tag` and `parts`
/// (each length-prefixed, so no two part lists collide).
pub fn derive(upload: UploadId, tag: &[u8], parts: &[&[u8]]) -> Ulid {
    let mut hasher = Sha256::new();
    hasher.update(tag);
    hasher.update(upload.0.as_bytes());
    for p in parts {
        hasher.update((p.len() as u64).to_be_bytes());
        hasher.update(p);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    // UUIDv7: bits 0..48 are Unix milliseconds, as in a ULID.
    bytes[..6].copy_from_slice(&upload.0.as_bytes()[..6]);
    bytes[6..].copy_from_slice(&digest[..10]);
    Ulid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_generation_and_distinct_across_them() {
        let id = UploadId::new();
        assert_eq!(process_upload(id, 3), process_upload(id, 3));
        assert_ne!(process_upload(id, 3), process_upload(id, 4));
        assert_ne!(process_upload(id, 3), process_upload(UploadId::new(), 3));
        let t = process_upload(id, 1).to_string();
        assert_ne!(retry_of(id, &t, 1), retry_of(id, &t, 2));
        assert_ne!(retry_of(id, &t, 1).to_string(), t);
    }

    #[test]
    fn the_time_part_is_the_upload_creation_time() {
        let id = UploadId::new();
        let ms = u64::from_be_bytes({
            let mut b = [0u8; 8];
            b[2..].copy_from_slice(&id.0.as_bytes()[..6]);
            b
        });
        assert_eq!(process_upload(id, 1).timestamp_ms(), ms);
    }
}
