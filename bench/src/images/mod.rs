//! `kiln-bench images PATH… [--repeat N] [--markdown] [--thumbs PATH…]`: Kiln's pipeline
//! beside libvips' `vipsthumbnail`, whole process against whole process, on the same files in
//! the same run.
//!
//! For every image and every repetition, Kiln is one `kiln-bench render-one FILE --out DIR`
//! process making every configured rendition (one decode), and vips is one `vipsthumbnail`
//! process per rendition (the tool makes one size per run; see [`vips`]). Both sides write
//! their outputs to the same scratch directory. vips' time and CPU time are the sums over its
//! processes, its peak RSS the largest of them. Each process is measured by its own
//! `kiln-bench measure` process (see [`measure`]). Runs alternate which tool goes first, after
//! one untimed warm-up run of each.
//!
//! With `--jail`, each image also goes `--repeat` times through the decoder jail as a worker
//! runs it (a prespawned, confined `kiln decode-child`; [`jail`]), timed from request to
//! response, and the thumb-only throughput runs twice, in process and jailed, so the report
//! shows what the jail costs.
//!
//! Modules: this one runs the benchmark; [`model`] holds its results, [`report`] formats them
//! (it imports [`model`], never this module).

pub mod jail;
pub mod measure;
pub mod model;
pub mod render_one;
pub mod report;
pub mod throughput;
pub mod vips;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use kiln_shared::Settings;

use self::jail::Jail;
use self::measure::Measurement;
use self::model::{ImageResult, ToolResult};
use self::render_one::{RenderOneArgs, RenderReport};
use self::report::Report;
use crate::machine::Machine;

/// Arguments of `kiln-bench images`.
#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Image files, or directories whose files (not recursive, dotfiles skipped) are each
    /// benchmarked.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Timed runs per image and tool: the median time is reported, and the largest peak RSS.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Also print the results as markdown, between marker comments, for `docs/benchmarks.md`.
    #[arg(long)]
    markdown: bool,
    /// Files or directories for the thumb-only throughput run (e.g. the 8 MP phone JPEGs).
    /// Without it that run is skipped, and the report says so.
    #[arg(long = "thumbs", value_name = "PATH")]
    thumbs: Vec<PathBuf>,
    /// Length of the thumb-only throughput run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    thumb_secs: f64,
    /// Also run every image and the thumb-only throughput through the decoder jail (one
    /// prespawned `kiln decode-child`: the `kiln` next to `kiln-bench`, or `KILN_BIN`).
    #[arg(long)]
    jail: bool,
}

/// Deletes the scratch directory when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("kiln-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("while creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file named by `paths`: files as given, directories' files sorted by name.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = std::fs::read_dir(path)
                .with_context(|| format!("while listing {}", path.display()))?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("while listing {}", path.display()))?;
            found.retain(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            });
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            bail!("{} is neither a file nor a directory", path.display());
        }
    }
    Ok(files)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2
    }
}

/// The samples of one tool on one image.
#[derive(Default)]
struct Samples {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
    max_rss_kib: u64,
    per_process: Vec<Vec<Duration>>,
}

impl Samples {
    fn push(&mut self, runs: &[Measurement]) {
        self.per_process.resize_with(runs.len(), Vec::new);
        for (samples, m) in self.per_process.iter_mut().zip(runs) {
            samples.push(m.wall());
        }
        self.wall.push(runs.iter().map(Measurement::wall).sum());
        self.cpu.push(runs.iter().map(Measurement::cpu).sum());
        let rss = runs.iter().map(|m| m.max_rss_kib).max().unwrap_or(0);
        self.max_rss_kib = self.max_rss_kib.max(rss);
    }

    fn result(self) -> ToolResult {
        ToolResult {
            wall: median(self.wall),
            cpu: median(self.cpu),
            max_rss_kib: self.max_rss_kib,
            per_process: self.per_process.into_iter().map(median).collect(),
        }
    }
}

/// Median time of `repeat` runs of the pipeline on `file` through `jail`, after one untimed.
fn bench_jailed(
    settings: &Settings,
    jail: &Jail,
    file: &Path,
    repeat: u32,
) -> anyhow::Result<Duration> {
    let bytes = std::fs::read(file).with_context(|| format!("while reading {}", file.display()))?;
    let limits = kiln_worker::imaging::Limits::from_settings(&settings.worker);
    let renditions = &settings.worker.renditions;
    let mut times = Vec::new();
    for i in 0..=repeat {
        let started = std::time::Instant::now();
        jail.process(&bytes, renditions, &limits)
            .with_context(|| format!("while processing {} in the jail", file.display()))?;
        if i > 0 {
            times.push(started.elapsed());
        }
    }
    Ok(median(times))
}

#[allow(clippy::too_many_arguments)]
fn bench_one(
    settings: &Settings,
    config: Option<&Path>,
    file: &Path,
    repeat: u32,
    scratch: &Path,
    bar: &ProgressBar,
    jail: Option<&Jail>,
) -> anyhow::Result<ImageResult> {
    let exe = std::env::current_exe().context("while finding the kiln-bench executable")?;
    let mut kiln_cmd: Vec<OsString> = vec![exe.into_os_string()];
    if let Some(config) = config {
        kiln_cmd.extend(["--config".into(), config.as_os_str().to_owned()]);
    }
    kiln_cmd.push("render-one".into());
    kiln_cmd.extend(RenderOneArgs::new(file.to_owned(), Some(scratch.to_owned())).to_args());
    let vips_cmds = vips::commands(file, &settings.worker.renditions, scratch);

    let run_kiln = || -> anyhow::Result<(Measurement, RenderReport)> {
        let m = measure::measure(config, &kiln_cmd)?;
        let line = m.stdout.lines().rev().find(|l| !l.trim().is_empty());
        let report: RenderReport = serde_json::from_str(line.unwrap_or_default())
            .with_context(|| format!("render-one printed no report: {:?}", m.stdout))?;
        Ok((m, report))
    };
    let run_vips = || -> anyhow::Result<Vec<Measurement>> {
        vips_cmds
            .iter()
            .map(|cmd| measure::measure(config, cmd))
            .collect()
    };

    let (_, first) = run_kiln()?;
    run_vips()?;
    bar.inc(1);
    let mut kiln = Samples::default();
    let mut vips = Samples::default();
    let mut pipeline = Vec::new();
    for i in 0..repeat {
        let mut kiln_run = || -> anyhow::Result<()> {
            let (m, report) = run_kiln()?;
            pipeline.push(report.pipeline());
            kiln.push(std::slice::from_ref(&m));
            Ok(())
        };
        if i % 2 == 0 {
            kiln_run()?;
            vips.push(&run_vips()?);
        } else {
            vips.push(&run_vips()?);
            kiln_run()?;
        }
        bar.inc(1);
    }
    let kiln_jailed = match jail {
        Some(jail) => Some(bench_jailed(settings, jail, file, repeat)?),
        None => None,
    };
    Ok(ImageResult {
        file: file.to_owned(),
        width: first.width,
        height: first.height,
        kiln: kiln.result(),
        kiln_pipeline: median(pipeline),
        kiln_jailed,
        vips: vips.result(),
    })
}

/// Runs the benchmark and prints the report (and its markdown with `--markdown`).
///
/// # Errors
/// When `vipsthumbnail` is missing, an input cannot be read, or either tool fails on an image
/// (named in the message).
pub fn run(settings: &Settings, config: Option<&Path>, args: &ImagesArgs) -> anyhow::Result<()> {
    let vips = vips::version()?;
    let files = expand(&args.paths)?;
    if files.is_empty() {
        bail!("no files under {:?}", args.paths);
    }
    let thumb_files = expand(&args.thumbs)?;
    let machine = Machine::read(vips);
    let scratch = Scratch::new()?;
    let rss_floor_kib = measure::rss_floor(config)?;
    let jail = if args.jail {
        Some(Jail::start(settings)?)
    } else {
        None
    };

    let bar = ProgressBar::new(files.len() as u64 * u64::from(args.repeat + 1));
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")?
            .progress_chars("=> "),
    );
    let mut results = Vec::with_capacity(files.len());
    for file in &files {
        bar.set_message(
            file.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        );
        results.push(bench_one(
            settings,
            config,
            file,
            args.repeat,
            &scratch.0,
            &bar,
            jail.as_ref(),
        )?);
    }
    bar.set_message("thumb-only run");
    let thumb_secs = Duration::from_secs_f64(args.thumb_secs);
    let throughput = if thumb_files.is_empty() {
        None
    } else {
        Some(throughput::run(settings, &thumb_files, thumb_secs, None)?)
    };
    let jailed_throughput = match (&jail, thumb_files.is_empty()) {
        (Some(jail), false) => Some(throughput::run(
            settings,
            &thumb_files,
            thumb_secs,
            Some(jail),
        )?),
        _ => None,
    };
    bar.finish_and_clear();

    let report = Report {
        machine,
        command: std::iter::once("kiln-bench".to_owned())
            .chain(
                std::env::args_os()
                    .skip(1)
                    .map(|a| a.to_string_lossy().into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" "),
        renditions: settings.worker.renditions.clone(),
        repeat: args.repeat,
        rss_floor_kib,
        results,
        throughput,
        jailed_throughput,
    };
    print!("{}", report.text());
    if args.markdown {
        println!();
        print!("{}", report.markdown());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(
            median(vec![ms(4), ms(1), ms(2), ms(3)]),
            Duration::from_micros(2_500)
        );
    }
}
