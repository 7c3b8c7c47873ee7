//! `asyncio.Server`: what `create_server` returns (CPython's
//! `base_events.Server`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::IntoFuture;
use std::rc::{Rc, Weak};

use crate::base_events::network::LocalBoxFuture;
use crate::base_events::EventLoop;
use crate::exceptions::{Error, Result};
use crate::transports::{Transport, TransportSocket};
use crate::Future;

/// A listening socket of a server, as a loop implementation provides it.
pub trait Listener {
    /// Starts accepting connections (`listen(backlog)` and reading).
    fn start_serving(&self, server: &Server) -> Result<()>;
    /// Stops accepting and closes the listening socket.
    fn stop_serving(&self);
    /// The listening socket.
    fn socket(&self) -> TransportSocket;
}

struct Inner {
    loop_: EventLoop,
    listeners: RefCell<Option<Vec<Box<dyn Listener>>>>,
    clients: RefCell<Vec<(u64, Weak<dyn Transport>)>>,
    next_client: Cell<u64>,
    waiters: RefCell<Option<Vec<Future<()>>>>,
    serving: Cell<bool>,
    serving_forever_fut: RefCell<Option<Future<()>>>,
}

/// A server (Python's `asyncio.Server`): its listening sockets and the
/// connections they accepted.
///
/// `close()` stops listening and leaves the connections open;
/// `wait_closed()` returns once the server is closed and the last
/// connection is gone; [`run`](Server::run) is `async with server:`.
#[derive(Clone)]
pub struct Server {
    inner: Rc<Inner>,
}

/// A connection's membership in its server, kept by the transport until
/// `connection_lost`.
#[derive(Debug)]
pub struct ServerClient {
    server: Server,
    id: u64,
}

impl ServerClient {
    /// Leaves the server (`Server._detach`); the last one out of a closed
    /// server wakes `wait_closed()`.
    pub fn detach(self) {
        self.server.detach(self.id);
    }
}

impl Server {
    /// A server over `listeners` (for loop implementations).
    pub fn new(loop_: &EventLoop, listeners: Vec<Box<dyn Listener>>) -> Server {
        Server {
            inner: Rc::new(Inner {
                loop_: loop_.non_owning(),
                listeners: RefCell::new(Some(listeners)),
                clients: RefCell::new(Vec::new()),
                next_client: Cell::new(1),
                waiters: RefCell::new(Some(Vec::new())),
                serving: Cell::new(false),
                serving_forever_fut: RefCell::new(None),
            }),
        }
    }

    /// Records an accepted connection (`Server._attach`).
    pub fn attach(&self, transport: Weak<dyn Transport>) -> ServerClient {
        let id = self.inner.next_client.get();
        self.inner.next_client.set(id + 1);
        self.inner.clients.borrow_mut().push((id, transport));
        ServerClient {
            server: self.clone(),
            id,
        }
    }

    fn detach(&self, id: u64) {
        let empty = {
            let mut clients = self.inner.clients.borrow_mut();
            clients.retain(|(cid, _)| *cid != id);
            clients.is_empty()
        };
        if empty && self.inner.listeners.borrow().is_none() {
            self.wakeup();
        }
    }

    fn wakeup(&self) {
        let waiters = self.inner.waiters.borrow_mut().take();
        for w in waiters.into_iter().flatten() {
            if !w.done() {
                let _ = w.set_result(());
            }
        }
    }

    /// The loop the server runs on.
    pub fn get_loop(&self) -> EventLoop {
        self.inner.loop_.clone()
    }

    /// `true` while accepting connections.
    pub fn is_serving(&self) -> bool {
        self.inner.serving.get()
    }

    /// The listening sockets (empty once closed).
    pub fn sockets(&self) -> Vec<TransportSocket> {
        match &*self.inner.listeners.borrow() {
            Some(ls) => ls.iter().map(|l| l.socket()).collect(),
            None => Vec::new(),
        }
    }

    /// Number of connections still open.
    pub fn active_count(&self) -> usize {
        self.inner.clients.borrow().len()
    }

    /// Starts accepting if not already (idempotent).
    pub fn start_serving_now(&self) -> Result<()> {
        if self.inner.serving.get() {
            return Ok(());
        }
        let listeners = self.inner.listeners.borrow();
        let Some(listeners) = listeners.as_ref() else {
            return Ok(());
        };
        self.inner.serving.set(true);
        for l in listeners {
            l.start_serving(self)?;
        }
        Ok(())
    }

    /// `await server.start_serving()`: starts accepting and lets one loop
    /// iteration pass so that the sockets are listening.
    pub async fn start_serving(&self) -> Result<()> {
        self.start_serving_now()?;
        crate::sleep(0).await
    }

    /// Stops listening; connections stay open. Idempotent.
    pub fn close(&self) {
        let listeners = self.inner.listeners.borrow_mut().take();
        let Some(listeners) = listeners else {
            return;
        };
        for l in &listeners {
            l.stop_serving();
        }
        drop(listeners);
        self.inner.serving.set(false);
        let fut = self.inner.serving_forever_fut.borrow_mut().take();
        if let Some(fut) = fut {
            if !fut.done() {
                fut.cancel();
            }
        }
        if self.inner.clients.borrow().is_empty() {
            self.wakeup();
        }
    }

    fn live_clients(&self) -> Vec<Rc<dyn Transport>> {
        self.inner
            .clients
            .borrow()
            .iter()
            .filter_map(|(_, t)| t.upgrade())
            .collect()
    }

    /// Closes every connection (buffered data is flushed first).
    pub fn close_clients(&self) {
        for t in self.live_clients() {
            t.close();
        }
    }

    /// Aborts every connection (buffered data is dropped).
    pub fn abort_clients(&self) {
        for t in self.live_clients() {
            t.abort();
        }
    }

    /// Serves until cancelled; cancellation closes the server and waits for
    /// it (`serve_forever()`).
    ///
    /// Errors: `"server <…> is already being awaited on serve_forever()"`,
    /// `"server <…> is closed"`.
    pub async fn serve_forever(&self) -> Result<()> {
        if self.inner.serving_forever_fut.borrow().is_some() {
            return Err(Error::runtime(format!(
                "server {self:?} is already being awaited on serve_forever()"
            )));
        }
        if self.inner.listeners.borrow().is_none() {
            return Err(Error::runtime(format!("server {self:?} is closed")));
        }
        self.start_serving_now()?;
        let fut = Future::<()>::new(&self.inner.loop_);
        *self.inner.serving_forever_fut.borrow_mut() = Some(fut.clone());
        let outcome = (&fut).await;
        let outcome = match outcome {
            Err(e) if e.is_cancelled() => {
                self.close();
                let _ = self.wait_closed().await;
                Err(e)
            }
            other => other,
        };
        self.inner.serving_forever_fut.borrow_mut().take();
        outcome
    }

    /// Waits until the server is closed and all its connections are gone.
    pub async fn wait_closed(&self) -> Result<()> {
        let waiter = {
            let mut waiters = self.inner.waiters.borrow_mut();
            let Some(waiters) = waiters.as_mut() else {
                return Ok(());
            };
            let w = Future::<()>::new(&self.inner.loop_);
            waiters.push(w.clone());
            w
        };
        waiter.await
    }

    /// `async with server: body`: runs `body`, then closes the server and
    /// waits for it.
    pub async fn run<T, B>(&self, body: B) -> Result<T>
    where
        B: IntoFuture<Output = Result<T>>,
    {
        let outcome = body.into_future().await;
        self.close();
        self.wait_closed().await?;
        outcome
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Python shows `sockets` as a tuple.
        let socks: Vec<String> = self.sockets().iter().map(|s| format!("{s:?}")).collect();
        match socks.len() {
            0 => write!(f, "<Server sockets=()>"),
            1 => write!(f, "<Server sockets=({},)>", socks[0]),
            _ => write!(f, "<Server sockets=({})>", socks.join(", ")),
        }
    }
}

/// Python's `AbstractServer`: the server interface, for code generic over
/// server kinds. Its async methods return boxed futures so that the trait
/// stays object-safe (`&dyn AbstractServer`).
pub trait AbstractServer {
    /// Stops listening (see [`Server::close`]).
    fn close(&self);
    /// Closes every connection of this server (see [`Server::close_clients`]).
    fn close_clients(&self);
    /// Aborts every connection of this server (see [`Server::abort_clients`]).
    fn abort_clients(&self);
    /// The loop.
    fn get_loop(&self) -> EventLoop;
    /// `true` while serving.
    fn is_serving(&self) -> bool;
    /// Starts accepting connections (see [`Server::start_serving`]).
    fn start_serving(&self) -> LocalBoxFuture<'_, Result<()>>;
    /// Serves until cancelled (see [`Server::serve_forever`]).
    fn serve_forever(&self) -> LocalBoxFuture<'_, Result<()>>;
    /// Waits until closed with no connection left (see [`Server::wait_closed`]).
    fn wait_closed(&self) -> LocalBoxFuture<'_, Result<()>>;
}

impl AbstractServer for Server {
    fn close(&self) {
        Server::close(self)
    }

    fn close_clients(&self) {
        Server::close_clients(self)
    }

    fn abort_clients(&self) {
        Server::abort_clients(self)
    }

    fn get_loop(&self) -> EventLoop {
        Server::get_loop(self)
    }

    fn is_serving(&self) -> bool {
        Server::is_serving(self)
    }

    fn start_serving(&self) -> LocalBoxFuture<'_, Result<()>> {
        Box::pin(Server::start_serving(self))
    }

    fn serve_forever(&self) -> LocalBoxFuture<'_, Result<()>> {
        Box::pin(Server::serve_forever(self))
    }

    fn wait_closed(&self) -> LocalBoxFuture<'_, Result<()>> {
        Box::pin(Server::wait_closed(self))
    }
}
