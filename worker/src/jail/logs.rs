//! Logs across the jail: the [`LogRecord`]s a response carries, and both ends. In the child, [`Collector`] is the process's `tracing` subscriber:
//! it keeps the pipeline's events (up to [`MAX_LOG_RECORDS`] per job, at the level the worker
//! asked for) so they travel back with the response. In the worker, [`replay`] emits them
//! again inside the job's span, so a decoder's line carries `upload_id`, `job_id` and
//! `attempt` like any other line of the job, under the target `kiln_worker::imaging` (for the
//! pipeline's own events) or `kiln_worker::jail::child` (anything else), with the child's own
//! target in `child_target`.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Most [`LogRecord`]s a child sends with one response; later ones are counted and dropped.
pub const MAX_LOG_RECORDS: usize = 200;

/// Severity of a [`LogRecord`], as `tracing`'s levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// `ERROR`.
    Error,
    /// `WARN`.
    Warn,
    /// `INFO`.
    Info,
    /// `DEBUG`.
    Debug,
    /// `TRACE`.
    Trace,
}

impl LogLevel {
    /// Every level, most severe first.
    pub const ALL: [LogLevel; 5] = [
        Self::Error,
        Self::Warn,
        Self::Info,
        Self::Debug,
        Self::Trace,
    ];

    /// Lowercase name, as on the child's command line (`--log-level debug`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// The level named `name` (as [`LogLevel::as_str`] writes it).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == name)
    }

    /// The level of a `tracing` event.
    pub fn of(level: &tracing::Level) -> Self {
        match *level {
            tracing::Level::ERROR => Self::Error,
            tracing::Level::WARN => Self::Warn,
            tracing::Level::INFO => Self::Info,
            tracing::Level::DEBUG => Self::Debug,
            tracing::Level::TRACE => Self::Trace,
        }
    }
}

/// One `tracing` event the pipeline emitted inside the child, replayed by the worker inside
/// the job's span (so the line carries `upload_id`, `job_id` and `attempt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Its target (module path), e.g. `kiln_worker::imaging`.
    pub target: String,
    /// Its message.
    pub message: String,
    /// Its other fields, as `name=value` separated by spaces.
    pub fields: String,
}

/// Most bytes of one record's message or fields; longer text is cut.
const MAX_TEXT: usize = 2_000;

/// The child's subscriber: collects events at or above its level. Cloning shares the buffer.
#[derive(Clone)]
pub struct Collector {
    max: LevelFilter,
    records: Arc<Mutex<Vec<LogRecord>>>,
}

impl Collector {
    /// Installs a collector at `level` (`None`: nothing is collected) as this process's
    /// global subscriber, and returns a handle to drain it. Only the first call in a process
    /// installs; later handles then collect nothing.
    pub fn install(level: Option<LogLevel>) -> Self {
        let collector = Self {
            max: super::child::level_filter(level),
            records: Arc::default(),
        };
        let _ = tracing::subscriber::set_global_default(collector.clone());
        collector
    }

    /// The records collected since the last drain, oldest first.
    pub fn drain(&self) -> Vec<LogRecord> {
        std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let sep = if self.rest.is_empty() { "" } else { " " };
            let _ = write!(self.rest, "{sep}{}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let sep = if self.rest.is_empty() { "" } else { " " };
            let _ = write!(self.rest, "{sep}{}={value:?}", field.name());
        }
    }
}

impl Subscriber for Collector {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if records.len() < MAX_LOG_RECORDS {
            records.push(LogRecord {
                level: LogLevel::of(event.metadata().level()),
                target: event.metadata().target().to_owned(),
                message: cut(fields.message),
                fields: cut(fields.rest),
            });
        }
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Emits `record`, logged by decoder child `pid`, in the current span (see the module docs).
pub fn replay(record: &LogRecord, pid: u32) {
    let pipeline = record.target.starts_with("kiln_worker::imaging");
    macro_rules! emit {
        ($level:ident) => {
            if pipeline {
                tracing::$level!(
                    target: "kiln_worker::imaging",
                    decoder_pid = pid,
                    child_target = %record.target,
                    fields = %record.fields,
                    "{}",
                    record.message
                )
            } else {
                tracing::$level!(
                    target: "kiln_worker::jail::child",
                    decoder_pid = pid,
                    child_target = %record.target,
                    fields = %record.fields,
                    "{}",
                    record.message
                )
            }
        };
    }
    match record.level {
        LogLevel::Error => emit!(error),
        LogLevel::Warn => emit!(warn),
        LogLevel::Info => emit!(info),
        LogLevel::Debug => emit!(debug),
        LogLevel::Trace => emit!(trace),
    }
}

/// The most verbose level at which the current subscriber would record the pipeline's events
/// (target `kiln_worker::imaging`): what a child should collect. `None` when none would be.
pub fn wanted_level() -> Option<LogLevel> {
    use tracing::Level;
    if tracing::enabled!(target: "kiln_worker::imaging", Level::TRACE) {
        Some(LogLevel::Trace)
    } else if tracing::enabled!(target: "kiln_worker::imaging", Level::DEBUG) {
        Some(LogLevel::Debug)
    } else if tracing::enabled!(target: "kiln_worker::imaging", Level::INFO) {
        Some(LogLevel::Info)
    } else if tracing::enabled!(target: "kiln_worker::imaging", Level::WARN) {
        Some(LogLevel::Warn)
    } else if tracing::enabled!(target: "kiln_worker::imaging", Level::ERROR) {
        Some(LogLevel::Error)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_at_or_above_the_level_are_collected_with_their_fields() {
        let collector = Collector {
            max: LevelFilter::DEBUG,
            records: Arc::default(),
        };
        tracing::subscriber::with_default(collector.clone(), || {
            tracing::debug!(format = "jpeg", width = 4000u32, "decoded");
            tracing::trace!("too verbose");
            tracing::warn!(target: "other", "odd");
        });
        let records = collector.drain();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(records[0].message, "decoded");
        assert_eq!(records[0].fields, "format=jpeg width=4000");
        assert_eq!(records[0].level, LogLevel::Debug);
        assert_eq!(records[1].target, "other");
        assert!(collector.drain().is_empty());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let s = cut("é".repeat(MAX_TEXT));
        assert!(s.len() <= MAX_TEXT + '…'.len_utf8());
        assert!(s.ends_with('…'));
    }
}
