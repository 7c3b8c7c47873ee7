//! The error type: every Python exception asyncio raises is a kind of [`Error`].
//!
//! Python code reports failures by raising exceptions; the Rust port reports them
//! as `Err(Error)`. An [`Error`] carries a kind named after the Python exception
//! ([`ErrorKind::CancelledError`], [`ErrorKind::RuntimeError`], …) and CPython's
//! message. It is cheap to clone (one result reaches many awaiters), `Send + Sync`,
//! and wraps user errors so that `?` works inside tasks.

use std::any::Any;
use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::sync::Arc;

/// `Result<T, asyncio::Error>`, the return type of everything fallible here.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which Python exception an [`Error`] stands for.
///
/// Variants are named after the Python exception classes so that a port can
/// match on them the way Python code uses `except CancelledError:`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// `asyncio.CancelledError`: the operation was cancelled.
    CancelledError,
    /// `asyncio.InvalidStateError`: a future or task is in the wrong state.
    InvalidStateError,
    /// `TimeoutError` (`asyncio.TimeoutError` is an alias since 3.11).
    TimeoutError,
    /// `asyncio.IncompleteReadError`: a stream ended before enough bytes arrived.
    IncompleteReadError,
    /// `asyncio.LimitOverrunError`: a buffer limit was reached while looking for a separator.
    LimitOverrunError,
    /// `asyncio.SendfileNotAvailableError`: `sendfile` is not available for the given arguments.
    SendfileNotAvailableError,
    /// `asyncio.BrokenBarrierError`.
    BrokenBarrierError,
    /// `asyncio.QueueEmpty`.
    QueueEmpty,
    /// `asyncio.QueueFull`.
    QueueFull,
    /// `asyncio.QueueShutDown` (3.13): putting into, or getting from, a
    /// queue that was shut down.
    QueueShutDown,
    /// `RuntimeError`: misuse of the API at run time (e.g. `"Event loop is closed"`).
    RuntimeError,
    /// `ValueError`: an argument has the right type but a wrong value.
    ValueError,
    /// `TypeError`: an argument combination is not allowed.
    TypeError,
    /// `OSError` (and its subclasses such as `ConnectionRefusedError`); carries the `io::Error`.
    OSError,
    /// `GeneratorExit`: an async generator is being closed.
    GeneratorExit,
    /// `StopAsyncIteration`: an async generator is exhausted.
    StopAsyncIteration,
    /// `ExceptionGroup`: several errors at once (see [`Error::exceptions`]).
    ExceptionGroup,
    /// `BaseExceptionGroup`: a group holding at least one error that is not
    /// an `Exception` (`KeyboardInterrupt`, `SystemExit`, `CancelledError`, …).
    BaseExceptionGroup,
    /// `KeyboardInterrupt`: escapes the loop (`run_forever`,
    /// `run_until_complete`, `asyncio::run`) instead of going to the
    /// exception handler.
    KeyboardInterrupt,
    /// `SystemExit`: escapes the loop like `KeyboardInterrupt`.
    SystemExit,
    /// `RecursionError` (a `RuntimeError` in Python).
    RecursionError,
    /// `LookupError`: an unset context variable without a default.
    LookupError,
    /// `AttributeError`: the object has no such method (the write half of a
    /// read pipe's transport, reached through a protocol's `Transport`).
    AttributeError,
    /// A Rust panic caught in a task or callback.
    Panic,
    /// Any other error: a user error wrapped by `?` or [`Error::new`].
    Exception,
}

impl ErrorKind {
    /// The Python class name of this kind (`"CancelledError"`, `"ValueError"`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::CancelledError => "CancelledError",
            ErrorKind::InvalidStateError => "InvalidStateError",
            ErrorKind::TimeoutError => "TimeoutError",
            ErrorKind::IncompleteReadError => "IncompleteReadError",
            ErrorKind::LimitOverrunError => "LimitOverrunError",
            ErrorKind::SendfileNotAvailableError => "SendfileNotAvailableError",
            ErrorKind::BrokenBarrierError => "BrokenBarrierError",
            ErrorKind::QueueEmpty => "QueueEmpty",
            ErrorKind::QueueFull => "QueueFull",
            ErrorKind::QueueShutDown => "QueueShutDown",
            ErrorKind::RuntimeError => "RuntimeError",
            ErrorKind::ValueError => "ValueError",
            ErrorKind::TypeError => "TypeError",
            ErrorKind::OSError => "OSError",
            ErrorKind::GeneratorExit => "GeneratorExit",
            ErrorKind::StopAsyncIteration => "StopAsyncIteration",
            ErrorKind::ExceptionGroup => "ExceptionGroup",
            ErrorKind::BaseExceptionGroup => "BaseExceptionGroup",
            ErrorKind::KeyboardInterrupt => "KeyboardInterrupt",
            ErrorKind::SystemExit => "SystemExit",
            ErrorKind::RecursionError => "RecursionError",
            ErrorKind::LookupError => "LookupError",
            ErrorKind::AttributeError => "AttributeError",
            ErrorKind::Panic => "Panic",
            ErrorKind::Exception => "Exception",
        }
    }
}

impl ErrorKind {
    /// `true` for the kinds that are not `Exception`s in Python but
    /// `BaseException`s: `CancelledError`, `KeyboardInterrupt`,
    /// `SystemExit`, `GeneratorExit`, `BaseExceptionGroup`.
    pub fn is_base_exception(self) -> bool {
        matches!(
            self,
            ErrorKind::CancelledError
                | ErrorKind::KeyboardInterrupt
                | ErrorKind::SystemExit
                | ErrorKind::GeneratorExit
                | ErrorKind::BaseExceptionGroup
        )
    }

    /// `true` for `KeyboardInterrupt` and `SystemExit`, which the loop lets
    /// escape (CPython re-raises them wherever it catches `BaseException`).
    pub fn is_exit(self) -> bool {
        matches!(self, ErrorKind::KeyboardInterrupt | ErrorKind::SystemExit)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An asyncio error: a Python exception kind, its message, and what caused it.
///
/// `Display` prints the message, as `str(exc)` does in Python; `Debug` prints
/// Python's `repr(exc)`, e.g. `CancelledError('stop')`.
///
/// ```
/// use asyncio_core::{Error, ErrorKind};
///
/// let err = Error::runtime("Event loop is closed");
/// assert_eq!(err.kind(), ErrorKind::RuntimeError);
/// assert_eq!(err.to_string(), "Event loop is closed");
/// assert_eq!(format!("{err:?}"), "RuntimeError('Event loop is closed')");
///
/// // `?` wraps I/O errors as OSError, keeping errno.
/// let io = std::io::Error::from_raw_os_error(111);
/// let err = Error::from(io);
/// assert_eq!(err.kind(), ErrorKind::OSError);
/// assert_eq!(err.raw_os_error(), Some(111));
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: ErrorKind,
    /// `None` for exceptions created without arguments (`CancelledError()`).
    message: Option<Cow<'static, str>>,
    source: Option<Source>,
    group: Vec<Error>,
    /// An `OSError` subclass with its own errno space (`socket.gaierror`).
    os_detail: Option<(&'static str, i32)>,
    /// The class name of a user error wrapped by [`Error::custom`].
    custom_name: Option<&'static str>,
    /// The attributes of the streams' errors.
    stream: Option<StreamDetail>,
    /// `__cause__` (`raise … from cause`).
    cause: Option<Error>,
    /// `__context__`: the error being handled when this one was raised.
    context: Option<Error>,
}

/// `IncompleteReadError.partial`/`expected` and `LimitOverrunError.consumed`.
#[derive(Clone)]
enum StreamDetail {
    Incomplete {
        partial: Arc<[u8]>,
        expected: Option<usize>,
    },
    LimitOverrun {
        consumed: usize,
    },
}

#[derive(Clone)]
enum Source {
    Io(Arc<io::Error>),
    Other(Arc<dyn StdError + Send + Sync>),
}

impl Error {
    fn build(
        kind: ErrorKind,
        message: Option<Cow<'static, str>>,
        source: Option<Source>,
        group: Vec<Error>,
    ) -> Error {
        Error {
            inner: Arc::new(Inner {
                kind,
                message,
                source,
                group,
                os_detail: None,
                custom_name: None,
                stream: None,
                cause: None,
                context: None,
            }),
        }
    }

    fn rebuild(&self, change: impl FnOnce(&mut Inner)) -> Error {
        let inner = &self.inner;
        let mut copy = Inner {
            kind: inner.kind,
            message: inner.message.clone(),
            source: inner.source.clone(),
            group: inner.group.clone(),
            os_detail: inner.os_detail,
            custom_name: inner.custom_name,
            stream: inner.stream.clone(),
            cause: inner.cause.clone(),
            context: inner.context.clone(),
        };
        change(&mut copy);
        Error {
            inner: Arc::new(copy),
        }
    }

    /// This error with `cause` as its `__cause__` (`raise self from cause`);
    /// the cause is also its `__context__`, as when raised in an `except`
    /// block. [`source`](StdError::source) walks the chain.
    ///
    /// ```
    /// use asyncio_core::Error;
    /// let e = Error::timeout().with_cause(Error::cancelled(None));
    /// assert!(e.cause().unwrap().is_cancelled());
    /// assert!(std::error::Error::source(&e).is_some());
    /// ```
    pub fn with_cause(self, cause: Error) -> Error {
        self.rebuild(|i| {
            i.context = Some(cause.clone());
            i.cause = Some(cause);
        })
    }

    /// This error with `context` as its `__context__` (the error that was
    /// being handled when this one was raised).
    pub fn with_context(self, context: Error) -> Error {
        self.rebuild(|i| i.context = Some(context))
    }

    /// `__cause__`: the error this one was raised from.
    pub fn cause(&self) -> Option<&Error> {
        self.inner.cause.as_ref()
    }

    /// `__context__`: the error being handled when this one was raised.
    pub fn context(&self) -> Option<&Error> {
        self.inner.context.as_ref()
    }

    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Error {
        Error::build(kind, Some(message.into()), None, Vec::new())
    }

    /// An error of `kind` without a message (`ValueError()` in Python).
    pub fn bare(kind: ErrorKind) -> Error {
        Error::build(kind, None, None, Vec::new())
    }

    /// Wraps any error as an [`ErrorKind::Exception`] (or `OSError` for
    /// `io::Error`). Reports name it by its type, as Python's
    /// `type(e).__name__`: `Error::custom(MyError)` prints as `MyError: …`.
    pub fn custom<E>(error: E) -> Error
    where
        E: StdError + Send + Sync + 'static,
    {
        let any: &dyn Any = &error;
        if any.is::<io::Error>() {
            let boxed: Box<dyn Any> = Box::new(error);
            if let Ok(io) = boxed.downcast::<io::Error>() {
                return Error::from(*io);
            }
            unreachable!("checked with Any::is");
        }
        if let Some(err) = any.downcast_ref::<Error>() {
            return err.clone();
        }
        let message = error.to_string();
        Error::build(
            ErrorKind::Exception,
            Some(message.into()),
            Some(Source::Other(Arc::new(error))),
            Vec::new(),
        )
        .rebuild(|i| i.custom_name = Some(short_type_name::<E>()))
    }

    /// `CancelledError(msg)`; `None` gives `CancelledError()`.
    pub fn cancelled(message: Option<&str>) -> Error {
        Error::build(
            ErrorKind::CancelledError,
            message.map(|m| Cow::Owned(m.to_owned())),
            None,
            Vec::new(),
        )
    }

    /// `InvalidStateError(message)`.
    pub fn invalid_state(message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::InvalidStateError, message)
    }

    /// `TimeoutError()`.
    pub fn timeout() -> Error {
        Error::bare(ErrorKind::TimeoutError)
    }

    /// `RuntimeError(message)`.
    pub fn runtime(message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::RuntimeError, message)
    }

    /// `ValueError(message)`.
    pub fn value(message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::ValueError, message)
    }

    /// `TypeError(message)`.
    pub fn type_error(message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::TypeError, message)
    }

    /// An `OSError` carrying `error` and a message of its own, as in
    /// `OSError(errno, "Connect call failed ('127.0.0.1', 1)")`.
    pub fn os_with_message(error: io::Error, message: impl Into<Cow<'static, str>>) -> Error {
        Error::build(
            ErrorKind::OSError,
            Some(message.into()),
            Some(Source::Io(Arc::new(error))),
            Vec::new(),
        )
    }

    /// An `OSError` subclass raised with a message only, as
    /// `ConnectionResetError('Connection lost')`: no errno, as in Python.
    ///
    /// ```
    /// let e = asyncio_core::Error::os_subclass("ConnectionResetError", "Connection lost");
    /// assert_eq!(e.python_name(), "ConnectionResetError");
    /// assert_eq!(e.to_string(), "Connection lost");
    /// assert_eq!(e.raw_os_error(), None);
    /// ```
    pub fn os_subclass(name: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
        Error::new(ErrorKind::OSError, message).rebuild(|i| i.custom_name = Some(name))
    }

    /// The same error shown as the Python subclass `name` of its kind
    /// (`NotImplementedError` for a `RuntimeError`, `SSLError` for an
    /// `OSError` …).
    pub fn named(self, name: &'static str) -> Error {
        self.rebuild(|i| i.custom_name = Some(name))
    }

    /// `socket.gaierror(code, message)`: an `OSError` with a `getaddrinfo()`
    /// error code (`EAI_*`, negative on Linux) as its errno.
    pub fn gaierror(code: i32, message: impl Into<Cow<'static, str>>) -> Error {
        Error::build(ErrorKind::OSError, Some(message.into()), None, Vec::new())
            .rebuild(|i| i.os_detail = Some(("gaierror", code)))
    }

    /// An exception group (`BaseExceptionGroup(message, errors)`): an
    /// `ExceptionGroup` when every error is an `Exception`, else a
    /// `BaseExceptionGroup`, as Python's constructor decides.
    pub fn group(message: impl Into<Cow<'static, str>>, errors: Vec<Error>) -> Error {
        let kind = if errors.iter().any(|e| e.kind().is_base_exception()) {
            ErrorKind::BaseExceptionGroup
        } else {
            ErrorKind::ExceptionGroup
        };
        Error::build(kind, Some(message.into()), None, errors)
    }

    /// `true` for `ExceptionGroup` and `BaseExceptionGroup`.
    pub fn is_group(&self) -> bool {
        matches!(
            self.inner.kind,
            ErrorKind::ExceptionGroup | ErrorKind::BaseExceptionGroup
        )
    }

    /// An error for a caught panic, with the panic's message.
    pub fn panic(payload: &(dyn Any + Send)) -> Error {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "Box<dyn Any>".to_owned()
        };
        Error::new(ErrorKind::Panic, message)
    }

    /// Which Python exception this is.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }

    /// The message (`str(exc)`); empty when the exception has none.
    pub fn message(&self) -> &str {
        self.inner.message.as_deref().unwrap_or("")
    }

    /// The message, or `None` when the exception was created without one.
    pub fn message_opt(&self) -> Option<&str> {
        self.inner.message.as_deref()
    }

    /// Python's class name, refined for `OSError` by errno
    /// (`ConnectionRefusedError`, `FileNotFoundError`, …) as CPython does.
    pub fn python_name(&self) -> &'static str {
        if let Some((name, _)) = self.inner.os_detail {
            return name;
        }
        if let Some(name) = self.inner.custom_name {
            return name;
        }
        if self.inner.kind == ErrorKind::OSError {
            if let Some(errno) = self.raw_os_error() {
                return os_error_name(errno);
            }
        }
        self.inner.kind.name()
    }

    /// `true` for `CancelledError`.
    pub fn is_cancelled(&self) -> bool {
        self.inner.kind == ErrorKind::CancelledError
    }

    /// `true` for `TimeoutError`.
    pub fn is_timeout(&self) -> bool {
        self.inner.kind == ErrorKind::TimeoutError
    }

    /// `asyncio.IncompleteReadError(partial, expected)`: a stream ended
    /// after `partial` bytes, before `expected` (`None`: before a separator).
    ///
    /// ```
    /// let e = asyncio_core::Error::incomplete_read(b"abc".to_vec(), Some(5));
    /// assert_eq!(e.to_string(), "3 bytes read on a total of 5 expected bytes");
    /// assert_eq!(e.partial(), Some(&b"abc"[..]));
    /// assert_eq!(e.expected(), Some(5));
    /// ```
    pub fn incomplete_read(partial: Vec<u8>, expected: Option<usize>) -> Error {
        let expected_text = expected.map_or("undefined".to_owned(), |n| n.to_string());
        let message = format!(
            "{} bytes read on a total of {expected_text} expected bytes",
            partial.len()
        );
        Error::new(ErrorKind::IncompleteReadError, message).rebuild(|i| {
            i.stream = Some(StreamDetail::Incomplete {
                partial: partial.into(),
                expected,
            })
        })
    }

    /// `asyncio.LimitOverrunError(message, consumed)`: a separator search
    /// went past the stream's limit; `consumed` bytes may be read.
    pub fn limit_overrun(message: impl Into<Cow<'static, str>>, consumed: usize) -> Error {
        Error::new(ErrorKind::LimitOverrunError, message)
            .rebuild(|i| i.stream = Some(StreamDetail::LimitOverrun { consumed }))
    }

    /// `IncompleteReadError.partial`: the bytes read before the end.
    pub fn partial(&self) -> Option<&[u8]> {
        match &self.inner.stream {
            Some(StreamDetail::Incomplete { partial, .. }) => Some(partial),
            _ => None,
        }
    }

    /// `IncompleteReadError.expected` (`None` also when not that error).
    pub fn expected(&self) -> Option<usize> {
        match &self.inner.stream {
            Some(StreamDetail::Incomplete { expected, .. }) => *expected,
            _ => None,
        }
    }

    /// `LimitOverrunError.consumed`.
    pub fn consumed(&self) -> Option<usize> {
        match &self.inner.stream {
            Some(StreamDetail::LimitOverrun { consumed }) => Some(*consumed),
            _ => None,
        }
    }

    /// The errno of an `OSError`, if it has one.
    pub fn raw_os_error(&self) -> Option<i32> {
        if let Some((_, code)) = self.inner.os_detail {
            return Some(code);
        }
        match &self.inner.source {
            Some(Source::Io(e)) => e.raw_os_error(),
            _ => None,
        }
    }

    /// The `io::Error` inside an `OSError`.
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.inner.source {
            Some(Source::Io(e)) => Some(e),
            _ => None,
        }
    }

    /// The errors of an exception group (empty for other kinds).
    pub fn exceptions(&self) -> &[Error] {
        &self.inner.group
    }

    /// The user error wrapped by [`Error::custom`] or `?`, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        match &self.inner.source {
            Some(Source::Other(e)) => {
                let e: &(dyn StdError + 'static) = &**e;
                e.downcast_ref::<E>()
            }
            Some(Source::Io(e)) => {
                let e: &(dyn StdError + 'static) = &**e;
                e.downcast_ref::<E>()
            }
            None => None,
        }
    }

    /// `true` if both handles point at the same error object (Python's `is`).
    pub fn ptr_eq(&self, other: &Error) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The last line of a Python traceback for this error: `ValueError: bad value`.
    pub fn traceback_line(&self) -> String {
        let text = self.to_string();
        if text.is_empty() {
            self.python_name().to_owned()
        } else {
            format!("{}: {text}", self.python_name())
        }
    }
}

fn os_error_name(errno: i32) -> &'static str {
    // The errno → subclass table of CPython's Objects/exceptions.c (Linux values).
    match errno {
        11 | 114 | 115 => "BlockingIOError",
        10 => "ChildProcessError",
        32 | 108 => "BrokenPipeError",
        103 => "ConnectionAbortedError",
        111 => "ConnectionRefusedError",
        104 => "ConnectionResetError",
        17 => "FileExistsError",
        2 => "FileNotFoundError",
        21 => "IsADirectoryError",
        20 => "NotADirectoryError",
        4 => "InterruptedError",
        1 | 13 => "PermissionError",
        3 => "ProcessLookupError",
        110 => "TimeoutError",
        _ => "OSError",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((_, code)) = self.inner.os_detail {
            return write!(f, "[Errno {code}] {}", self.message());
        }
        if self.inner.kind == ErrorKind::OSError && self.inner.message.is_none() {
            if let Some(Source::Io(e)) = &self.inner.source {
                return match e.raw_os_error() {
                    Some(errno) => write!(f, "[Errno {errno}] {}", strerror(e)),
                    None => write!(f, "{e}"),
                };
            }
        }
        if self.inner.kind == ErrorKind::OSError {
            if let (Some(Source::Io(e)), Some(m)) = (&self.inner.source, &self.inner.message) {
                if let Some(errno) = e.raw_os_error() {
                    return write!(f, "[Errno {errno}] {m}");
                }
            }
        }
        if self.is_group() {
            let n = self.inner.group.len();
            return write!(
                f,
                "{} ({n} sub-exception{})",
                self.message(),
                if n == 1 { "" } else { "s" }
            );
        }
        f.write_str(self.message())
    }
}

/// The OS's description of an `io::Error` without Rust's " (os error N)" suffix.
pub(crate) fn strerror(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.python_name();
        if let Some((_, code)) = self.inner.os_detail {
            return write!(f, "{name}({code}, {})", py_str_repr(self.message()));
        }
        if self.inner.kind == ErrorKind::OSError {
            if let Some(Source::Io(e)) = &self.inner.source {
                if let Some(errno) = e.raw_os_error() {
                    let msg = match &self.inner.message {
                        Some(m) => m.to_string(),
                        None => strerror(e),
                    };
                    return write!(f, "{name}({errno}, {})", py_str_repr(&msg));
                }
            }
        }
        if self.is_group() {
            write!(f, "{name}({}, [", py_str_repr(self.message()))?;
            for (i, e) in self.inner.group.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{e:?}")?;
            }
            return f.write_str("])");
        }
        match &self.inner.message {
            Some(m) => write!(f, "{name}({})", py_str_repr(m)),
            None => write!(f, "{name}()"),
        }
    }
}

/// Python's `repr()` of a `str`: single quotes unless the text holds one.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

impl StdError for Error {
    /// The wrapped error (`io::Error`, a user error), else `__cause__`,
    /// else `__context__`.
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner.source {
            Some(Source::Io(e)) => Some(&**e),
            Some(Source::Other(e)) => Some(&**e),
            None => self
                .inner
                .cause
                .as_ref()
                .or(self.inner.context.as_ref())
                .map(|e| e as &(dyn StdError + 'static)),
        }
    }
}

/// A type's name without its path and generic arguments
/// (`my_crate::net::ParseError<u8>` → `ParseError`), as Python's
/// `type(e).__name__`.
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        if let Some(inner) = error.get_ref() {
            if let Some(err) = inner.downcast_ref::<Error>() {
                return err.clone();
            }
        }
        if error.kind() == io::ErrorKind::TimedOut && error.raw_os_error().is_none() {
            return Error::timeout();
        }
        Error::build(
            ErrorKind::OSError,
            None,
            Some(Source::Io(Arc::new(error))),
            Vec::new(),
        )
    }
}

impl From<Error> for io::Error {
    fn from(error: Error) -> io::Error {
        if let Some(Source::Io(e)) = &error.inner.source {
            if let Some(errno) = e.raw_os_error() {
                return io::Error::from_raw_os_error(errno);
            }
            if error.inner.message.is_none() {
                return io::Error::new(e.kind(), error);
            }
        }
        let kind = match error.kind() {
            ErrorKind::TimeoutError => io::ErrorKind::TimedOut,
            ErrorKind::ValueError | ErrorKind::TypeError => io::ErrorKind::InvalidInput,
            ErrorKind::IncompleteReadError => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, error)
    }
}

impl From<Box<dyn StdError + Send + Sync>> for Error {
    fn from(error: Box<dyn StdError + Send + Sync>) -> Error {
        let message = error.to_string();
        Error::build(
            ErrorKind::Exception,
            Some(message.into()),
            Some(Source::Other(Arc::from(error))),
            Vec::new(),
        )
    }
}

impl From<std::convert::Infallible> for Error {
    fn from(never: std::convert::Infallible) -> Error {
        match never {}
    }
}

macro_rules! from_value_errors {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(error: $ty) -> Error {
                let message = error.to_string();
                Error::build(
                    ErrorKind::ValueError,
                    Some(message.into()),
                    Some(Source::Other(Arc::new(error))),
                    Vec::new(),
                )
            }
        }
    )*};
}

// The std errors Python reports as ValueError (int("x"), bytes.decode(), …).
from_value_errors!(
    std::num::ParseIntError,
    std::num::ParseFloatError,
    std::num::TryFromIntError,
    std::str::ParseBoolError,
    std::str::Utf8Error,
    std::string::FromUtf8Error,
    std::net::AddrParseError,
    std::char::ParseCharError,
);

impl From<fmt::Error> for Error {
    fn from(error: fmt::Error) -> Error {
        Error::custom(error)
    }
}

impl From<std::time::SystemTimeError> for Error {
    fn from(error: std::time::SystemTimeError) -> Error {
        Error::custom(error)
    }
}

impl From<std::sync::mpsc::RecvError> for Error {
    fn from(error: std::sync::mpsc::RecvError) -> Error {
        Error::custom(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Error>();
    }

    #[test]
    fn reprs_follow_python() {
        assert_eq!(format!("{:?}", Error::cancelled(None)), "CancelledError()");
        assert_eq!(
            format!("{:?}", Error::cancelled(Some("bye"))),
            "CancelledError('bye')"
        );
        assert_eq!(
            format!("{:?}", Error::value("it's")),
            "ValueError(\"it's\")"
        );
        let refused = Error::from(io::Error::from_raw_os_error(111));
        assert_eq!(refused.python_name(), "ConnectionRefusedError");
        assert_eq!(refused.to_string(), "[Errno 111] Connection refused");
        assert_eq!(
            format!("{refused:?}"),
            "ConnectionRefusedError(111, 'Connection refused')"
        );
        assert_eq!(Error::timeout().traceback_line(), "TimeoutError");
    }

    #[test]
    fn question_mark_wraps_std_errors() {
        fn parse() -> Result<i32> {
            Ok("x".parse::<i32>()?)
        }
        let err = parse().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ValueError);
        assert_eq!(err.message(), "invalid digit found in string");
        assert!(err.downcast_ref::<std::num::ParseIntError>().is_some());
    }

    #[test]
    fn custom_errors_round_trip() {
        #[derive(Debug)]
        struct Mine;
        impl fmt::Display for Mine {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("mine")
            }
        }
        impl StdError for Mine {}
        let err = Error::custom(Mine);
        assert_eq!(err.kind(), ErrorKind::Exception);
        assert_eq!(err.message(), "mine");
        assert!(err.downcast_ref::<Mine>().is_some());
        // Wrapping an asyncio error keeps it.
        let inner = Error::runtime("x");
        assert!(Error::custom(inner.clone()).ptr_eq(&inner));
        // And through io::Error too.
        let io: io::Error = inner.clone().into();
        assert!(Error::from(io).ptr_eq(&inner));
    }

    #[test]
    fn gaierror_is_an_os_error_with_its_own_errno() {
        let e = Error::gaierror(-2, "Name or service not known");
        assert_eq!(e.kind(), ErrorKind::OSError);
        assert_eq!(e.python_name(), "gaierror");
        assert_eq!(e.raw_os_error(), Some(-2));
        assert_eq!(e.to_string(), "[Errno -2] Name or service not known");
        assert_eq!(
            format!("{e:?}"),
            "gaierror(-2, 'Name or service not known')"
        );
    }

    #[test]
    fn groups_display_count() {
        let g = Error::group(
            "unhandled errors in a TaskGroup",
            vec![Error::value("a"), Error::runtime("b")],
        );
        assert_eq!(
            g.to_string(),
            "unhandled errors in a TaskGroup (2 sub-exceptions)"
        );
        assert_eq!(g.exceptions().len(), 2);
        assert_eq!(
            format!("{g:?}"),
            "ExceptionGroup('unhandled errors in a TaskGroup', [ValueError('a'), RuntimeError('b')])"
        );
    }
}
