//! Captures orch's warnings in a test process: a small process-wide `tracing` subscriber that
//! keeps every warning and error whose target starts with `orch`, as text.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One captured event.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its level (only WARN and ERROR are kept).
    pub level: Level,
    /// Its target, e.g. `orch::engine`.
    pub target: String,
    /// The message, then ` name=value` for every other field.
    pub text: String,
}

struct Capture {
    lines: Arc<Mutex<Vec<Line>>>,
    next_span: AtomicU64,
}

struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.insert_str(0, value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        *m.level() <= Level::WARN && m.target().starts_with("orch")
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::WARN)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(self.next_span.fetch_add(1, Ordering::Relaxed))
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, e: &Event<'_>) {
        let mut text = Text(String::new());
        e.record(&mut text);
        let line = Line { level: *e.metadata().level(), target: e.metadata().target().to_owned(), text: text.0 };
        if let Ok(mut l) = self.lines.lock() {
            l.push(line);
        }
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn lines() -> &'static Arc<Mutex<Vec<Line>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<Line>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let capture = Capture { lines: lines.clone(), next_span: AtomicU64::new(1) };
        if tracing::subscriber::set_global_default(capture).is_err() {
            // Another subscriber owns this process: nothing gets captured, and tests that
            // look for a warning fail saying so rather than here.
            eprintln!("orch_testkit::logs: a global tracing subscriber was already installed");
        }
        lines
    })
}

/// Installs the subscriber for the whole test binary (once; later calls do nothing). Call it
/// before the code whose warnings you want.
pub fn install() {
    lines();
}

/// Everything captured so far. Tests running in parallel share it: filter on something only
/// your test logs (its queue name, a target no other test in the binary uses).
pub fn captured() -> Vec<Line> {
    lines().lock().map(|l| l.clone()).unwrap_or_default()
}

/// The warnings a queue adapter logged (target `orch::queue`) about the queue named `queue`,
/// told apart from other tests' queues by their `queue=` field.
pub fn queue_warnings(queue: &str) -> Vec<Line> {
    let ours = format!("queue={queue}");
    captured()
        .into_iter()
        .filter(|l| l.level == Level::WARN && l.target == "orch::queue" && l.text.contains(&ours))
        .collect()
}
