//! The report of `kiln-bench images`: the machine, then one table as aligned text or as
//! markdown, then the thumb-only throughput line. Formatting only: it reads the results
//! ([`super::model`]) and knows nothing of how they were measured.

use std::time::Duration;

use kiln_shared::domain::{Fit, Rendition};

use super::model::ImageResult;
use super::throughput::Throughput;
use crate::machine::Machine;
use crate::table;

/// First line of the markdown block; `scripts/bench-images` (`scripts/doc-block`) replaces the
/// block in `docs/benchmarks.md` from this line to [`MARKDOWN_END`]. The marker keeps its
/// historical `kiln bench` wording, which both of them match.
pub const MARKDOWN_BEGIN: &str = "<!-- kiln bench images: begin (generated, do not edit) -->";
/// Last line of the markdown block.
pub const MARKDOWN_END: &str = "<!-- kiln bench images: end -->";

/// Everything `kiln-bench images` prints.
#[derive(Debug, Clone)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// The command line, starting with `kiln-bench`.
    pub command: String,
    /// The renditions both tools made.
    pub renditions: Vec<Rendition>,
    /// Timed runs per image and tool.
    pub repeat: u32,
    /// Peak RSS of `true` measured like the tools: the least a measured process can report.
    pub rss_floor_kib: u64,
    /// One per image, in the order benchmarked.
    pub results: Vec<ImageResult>,
    /// The thumb-only run, if `--thumbs` was given.
    pub throughput: Option<Throughput>,
    /// The same run through the decoder jail, if `--jail` was given too.
    pub jailed_throughput: Option<Throughput>,
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1000.0)
}

fn mib(kib: u64) -> String {
    format!("{:.0}", kib as f64 / 1024.0)
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}", a.as_secs_f64() / b.as_secs_f64())
}

impl Report {
    fn profile() -> &'static str {
        if cfg!(debug_assertions) {
            "dev profile (kiln-worker and every dependency at opt-level 3, debug assertions and \
             overflow checks on)"
        } else {
            "release profile"
        }
    }

    fn renditions_line(&self) -> String {
        self.renditions
            .iter()
            .map(|r| {
                let fit = match r.fit {
                    Fit::Cover => "cover",
                    Fit::Contain => "contain",
                };
                format!(
                    "{} {}x{} {fit} {} q{}",
                    r.name,
                    r.max_width,
                    r.max_height,
                    r.format.as_str(),
                    r.quality
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn jailed(&self) -> bool {
        self.results.iter().any(|r| r.kiln_jailed.is_some())
    }

    /// Column headers: after vips' total time, one column per vips process (rendition).
    fn headers(&self) -> Vec<String> {
        let mut headers = vec!["file", "size", "MP", "Kiln ms", "vips ms"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>();
        headers.extend(
            self.renditions
                .iter()
                .map(|r| format!("vips {} ms", r.name)),
        );
        headers.extend(
            [
                "Kiln/vips",
                "Kiln in-process ms",
                "Kiln CPU ms",
                "vips CPU ms",
                "Kiln peak RSS MiB",
                "vips peak RSS MiB",
            ]
            .map(String::from),
        );
        if self.jailed() {
            headers.push("Kiln jailed ms".into());
        }
        headers
    }

    fn rows(&self) -> Vec<Vec<String>> {
        let mut rows: Vec<Vec<String>> = self
            .results
            .iter()
            .map(|r| {
                let mut row = vec![
                    r.file
                        .file_name()
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned(),
                    format!("{}x{}", r.width, r.height),
                    format!("{:.1}", f64::from(r.width) * f64::from(r.height) / 1e6),
                    ms(r.kiln.wall),
                    ms(r.vips.wall),
                ];
                row.extend(r.vips.per_process.iter().map(|d| ms(*d)));
                row.extend([
                    ratio(r.kiln.wall, r.vips.wall),
                    ms(r.kiln_pipeline),
                    ms(r.kiln.cpu),
                    ms(r.vips.cpu),
                    mib(r.kiln.max_rss_kib),
                    mib(r.vips.max_rss_kib),
                ]);
                if let Some(jailed) = r.kiln_jailed {
                    row.push(ms(jailed));
                }
                row
            })
            .collect();
        let sum =
            |f: &dyn Fn(&ImageResult) -> Duration| self.results.iter().map(f).sum::<Duration>();
        let max = |f: &dyn Fn(&ImageResult) -> u64| self.results.iter().map(f).max().unwrap_or(0);
        let (kiln, vips) = (sum(&|r| r.kiln.wall), sum(&|r| r.vips.wall));
        let mp: f64 = self
            .results
            .iter()
            .map(|r| f64::from(r.width) * f64::from(r.height) / 1e6)
            .sum();
        let mut total = vec![
            format!("total ({} images)", self.results.len()),
            String::new(),
            format!("{mp:.1}"),
            ms(kiln),
            ms(vips),
        ];
        total.extend((0..self.renditions.len()).map(|i| {
            ms(sum(&|r| {
                r.vips.per_process.get(i).copied().unwrap_or_default()
            }))
        }));
        total.extend([
            ratio(kiln, vips),
            ms(sum(&|r| r.kiln_pipeline)),
            ms(sum(&|r| r.kiln.cpu)),
            ms(sum(&|r| r.vips.cpu)),
            format!("max {}", mib(max(&|r| r.kiln.max_rss_kib))),
            format!("max {}", mib(max(&|r| r.vips.max_rss_kib))),
        ]);
        if self.jailed() {
            total.push(ms(sum(&|r| r.kiln_jailed.unwrap_or_default())));
        }
        rows.push(total);
        rows
    }

    fn method_lines(&self) -> Vec<String> {
        let m = &self.machine;
        vec![
            format!(
                "Machine: {} CPUs (nproc), {}, {:.1} GiB RAM, Linux {}; load average at start {}",
                m.cpus,
                m.cpu_model,
                m.mem_kib as f64 / (1024.0 * 1024.0),
                m.kernel,
                m.load
            ),
            format!(
                "Kiln: {}, one thread; peer: vipsthumbnail {} ({})",
                Self::profile(),
                m.vips.trim_start_matches("vips-"),
                match &m.vips_concurrency {
                    Some(n) => format!("VIPS_CONCURRENCY={n}"),
                    None => format!("libvips' default thread pool, {} threads", m.cpus),
                }
            ),
            format!("Renditions: {} (worker.renditions)", self.renditions_line()),
            format!(
                "Times are medians of {} runs per image and tool after one warm-up run; each run \
                 is whole processes (Kiln: one `kiln-bench render-one`; vips: one `vipsthumbnail` \
                 per rendition, summed, each decoding the file). Peak RSS is the largest over the runs and processes; the \
                 least a measured process can show (`true`) is {} MiB.",
                self.repeat,
                mib(self.rss_floor_kib)
            ),
        ]
    }

    fn throughput_line(&self) -> String {
        match &self.throughput {
            None => "Thumb-only throughput: not run (no --thumbs given).".to_owned(),
            Some(t) => {
                let mut line = Self::one_throughput(t);
                if let Some(j) = &self.jailed_throughput {
                    line += &format!(
                        "\n{}; {:.0} % of the in-process figure per core",
                        Self::one_throughput(j),
                        100.0 * j.per_core() / t.per_core()
                    );
                }
                line
            }
        }
    }

    fn one_throughput(t: &Throughput) -> String {
        let names = t
            .files
            .iter()
            .map(|f| {
                f.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect::<Vec<_>>()
            .join(", ");
        let how = if t.jailed {
            "through the decoder jail (one prespawned child, driven from one thread; CPU of both)"
        } else {
            "in process, one thread"
        };
        format!(
            "Thumb-only throughput (thumb rendition only, {how}, {names}): {} thumbs in {:.1} s \
             = {:.1} thumbs/s per core ({:.1} CPU-s); {:.1} thumbs/s by wall clock",
            t.thumbs,
            t.wall.as_secs_f64(),
            t.per_core(),
            t.cpu.as_secs_f64(),
            t.per_wall_second()
        )
    }

    /// The report as aligned plain text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for l in self.method_lines() {
            out += &l;
            out += "\n";
        }
        out += &format!("Command: {}\n\n", self.command);
        out += &table::text(&self.headers(), &self.rows());
        out += "\n";
        out += &self.throughput_line();
        out += "\n";
        out
    }

    /// The report as markdown between [`MARKDOWN_BEGIN`] and [`MARKDOWN_END`].
    pub fn markdown(&self) -> String {
        let mut out = format!("{MARKDOWN_BEGIN}\n");
        for l in self.method_lines() {
            out += &format!("- {l}\n");
        }
        out += &format!("- Command: `{}`\n\n", self.command);
        out += &table::markdown(&self.headers(), &self.rows());
        out += &format!("\n{}\n", self.throughput_line());
        out += &format!("{MARKDOWN_END}\n");
        out
    }
}
