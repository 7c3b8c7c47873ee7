//! A hyper 1.x HTTP/1.1 server inside an asyncio program: a Tokio
//! `TcpListener` accepts, hyper serves each connection in an asyncio task
//! (`asyncio::create_task`), and the service's futures await asyncio
//! coroutines (`GET /sleep` answers after `asyncio::sleep(0.05)`).
//!
//! `cargo run --example hyper_server -- 127.0.0.1:8080` serves until killed;
//! try `curl http://127.0.0.1:8080/` and `curl http://127.0.0.1:8080/sleep`,
//! or the `hyper_client` example.

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

/// The service: hyper polls this future inside the connection's asyncio
/// task, so asyncio coroutines can be awaited here.
async fn answer(request: Request<Incoming>) -> asyncio::Result<Response<Full<Bytes>>> {
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "Hello from hyper inside asyncio!\n".to_owned(),
        ),
        (&Method::GET, "/sleep") => {
            asyncio::sleep(0.05).await?;
            let task = asyncio::current_task()?
                .map(|t| t.get_name())
                .ok_or_else(|| asyncio::Error::runtime("no current task"))?;
            text(
                StatusCode::OK,
                format!("Slept 0.05 s in asyncio task {task}\n"),
            )
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found\n".to_owned()),
    })
}

/// Serves one connection until the client closes it.
async fn serve(stream: tokio::net::TcpStream) -> asyncio::Result<()> {
    let served = http1::Builder::new()
        // hyper's timeouts (header_read_timeout) run on tokio::time, which
        // works on the loop's runtime.
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service_fn(answer))
        .await;
    if let Err(e) = served {
        eprintln!("connection error: {e}");
    }
    Ok(())
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "Serving on {}",
        asyncio::Address::from(listener.local_addr()?)
    );
    loop {
        // `cancellable` makes the Tokio accept an asyncio await point: the
        // Ctrl-C that cancels the main task ends the wait at once (without
        // it, the cancellation would wait for the next connection).
        let (stream, _peer) = asyncio::cancellable(listener.accept()).await??;
        asyncio::create_task(serve(stream))?;
    }
}
