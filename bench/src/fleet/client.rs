//! The fleet bench's use of the upload API, on the `kiln-client` library (the HTTP side of
//! `kiln upload`): many presigned-PUT uploads of one photo sent to S3 (untimed, before the
//! workers start), then complete on a batch of them (timed). Only the batching and the
//! progress bar are the bench's own.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_client::KilnClient;
use kiln_shared::wire::CreateUpload;
use uuid::Uuid;

/// Uploads authorized and sent at once by [`send_many`].
const SEND_CONCURRENCY: usize = 8;

/// Complete requests in flight at once in [`complete_all`].
const COMPLETE_CONCURRENCY: usize = 16;

/// Authorizes `n` uploads of `upload` (each its own upload id; `upload.method` should be
/// `put`) and sends `bytes` (exactly `upload.byte_size` of them) to S3 for each,
/// [`SEND_CONCURRENCY`] at a time, with a progress bar; transfer retries are reported on
/// stderr. Returns the upload ids, in order; they stay `pending` until [`complete_all`].
///
/// # Errors
/// The first failure of [`KilnClient::authorize`] or [`KilnClient::send`].
pub async fn send_many(
    client: &KilnClient,
    upload: &CreateUpload,
    bytes: &Bytes,
    n: u32,
) -> anyhow::Result<Vec<Uuid>> {
    let bar = ProgressBar::new(u64::from(n)).with_style(
        ProgressStyle::with_template("sending to S3 {pos}/{len} [{bar:30}] {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let ids = futures::stream::iter(0..n)
        .map(|_| async {
            let auth = client.authorize(upload).await?;
            let body = || reqwest::Body::from(bytes.clone());
            let on_retry = |e: &kiln_client::ClientError, after| {
                eprintln!("{}: {}; retrying in {after:?}", upload.filename, e.report());
            };
            client.send(&auth, upload, body, on_retry).await?;
            bar.inc(1);
            anyhow::Ok(auth.id.0)
        })
        .buffered(SEND_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    Ok(ids)
}

/// Calls [`KilnClient::complete`] on every upload in `ids`, [`COMPLETE_CONCURRENCY`] at a
/// time.
///
/// # Errors
/// The first that fails.
pub async fn complete_all(client: &KilnClient, ids: &[Uuid]) -> anyhow::Result<()> {
    futures::stream::iter(ids)
        .map(|&id| client.complete(kiln_shared::domain::UploadId(id)))
        .buffer_unordered(COMPLETE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}
