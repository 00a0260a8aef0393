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

/// Bytes [`distinct_copy`] adds to the photo: a JPEG comment segment (marker, length) with a
/// 32-hex-digit tag, or the same tag after a 4-byte `KCPY` trailer for other formats.
pub const COPY_TAG_BYTES: usize = 4 + 32;

/// A copy of `bytes` whose SHA-256 no other copy shares (a fresh UUIDv7 as its tag), so Kiln's
/// per-owner dedup does not skip it and every upload of the bench is decoded and rendered. A
/// JPEG gets a comment segment (`FF FE`) right after SOI, which decoders skip; any other file
/// gets a trailer after its end, which decoders ignore. [`COPY_TAG_BYTES`] longer than `bytes`.
pub fn distinct_copy(bytes: &[u8]) -> Bytes {
    let tag = Uuid::now_v7().simple().to_string();
    let mut out = Vec::with_capacity(bytes.len() + COPY_TAG_BYTES);
    if bytes.starts_with(&[0xff, 0xd8]) {
        let len = u16::try_from(tag.len() + 2)
            .unwrap_or(u16::MAX)
            .to_be_bytes();
        out.extend_from_slice(&bytes[..2]);
        out.extend_from_slice(&[0xff, 0xfe, len[0], len[1]]);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(&bytes[2..]);
    } else {
        out.extend_from_slice(bytes);
        out.extend_from_slice(b"KCPY");
        out.extend_from_slice(tag.as_bytes());
    }
    Bytes::from(out)
}

/// Uploads authorized and sent at once by [`send_many`].
const SEND_CONCURRENCY: usize = 8;

/// Complete requests in flight at once in [`complete_all`].
const COMPLETE_CONCURRENCY: usize = 16;

/// Authorizes `n` uploads of `upload` (each its own upload id; `upload.method` should be
/// `put`) and sends a [`distinct_copy`] of `bytes` (so `upload.byte_size` must be
/// `bytes.len() + COPY_TAG_BYTES`) to S3 for each,
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
            let copy = distinct_copy(bytes);
            let body = || reqwest::Body::from(copy.clone());
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
