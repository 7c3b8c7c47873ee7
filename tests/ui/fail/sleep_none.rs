// CPython: `asyncio.sleep(None)` is a TypeError. `None` is only a timeout.
fn main() {
    let _ = asyncio::sleep(None);
}
