//! A hyper 1.x HTTP/1.1 client inside an asyncio program: a Tokio
//! `TcpStream`, hyper's connection driven by an asyncio task, the request
//! sent from the main task; prints the status line and the body.
//!
//! `cargo run --example hyper_client -- http://127.0.0.1:8080/sleep`
//! (against the `hyper_server` example, or any HTTP/1.1 server).

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let url: hyper::Uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/".to_owned())
        .parse()
        .map_err(asyncio::Error::custom)?;
    if url.scheme_str() != Some("http") {
        return Err(asyncio::Error::value("only http:// URLs"));
    }
    let host = url
        .host()
        .ok_or_else(|| asyncio::Error::value("the URL has no host"))?;
    let port = url.port_u16().unwrap_or(80);
    let authority = url.authority().map_or(host, |a| a.as_str());

    let stream = tokio::net::TcpStream::connect((host, port)).await?;
    let (mut sender, connection) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(asyncio::Error::custom)?;
    // hyper's connection future does the I/O; an asyncio task drives it
    // (no `Send` needed, unlike `tokio::spawn`).
    let connection =
        asyncio::create_task(async move { connection.await.map_err(asyncio::Error::custom) })?;

    let path = url.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(hyper::header::HOST, authority)
        .body(Empty::new())
        .map_err(asyncio::Error::custom)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(asyncio::Error::custom)?;
    println!("{:?} {}", response.version(), response.status());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(asyncio::Error::custom)?
        .to_bytes();
    print!("{}", String::from_utf8_lossy(&body));

    // Dropping the sender lets the connection close; its task then ends.
    drop(sender);
    connection.await
}
