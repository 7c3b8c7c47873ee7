//! CPython 3.13 refuses `reuse_address=` for datagram endpoints (it set
//! `SO_REUSEADDR` on UDP sockets, letting another process take the port);
//! here the option does not exist.

struct P;
impl asyncio::BaseProtocol for P {}
impl asyncio::DatagramProtocol for P {}

#[asyncio::main]
async fn main() -> asyncio::Result<()> {
    let loop_ = asyncio::get_running_loop()?;
    let _ = loop_
        .create_datagram_endpoint(|| P)
        .local_addr(("127.0.0.1", 0))
        .reuse_address(true)
        .await?;
    Ok(())
}
