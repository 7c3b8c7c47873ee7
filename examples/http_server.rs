//! A small HTTP/1.1 server on streams, handling keep-alive and pipelined
//! requests: each connection reads a request head with
//! `readuntil(b"\r\n\r\n")`, its body with `readexactly`, and answers in
//! order, so requests sent back to back without waiting are answered back
//! to back.
//!
//! `cargo run --example http_server -- 127.0.0.1:8080`, then
//! `curl http://127.0.0.1:8080/hello` or `curl -d 'some data' http://127.0.0.1:8080/echo`.
//! Serves until killed.

use asyncio::streams::{start_server, StreamReader, StreamWriter};
use asyncio::ErrorKind;

/// One parsed request.
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    body: asyncio::Bytes,
}

/// Reads the next request; `None` when the client closed the connection.
async fn read_request(reader: &StreamReader) -> asyncio::Result<Option<Request>> {
    let head = match reader.readuntil(b"\r\n\r\n").await {
        Ok(head) => head,
        // The client closed between requests.
        Err(e) if e.kind() == ErrorKind::IncompleteReadError && e.partial() == Some(&[][..]) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or("/").to_owned();
    let version = parts.next().unwrap_or("HTTP/1.0");
    let mut keep_alive = version == "HTTP/1.1";
    let mut length = 0;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().unwrap_or(0),
            "connection" => keep_alive = value.eq_ignore_ascii_case("keep-alive"),
            _ => {}
        }
    }
    let body = reader.readexactly(length).await?;
    Ok(Some(Request {
        method,
        path,
        keep_alive,
        body,
    }))
}

fn respond(
    writer: &StreamWriter,
    status: &str,
    body: &[u8],
    keep_alive: bool,
) -> asyncio::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    writer.writelines(&[head.as_bytes(), body])
}

async fn handle(reader: StreamReader, writer: StreamWriter) -> asyncio::Result<()> {
    while let Some(request) = read_request(&reader).await? {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/hello") => {
                respond(&writer, "200 OK", b"Hello, World!\n", request.keep_alive)?
            }
            ("POST", "/echo") => respond(&writer, "200 OK", &request.body, request.keep_alive)?,
            ("GET", path) => {
                let body = format!("path {path}\n");
                respond(&writer, "200 OK", body.as_bytes(), request.keep_alive)?
            }
            _ => respond(&writer, "405 Method Not Allowed", b"", request.keep_alive)?,
        }
        writer.drain().await?;
        if !request.keep_alive {
            break;
        }
    }
    writer.close();
    writer.wait_closed().await
}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let server = start_server(handle, host, port.parse()?).await?;
    for sock in server.sockets() {
        if let Some(addr) = sock.getsockname() {
            println!("Serving on {addr}");
        }
    }
    server.run(server.serve_forever()).await
}
