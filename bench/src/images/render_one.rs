//! `kiln-bench render-one FILE [--out DIR]`: one run of Kiln's pipeline in a fresh process, the
//! unit that `kiln-bench images` times against one `vipsthumbnail` run per rendition.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use kiln_shared::Settings;
use kiln_worker::imaging::{self, Limits};
use serde::{Deserialize, Serialize};

/// Arguments of the hidden `kiln-bench render-one`.
#[derive(Debug, clap::Args)]
pub struct RenderOneArgs {
    /// The image.
    file: PathBuf,
    /// Write each derivative to this directory as `{file stem}_{rendition}.{ext}`; without it
    /// nothing is written.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl RenderOneArgs {
    /// Arguments for rendering `file` into `out`.
    pub fn new(file: PathBuf, out: Option<PathBuf>) -> Self {
        Self { file, out }
    }

    /// The arguments as given on the command line, after `render-one`.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args = vec![self.file.clone().into_os_string()];
        if let Some(out) = &self.out {
            args.push("--out".into());
            args.push(out.clone().into_os_string());
        }
        args
    }
}

/// What one `render-one` run printed, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RenderReport {
    /// Width of the original as displayed (after orientation), in pixels.
    pub width: u32,
    /// Height of the original as displayed, in pixels.
    pub height: u32,
    /// `imaging::process` from call to return, in microseconds (reading the file and writing
    /// the outputs excluded).
    pub pipeline_us: u64,
}

impl RenderReport {
    /// The in-process pipeline time.
    pub fn pipeline(&self) -> Duration {
        Duration::from_micros(self.pipeline_us)
    }
}

/// Reads the file, runs the pipeline with `worker.renditions` and `worker.*` limits, writes the
/// derivatives if asked, and prints a [`RenderReport`].
///
/// # Errors
/// When the file cannot be read, the pipeline rejects it, or an output cannot be written.
pub fn run(settings: &Settings, args: &RenderOneArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("while reading {}", args.file.display()))?;
    let limits = Limits::from_settings(&settings.worker);
    let started = Instant::now();
    let processed = imaging::process(&bytes, &settings.worker.renditions, &limits)
        .with_context(|| format!("while processing {}", args.file.display()))?;
    let pipeline = started.elapsed();
    if let Some(dir) = &args.out {
        let stem = args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for d in &processed.derivatives {
            let path = dir.join(format!(
                "{stem}_{}.{}",
                d.rendition.name,
                d.rendition.format.extension()
            ));
            std::fs::write(&path, &d.bytes)
                .with_context(|| format!("while writing {}", path.display()))?;
        }
    }
    let report = RenderReport {
        width: processed.metadata.width,
        height: processed.metadata.height,
        pipeline_us: u64::try_from(pipeline.as_micros()).unwrap_or(u64::MAX),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
