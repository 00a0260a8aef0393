//! A test hook that holds a ProcessUpload job just before its commit, so a test can act on the
//! upload (delete or purge it) while a worker is mid-job.
//!
//! Off unless the environment variable `KILN_TEST_HOLD_DIR` names a folder (read once per
//! process). Then, for an upload id `ID`, a job that has written its derivatives and promoted
//! the original creates `ID.held` in that folder and waits (polling every 50 ms) until the test
//! creates `ID.release`. Uploads without a `ID.hold` file in the folder are not held, so only
//! the uploads a test marks wait.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use kiln_shared::domain::UploadId;

/// The environment variable that turns the hook on.
pub const HOLD_DIR_ENV: &str = "KILN_TEST_HOLD_DIR";

static HOLD_DIR: LazyLock<Option<PathBuf>> =
    LazyLock::new(|| std::env::var_os(HOLD_DIR_ENV).map(PathBuf::from));

/// Waits while the test holds upload `id` (see the module docs); returns at once when the hook
/// is off or `id` is not marked.
pub async fn hold_before_commit(id: UploadId) {
    let Some(dir) = HOLD_DIR.as_ref() else {
        return;
    };
    if !dir.join(format!("{id}.hold")).exists() {
        return;
    }
    let _ = std::fs::write(dir.join(format!("{id}.held")), b"");
    tracing::warn!(upload_id = %id, "test hook: holding the job before its commit");
    while !dir.join(format!("{id}.release")).exists() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
