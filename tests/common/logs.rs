//! Capturing `tracing` output in a test (shared by `common` and
//! `net_common`).

use std::fmt;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One `tracing` event.
#[derive(Clone, Debug)]
pub struct LogRecord {
    pub level: Level,
    pub target: String,
    pub message: String,
}

#[derive(Clone, Default)]
struct CaptureLayer {
    records: Arc<Mutex<Vec<LogRecord>>>,
}

struct MessageVisitor(String);

impl Visit for MessageVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_owned();
        }
    }
}

impl<S: Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor(String::new());
        event.record(&mut visitor);
        self.records.lock().unwrap().push(LogRecord {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: visitor.0,
        });
    }
}

/// Runs `f` with a subscriber (for this thread only) that records every
/// `tracing` event, and returns `f`'s value and the events.
pub fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<LogRecord>) {
    let layer = CaptureLayer::default();
    let records = layer.records.clone();
    let subscriber = tracing_subscriber::registry().with(layer);
    let value = tracing::subscriber::with_default(subscriber, f);
    let records = records.lock().unwrap().clone();
    (value, records)
}
