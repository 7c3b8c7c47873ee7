//! The context passed to exception handlers (Python's `context` dict).

use std::collections::BTreeMap;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

use crate::base_events::EventLoop;
use crate::events::Handle;
use crate::exceptions::{py_str_repr, Error};
use crate::tasks::AnyTask;

/// An exception handler as stored by the loop (`loop.set_exception_handler`).
pub type ExceptionHandler = Rc<dyn Fn(&EventLoop, &ExceptionContext)>;

/// A value in an [`ExceptionContext`] besides `message` and `exception`.
#[derive(Clone)]
pub enum ContextValue {
    /// A task (`task` key).
    Task(AnyTask),
    /// A callback handle (`handle` key).
    Handle(Handle),
    /// Where an object was created (`source_traceback`, `handle_traceback`).
    Location(&'static Location<'static>),
    /// Any other object, as its `repr()` (`future`, `protocol`, `transport`, …).
    Text(String),
}

impl fmt::Debug for ContextValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ContextValue::Task(t) => fmt::Debug::fmt(t, f),
            ContextValue::Handle(h) => fmt::Debug::fmt(h, f),
            ContextValue::Location(l) => write!(f, "File \"{}\", line {}", l.file(), l.line()),
            ContextValue::Text(s) => f.write_str(s),
        }
    }
}

/// What went wrong, for an exception handler: Python's context dict with its
/// keys `message`, `exception`, `future`, `task`, `handle`, `protocol`,
/// `transport`, `socket`, `asyncgen`, `source_traceback`, `handle_traceback`.
///
/// ```
/// use asyncio_core::{ContextValue, Error, ExceptionContext};
///
/// let mut ctx = ExceptionContext::new("Exception in callback cb()");
/// ctx.exception = Some(Error::value("bad"));
/// ctx.set("transport", ContextValue::Text("<_SelectorSocketTransport fd=7>".into()));
/// assert_eq!(
///     ctx.render(),
///     "Exception in callback cb()\ntransport: <_SelectorSocketTransport fd=7>\nValueError: bad"
/// );
/// ```
#[derive(Clone)]
pub struct ExceptionContext {
    /// The `message` key.
    pub message: String,
    /// The `exception` key.
    pub exception: Option<Error>,
    values: BTreeMap<String, ContextValue>,
}

impl ExceptionContext {
    /// A context with `message` and nothing else.
    pub fn new(message: impl Into<String>) -> ExceptionContext {
        ExceptionContext {
            message: message.into(),
            exception: None,
            values: BTreeMap::new(),
        }
    }

    /// Sets `key` (any key but `message` and `exception`, which are fields).
    pub fn set(&mut self, key: impl Into<String>, value: ContextValue) -> &mut Self {
        self.values.insert(key.into(), value);
        self
    }

    /// Builder form of [`set`](ExceptionContext::set).
    pub fn with(mut self, key: impl Into<String>, value: ContextValue) -> Self {
        self.set(key, value);
        self
    }

    /// Builder form setting the `exception` key.
    pub fn with_exception(mut self, exception: Error) -> Self {
        self.exception = Some(exception);
        self
    }

    /// The value of `key`, for keys other than `message` and `exception`.
    pub fn get(&self, key: &str) -> Option<&ContextValue> {
        self.values.get(key)
    }

    /// The task under the `task` key.
    pub fn task(&self) -> Option<&AnyTask> {
        match self.values.get("task") {
            Some(ContextValue::Task(t)) => Some(t),
            _ => None,
        }
    }

    /// The keys other than `message` and `exception`, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// The text the default handler logs: the message, `key: value` lines in
    /// sorted key order, and the error's `Kind: message` line.
    pub fn render(&self) -> String {
        let mut lines = Vec::with_capacity(self.values.len() + 2);
        lines.push(if self.message.is_empty() {
            "Unhandled exception in event loop".to_owned()
        } else {
            self.message.clone()
        });
        for (key, value) in &self.values {
            let value = match (key.as_str(), value) {
                ("source_traceback", ContextValue::Location(l)) => format!(
                    "Object created at (most recent call last):\n  File \"{}\", line {}",
                    l.file(),
                    l.line()
                ),
                ("handle_traceback", ContextValue::Location(l)) => format!(
                    "Handle created at (most recent call last):\n  File \"{}\", line {}",
                    l.file(),
                    l.line()
                ),
                (_, v) => format!("{v:?}"),
            };
            lines.push(format!("{key}: {value}"));
        }
        if let Some(e) = &self.exception {
            lines.push(e.traceback_line());
        }
        lines.join("\n")
    }

    /// Python's `repr()` of the context dict.
    pub fn repr(&self) -> String {
        let mut parts = vec![format!("'message': {}", py_str_repr(&self.message))];
        if let Some(e) = &self.exception {
            parts.push(format!("'exception': {e:?}"));
        }
        for (k, v) in &self.values {
            parts.push(format!("{}: {v:?}", py_str_repr(k)));
        }
        format!("{{{}}}", parts.join(", "))
    }
}

impl fmt::Debug for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr())
    }
}
