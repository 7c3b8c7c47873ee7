//! Get HTTP headers, from the CPython docs
//! (asyncio-stream.html#get-http-headers): a `HEAD` request over
//! `open_connection`, its answer read with `readline`.
//!
//! `cargo run --example http_headers -- http://example.com/path`

async fn print_http_headers(url: String) -> asyncio::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| asyncio::Error::value("only http:// URLs (no TLS yet)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (hostname, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse()?),
        None => (authority, 80),
    };
    let (reader, writer) = asyncio::open_connection(hostname, port).await?;

    let query = format!("HEAD {path} HTTP/1.0\r\nHost: {hostname}\r\n\r\n");
    writer.write(query.as_bytes())?;
    while let Some(line) = reader.next_line().await? {
        // latin-1, as the docs decode it
        let line: String = line.iter().map(|&b| b as char).collect();
        let line = line.trim_end();
        if !line.is_empty() {
            println!("HTTP header> {line}");
        }
    }
    // Ignore the body, close the socket
    writer.close();
    writer.wait_closed().await
}

fn main() -> asyncio::Result<()> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://example.com/".to_owned());
    asyncio::run(print_http_headers(url))
}
