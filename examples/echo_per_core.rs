//! An echo server on every core: `asyncio::run_per_core(n, …)` runs `n`
//! loops on `n` threads, each with its own `create_server(...,
//! reuse_port=True)` on the same port, and the kernel spreads the
//! connections between them.
//!
//! `cargo run --release --example echo_per_core -- 127.0.0.1:8888 2` serves
//! until killed (Ctrl-C stops every loop); each loop prints the
//! connections it takes unless `--quiet`.

use std::cell::OnceCell;
use std::rc::Rc;

use asyncio::{BaseProtocol, Protocol, Transport};

struct Echo {
    transport: OnceCell<Rc<dyn Transport>>,
}

impl BaseProtocol for Echo {}

impl Protocol for Echo {
    fn connection_made(self: &Rc<Self>, transport: Rc<dyn Transport>) -> asyncio::Result<()> {
        let _ = self.transport.set(transport);
        Ok(())
    }

    fn data_received(self: &Rc<Self>, data: &[u8]) -> asyncio::Result<()> {
        match self.transport.get() {
            Some(t) => t.write(data),
            None => Ok(()),
        }
    }
}

fn main() -> asyncio::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quiet = args.iter().any(|a| a == "--quiet");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let addr = positional
        .first()
        .map_or("127.0.0.1:8888", |s| s.as_str())
        .to_owned();
    let loops: usize = match positional.get(1) {
        Some(n) => n.parse()?,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| asyncio::Error::value("expected HOST:PORT"))?;
    let (host, port) = (host.to_owned(), port.parse::<u16>()?);
    if port == 0 {
        return Err(asyncio::Error::value(
            "give a port: every loop binds the same one",
        ));
    }
    asyncio::run_per_core(loops, move |index| {
        let host = host.clone();
        async move {
            let loop_ = asyncio::get_running_loop()?;
            let server = loop_
                .create_server(move || {
                    if !quiet {
                        println!("loop {index}: a connection");
                    }
                    Echo {
                        transport: OnceCell::new(),
                    }
                })
                .host(host)
                .port(port)
                .reuse_port(true)
                .await?;
            if let Some(addr) = server.sockets()[0].getsockname() {
                println!("loop {index}: serving on {addr}");
            }
            server.serve_forever().await
        }
    })?;
    Ok(())
}
