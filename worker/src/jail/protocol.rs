//! The wire protocol between a worker and its decoder children, over the child's stdin
//! (requests) and stdout (the hello and responses).
//!
//! **Framing.** Every message is one frame: a 4-byte little-endian payload length, then the
//! payload, a MessagePack document (rmp-serde, structs as maps so that fields skipped when
//! `None` in [`kiln_shared::domain::ImageMetadata`] round-trip; byte strings as MessagePack
//! `bin`, copied once, never as arrays of numbers). A reader checks the length against its
//! limit before allocating anything.
//!
//! **Exchange.** The child writes one [`Hello`] once it is confined, then answers each
//! [`Request`] with exactly one [`Response`], in order, one at a time. End of input (the worker
//! closed the child's stdin) at a frame boundary ends the child cleanly. Anything else the
//! child does (a short frame, a malformed payload, silence past the job timeout, exiting) is
//! handled by the worker as that child's failure.

use std::borrow::Cow;
use std::io::{Read, Write};

use kiln_shared::domain::{ImageMetadata, Rendition};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::imaging::{ImagingError, Limits, Processed, RenderedDerivative, StageTimings};

pub use super::logs::{LogLevel, LogRecord, MAX_LOG_RECORDS};

/// Version of this protocol, sent in [`Hello`]; a worker refuses a child that speaks another
/// (a `kiln` binary replaced by a different build while the worker runs).
pub const PROTOCOL_VERSION: u32 = 1;

/// Bytes of the length prefix of every frame.
pub const HEADER_LEN: usize = 4;

/// Largest payload a frame can carry (the length prefix is a `u32`), in bytes.
pub const MAX_FRAME: usize = u32::MAX as usize;

/// Why a frame could not be read, written or understood.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The other side closed the pipe at a frame boundary (no byte of a new frame was read).
    #[error("the pipe was closed")]
    Closed,
    /// The pipe failed, or closed in the middle of a frame.
    #[error("pipe I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The length prefix announced more than the reader accepts.
    #[error("a frame of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Announced payload length, in bytes.
        len: u64,
        /// The reader's limit, in bytes.
        max: usize,
    },
    /// The payload is not the expected message.
    #[error("malformed message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    /// The message could not be encoded (never expected for these types).
    #[error("cannot encode a message: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// What a child says once, after confining itself and before its first request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the child's build.
    pub protocol: u32,
    /// Whether the seccomp filter is installed (always true: a child that cannot install it
    /// exits instead of saying hello).
    pub seccomp: bool,
    /// What Landlock enforces: `"fully enforced"`, `"partially enforced"`, or why not
    /// (`"not supported by this kernel"`, an error).
    pub landlock: String,
}

/// One image to process: what `imaging::process` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request<'a> {
    /// The renditions to render, in the order the result lists them.
    pub renditions: Cow<'a, [Rendition]>,
    /// Size limits, the memory budget and the content-type check.
    pub limits: Limits,
    /// The original's bytes (borrowed from the frame when decoded).
    #[serde(with = "serde_bytes", borrow)]
    pub bytes: Cow<'a, [u8]>,
}

/// One encoded rendition, as sent ([`RenderedDerivative`] with its bytes as `bin`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireDerivative {
    /// The recipe.
    pub rendition: Rendition,
    /// Width, in pixels.
    pub width: u32,
    /// Height, in pixels.
    pub height: u32,
    /// Encoded bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// [`Processed`] as sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireProcessed {
    /// Metadata of the original.
    pub metadata: ImageMetadata,
    /// One per rendition, in the request's order.
    pub derivatives: Vec<WireDerivative>,
    /// Time per stage, measured in the child.
    pub timings: StageTimings,
}

impl From<Processed> for WireProcessed {
    fn from(p: Processed) -> Self {
        Self {
            metadata: p.metadata,
            derivatives: p
                .derivatives
                .into_iter()
                .map(|d| WireDerivative {
                    rendition: d.rendition,
                    width: d.width,
                    height: d.height,
                    bytes: d.bytes,
                })
                .collect(),
            timings: p.timings,
        }
    }
}

impl From<WireProcessed> for Processed {
    fn from(p: WireProcessed) -> Self {
        Self {
            metadata: p.metadata,
            derivatives: p
                .derivatives
                .into_iter()
                .map(|d| RenderedDerivative {
                    rendition: d.rendition,
                    width: d.width,
                    height: d.height,
                    bytes: d.bytes,
                })
                .collect(),
            timings: p.timings,
        }
    }
}

/// The answer to one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    /// What `imaging::process` returned.
    pub result: Result<WireProcessed, ImagingError>,
    /// The events the pipeline logged meanwhile (at most [`MAX_LOG_RECORDS`]).
    pub logs: Vec<LogRecord>,
    /// The child exits after this answer (the pipeline panicked, so its libraries' state is
    /// no longer trusted); the worker replaces it.
    pub retire: bool,
}

/// `value` as one frame: the length prefix, then its MessagePack payload.
///
/// # Errors
/// [`FrameError::Encode`] (not expected for the protocol's types), or
/// [`FrameError::TooLarge`] past [`MAX_FRAME`].
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut frame = vec![0u8; HEADER_LEN];
    rmp_serde::encode::write_named(&mut frame, value)?;
    let len = frame.len() - HEADER_LEN;
    let prefix = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        len: len as u64,
        max: MAX_FRAME,
    })?;
    frame[..HEADER_LEN].copy_from_slice(&prefix.to_le_bytes());
    Ok(frame)
}

/// Decodes a payload read by [`read_frame`] or [`read_frame_async`]. Byte strings of
/// [`Request`] borrow from `payload`.
///
/// # Errors
/// [`FrameError::Decode`] when the payload is not a `T`.
pub fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, FrameError> {
    Ok(rmp_serde::from_slice(payload)?)
}

fn announced(header: [u8; HEADER_LEN], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_le_bytes(header) as usize;
    if len > max {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max,
        });
    }
    Ok(len)
}

fn closed_or_io(e: std::io::Error, started: bool) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof && !started {
        FrameError::Closed
    } else {
        FrameError::Io(e)
    }
}

/// Reads one frame's payload (blocking), accepting at most `max` bytes.
///
/// # Errors
/// [`FrameError::Closed`] at end of input before the frame starts, [`FrameError::TooLarge`],
/// or [`FrameError::Io`] (including end of input inside the frame).
pub fn read_frame(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let first = loop {
        match r.read(&mut header) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    };
    if first == 0 {
        return Err(FrameError::Closed);
    }
    r.read_exact(&mut header[first..])?;
    let mut payload = vec![0u8; announced(header, max)?];
    r.read_exact(&mut payload)?;
    Ok(payload)
}

/// Writes one frame made by [`encode`] and flushes (blocking).
///
/// # Errors
/// [`FrameError::Io`] when the pipe fails (the worker went away).
pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> Result<(), FrameError> {
    w.write_all(frame)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame's payload from an async pipe, accepting at most `max` bytes. Cancel safe
/// only in the sense that a cancelled read leaves the pipe mid-frame: the caller discards
/// the child then.
///
/// # Errors
/// As [`read_frame`].
pub async fn read_frame_async(
    r: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let first = r.read(&mut header).await?;
    if first == 0 {
        return Err(FrameError::Closed);
    }
    r.read_exact(&mut header[first..])
        .await
        .map_err(|e| closed_or_io(e, true))?;
    let mut payload = vec![0u8; announced(header, max)?];
    r.read_exact(&mut payload)
        .await
        .map_err(|e| closed_or_io(e, true))?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_shared::domain::metadata::ExifSummary;

    fn limits() -> Limits {
        Limits::from_settings(&kiln_shared::config::WorkerSettings::default())
    }

    fn payload(frame: &[u8]) -> &[u8] {
        let len = u32::from_le_bytes(frame[..HEADER_LEN].try_into().unwrap()) as usize;
        assert_eq!(
            len,
            frame.len() - HEADER_LEN,
            "the prefix is the payload length"
        );
        &frame[HEADER_LEN..]
    }

    #[test]
    fn a_request_round_trips_and_borrows_its_bytes() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
        let renditions = Rendition::defaults();
        let frame = encode(&Request {
            renditions: Cow::Borrowed(&renditions),
            limits: limits(),
            bytes: Cow::Borrowed(&bytes),
        })
        .unwrap();
        // `bin`, not an array of numbers: the frame is barely larger than the image.
        assert!(frame.len() < bytes.len() + 1_000, "{}", frame.len());
        let back: Request<'_> = decode(payload(&frame)).unwrap();
        assert!(matches!(back.bytes, Cow::Borrowed(_)));
        assert_eq!(&*back.bytes, &bytes[..]);
        assert_eq!(&*back.renditions, &renditions[..]);
        assert_eq!(back.limits.max_pixels, limits().max_pixels);
    }

    #[test]
    fn responses_round_trip_with_metadata_whose_empty_fields_are_skipped() {
        let metadata = ImageMetadata {
            width: 4000,
            height: 3000,
            format: "jpeg".into(),
            byte_size: 123,
            sha256: "ab".repeat(32),
            animated: false,
            frame_count: 1,
            thumbhash: None,
            exif: Some(ExifSummary {
                make: Some("Canon".into()),
                iso: Some(200),
                ..ExifSummary::default()
            }),
        };
        let ok = Response {
            result: Ok(WireProcessed {
                metadata: metadata.clone(),
                derivatives: vec![WireDerivative {
                    rendition: Rendition::defaults().remove(0),
                    width: 256,
                    height: 256,
                    bytes: vec![7; 5_000],
                }],
                timings: StageTimings::default(),
            }),
            logs: vec![LogRecord {
                level: LogLevel::Debug,
                target: "kiln_worker::imaging".into(),
                message: "decoded".into(),
                fields: "format=jpeg".into(),
            }],
            retire: false,
        };
        let frame = encode(&ok).unwrap();
        let back: Response = decode(payload(&frame)).unwrap();
        let processed = Processed::from(back.result.unwrap());
        assert_eq!(processed.metadata, metadata);
        assert_eq!(processed.derivatives[0].bytes, vec![7; 5_000]);
        assert_eq!(back.logs, ok.logs);

        for e in [
            ImagingError::Timeout("t".into()),
            ImagingError::TooLarge("big".into()),
            ImagingError::Mismatch("declared image/jpeg".into()),
        ] {
            let frame = encode(&Response {
                result: Err(e.clone()),
                logs: Vec::new(),
                retire: true,
            })
            .unwrap();
            let back: Response = decode(payload(&frame)).unwrap();
            assert_eq!(back.result.unwrap_err(), e);
            assert!(back.retire);
        }
    }

    #[test]
    fn frames_are_read_back_in_order_then_end_of_input_is_closed() {
        let hello = Hello {
            protocol: PROTOCOL_VERSION,
            seccomp: true,
            landlock: "fully enforced".into(),
        };
        let mut pipe = encode(&hello).unwrap();
        pipe.extend(encode(&"second").unwrap());
        let mut r = &pipe[..];
        assert_eq!(
            decode::<Hello>(&read_frame(&mut r, 1024).unwrap()).unwrap(),
            hello
        );
        assert_eq!(
            decode::<String>(&read_frame(&mut r, 1024).unwrap()).unwrap(),
            "second"
        );
        assert!(matches!(read_frame(&mut r, 1024), Err(FrameError::Closed)));
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_before_allocating() {
        let mut r = &u32::MAX.to_le_bytes()[..];
        match read_frame(&mut r, 1 << 20) {
            Err(FrameError::TooLarge { len, max }) => {
                assert_eq!(len, u64::from(u32::MAX));
                assert_eq!(max, 1 << 20);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_truncated_frame_is_an_io_error_not_a_clean_close() {
        let frame = encode(&"some message").unwrap();
        let mut r = &frame[..frame.len() - 1];
        assert!(matches!(read_frame(&mut r, 1024), Err(FrameError::Io(_))));
        let mut r = &frame[..2];
        assert!(matches!(read_frame(&mut r, 1024), Err(FrameError::Io(_))));
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(
            decode::<Response>(&[0xc1, 0x00, 0xff]),
            Err(FrameError::Decode(_))
        ));
    }

    #[tokio::test]
    async fn the_async_reader_agrees_with_the_blocking_one() {
        let mut pipe = encode(&"one").unwrap();
        pipe.extend(encode(&"two").unwrap());
        let mut r = &pipe[..];
        let one = read_frame_async(&mut r, 64).await.unwrap();
        assert_eq!(decode::<String>(&one).unwrap(), "one");
        let two = read_frame_async(&mut r, 64).await.unwrap();
        assert_eq!(decode::<String>(&two).unwrap(), "two");
        assert!(matches!(
            read_frame_async(&mut r, 64).await,
            Err(FrameError::Closed)
        ));
        let frame = encode(&"three").unwrap();
        let mut r = &frame[..frame.len() - 2];
        assert!(matches!(
            read_frame_async(&mut r, 64).await,
            Err(FrameError::Io(_))
        ));
        let mut r = &frame[..];
        assert!(matches!(
            read_frame_async(&mut r, 2).await,
            Err(FrameError::TooLarge { .. })
        ));
    }
}
