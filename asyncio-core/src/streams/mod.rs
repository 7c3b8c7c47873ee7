//! Streams (CPython's `streams.py`): `open_connection`, `start_server` and
//! their Unix-socket variants, giving [`StreamReader`] / [`StreamWriter`]
//! pairs over the loop's transports.
//!
//! ```no_run
//! # async fn f() -> asyncio_core::Result<()> {
//! use asyncio_core::streams::open_connection;
//! let (reader, writer) = open_connection("127.0.0.1", 8888).await?;
//! writer.write(b"Hello World!")?;
//! writer.drain().await?;
//! let data = reader.read(100).await?;
//! writer.close();
//! writer.wait_closed().await?;
//! # Ok(()) }
//! ```

mod protocol;
mod reader;
mod writer;

use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::path::PathBuf;
use std::rc::Rc;

pub(crate) use protocol::FlowControl;
pub use protocol::{ClientConnected, ClientStart, StreamReaderProtocol, StreamWriterProtocol};
pub use reader::{StreamReader, DEFAULT_LIMIT};
pub use writer::StreamWriter;

use crate::base_events::{
    awaitable_via_into_future, connection_setters, server_setters, tls_timeouts,
    unix_connection_setters, unix_server_setters, ConnectionOptions, LocalBoxFuture, Server,
    ServerOptions, UnixConnectionOptions, UnixServerOptions,
};
use crate::events::get_running_loop;
use crate::exceptions::Result;
use crate::futures::{Awaitable, Future};
use crate::EventLoop;

/// A `client_connected_cb`: a coroutine function `|reader, writer| async
/// move { … }` (run as a task; an error it ends with is reported as
/// "Unhandled exception in client_connected_cb" and closes the
/// connection), or a plain function `|reader, writer| -> Result<()>`.
/// `M` tells the two apart ([`Coroutine`] or [`Plain`]) and is inferred.
pub trait ClientConnectedCallback<M>: 'static {
    /// The callback, shared by the server's connections.
    fn into_callback(self) -> ClientConnected;
}

/// Marks a coroutine `client_connected_cb` (see [`ClientConnectedCallback`]).
#[derive(Debug)]
pub enum Coroutine {}

/// Marks a plain-function `client_connected_cb`.
#[derive(Debug)]
pub enum Plain {}

impl<F, Fut> ClientConnectedCallback<Coroutine> for F
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: StdFuture<Output = Result<()>> + 'static,
{
    fn into_callback(self) -> ClientConnected {
        Rc::new(move |reader, writer| ClientStart::Coroutine(Box::pin(self(reader, writer))))
    }
}

impl<F> ClientConnectedCallback<Plain> for F
where
    F: Fn(StreamReader, StreamWriter) -> Result<()> + 'static,
{
    fn into_callback(self) -> ClientConnected {
        Rc::new(move |reader, writer| ClientStart::Done(self(reader, writer)))
    }
}

/// `await asyncio.open_connection(host, port, limit=…, **kwds)`: a TCP
/// connection as `(StreamReader, StreamWriter)`. Every keyword of
/// `create_connection` is a builder method, plus [`limit`](OpenConnection::limit);
/// for Python's `sock=s` alone, write `open_connection("", 0).sock(s)`.
pub fn open_connection(host: impl Into<String>, port: u16) -> OpenConnection {
    let options = ConnectionOptions {
        host: Some(host.into()),
        port: Some(port),
        ..ConnectionOptions::default()
    };
    OpenConnection {
        options,
        limit: DEFAULT_LIMIT,
    }
}

/// `await asyncio.start_server(client_connected_cb, host, port, limit=…,
/// **kwds)`: a TCP server calling `client_connected_cb(reader, writer)` for
/// each connection. Every keyword of `create_server` is a builder method;
/// `host` `""` is Python's `None` (every interface), and for `sock=s`
/// alone write `start_server(cb, "", 0).sock(s)`.
///
/// ```no_run
/// # async fn f() -> asyncio_core::Result<()> {
/// use asyncio_core::streams::{start_server, StreamReader, StreamWriter};
/// let server = start_server(
///     |reader: StreamReader, writer: StreamWriter| async move {
///         let data = reader.read(100).await?;
///         writer.write(&data)?;
///         writer.drain().await?;
///         writer.close();
///         writer.wait_closed().await
///     },
///     "127.0.0.1",
///     8888,
/// )
/// .await?;
/// server.serve_forever().await?;
/// # Ok(()) }
/// ```
pub fn start_server<C, M>(client_connected_cb: C, host: impl Into<String>, port: u16) -> StartServer
where
    C: ClientConnectedCallback<M>,
{
    let host = host.into();
    let options = ServerOptions {
        hosts: (!host.is_empty()).then(|| vec![host]),
        port: Some(port),
        ..ServerOptions::default()
    };
    StartServer {
        callback: client_connected_cb.into_callback(),
        options,
        limit: DEFAULT_LIMIT,
    }
}

/// `await asyncio.open_unix_connection(path, limit=…, **kwds)`.
pub fn open_unix_connection(path: impl Into<PathBuf>) -> OpenUnixConnection {
    let options = UnixConnectionOptions {
        path: Some(path.into()),
        ..UnixConnectionOptions::default()
    };
    OpenUnixConnection {
        options,
        limit: DEFAULT_LIMIT,
    }
}

/// `await asyncio.start_unix_server(client_connected_cb, path, limit=…,
/// **kwds)`.
pub fn start_unix_server<C, M>(client_connected_cb: C, path: impl Into<PathBuf>) -> StartUnixServer
where
    C: ClientConnectedCallback<M>,
{
    let options = UnixServerOptions {
        path: Some(path.into()),
        ..UnixServerOptions::default()
    };
    StartUnixServer {
        callback: client_connected_cb.into_callback(),
        options,
        limit: DEFAULT_LIMIT,
    }
}

/// The builder of [`open_connection`]; await it for `(reader, writer)`.
#[derive(Debug)]
pub struct OpenConnection {
    options: ConnectionOptions,
    limit: usize,
}

/// The builder of [`start_server`]; await it for the [`Server`].
pub struct StartServer {
    callback: ClientConnected,
    options: ServerOptions,
    limit: usize,
}

/// The builder of [`open_unix_connection`]; await it for `(reader, writer)`.
#[derive(Debug)]
pub struct OpenUnixConnection {
    options: UnixConnectionOptions,
    limit: usize,
}

/// The builder of [`start_unix_server`]; await it for the [`Server`].
pub struct StartUnixServer {
    callback: ClientConnected,
    options: UnixServerOptions,
    limit: usize,
}

impl fmt::Debug for StartServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartServer")
            .field("options", &self.options)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for StartUnixServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartUnixServer")
            .field("options", &self.options)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

macro_rules! limit_setter {
    ($($ty:ty),*) => {$(
        impl $ty {
            /// `limit=`: the reader's buffer limit (default 64 KiB): the
            /// longest line `readline` accepts, and half the buffered data
            /// at which reading pauses.
            pub fn limit(mut self, limit: usize) -> Self {
                self.limit = limit;
                self
            }
        }
    )*};
}

limit_setter!(
    OpenConnection,
    StartServer,
    OpenUnixConnection,
    StartUnixServer
);
connection_setters!([] OpenConnection);
server_setters!([] StartServer);
unix_connection_setters!([] OpenUnixConnection);
unix_server_setters!([] StartUnixServer);
tls_timeouts!([] OpenConnection, [] StartServer, [] OpenUnixConnection, [] StartUnixServer);

/// A reader, its protocol, and the factory handing the protocol to the loop.
fn client_pair(
    loop_: &crate::EventLoop,
    limit: usize,
) -> Result<(StreamReader, Rc<StreamReaderProtocol>)> {
    let reader = StreamReader::new(loop_, limit)?;
    let protocol = StreamReaderProtocol::new(loop_, Some(&reader), None);
    Ok((reader, protocol))
}

/// Makes a server's per-connection protocols.
fn server_factory(
    loop_: &crate::EventLoop,
    limit: usize,
    callback: ClientConnected,
) -> Result<impl Fn() -> Rc<StreamReaderProtocol> + 'static> {
    // Checked once, as CPython's first StreamReader would.
    StreamReader::new(loop_, limit)?;
    let l = loop_.non_owning();
    Ok(move || {
        let reader = StreamReader::with_limit(&l, limit);
        StreamReaderProtocol::new(&l, Some(&reader), Some(callback.clone()))
    })
}

/// What awaiting an `open_*` builder yields.
pub type StreamPair = (StreamReader, StreamWriter);

awaitable_via_into_future!(impl<> OpenConnection => StreamPair);
awaitable_via_into_future!(impl<> OpenUnixConnection => StreamPair);
awaitable_via_into_future!(impl<> StartServer => Server);
awaitable_via_into_future!(impl<> StartUnixServer => Server);

impl IntoFuture for OpenConnection {
    type Output = Result<StreamPair>;
    type IntoFuture = LocalBoxFuture<'static, Result<StreamPair>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let loop_ = get_running_loop()?;
            let (reader, protocol) = client_pair(&loop_, self.limit)?;
            let p = protocol.clone();
            let mut options = self.options;
            if options.sock.is_some()
                && options.host.as_deref() == Some("")
                && options.port == Some(0)
            {
                // `open_connection("", 0).sock(s)`: Python's `sock=s` alone.
                options.host = None;
                options.port = None;
            }
            let (transport, _) = loop_
                .create_connection(move || p)
                .with_options(options)
                .await?;
            let writer = StreamWriter::new(transport, protocol, Some(reader.clone()), &loop_);
            Ok((reader, writer))
        })
    }
}

impl IntoFuture for OpenUnixConnection {
    type Output = Result<StreamPair>;
    type IntoFuture = LocalBoxFuture<'static, Result<StreamPair>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let loop_ = get_running_loop()?;
            let (reader, protocol) = client_pair(&loop_, self.limit)?;
            let p = protocol.clone();
            let (transport, _) = loop_
                .create_unix_connection(move || p)
                .with_options(self.options)
                .await?;
            let writer = StreamWriter::new(transport, protocol, Some(reader.clone()), &loop_);
            Ok((reader, writer))
        })
    }
}

impl IntoFuture for StartServer {
    type Output = Result<Server>;
    type IntoFuture = LocalBoxFuture<'static, Result<Server>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let loop_ = get_running_loop()?;
            let factory = server_factory(&loop_, self.limit, self.callback)?;
            let mut options = self.options;
            if options.sock.is_some() && options.hosts.is_none() && options.port == Some(0) {
                // `start_server(cb, "", 0).sock(s)`: Python's `sock=s` alone.
                options.port = None;
            }
            loop_.create_server(factory).with_options(options).await
        })
    }
}

impl IntoFuture for StartUnixServer {
    type Output = Result<Server>;
    type IntoFuture = LocalBoxFuture<'static, Result<Server>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let loop_ = get_running_loop()?;
            let factory = server_factory(&loop_, self.limit, self.callback)?;
            loop_
                .create_unix_server(factory)
                .with_options(self.options)
                .await
        })
    }
}
