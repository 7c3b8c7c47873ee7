// Python's "Non-thread-safe operation invoked on an event loop other than
// the current one" is a compile error here: a loop cannot leave its thread.
fn main() {
    let loop_ = asyncio::new_event_loop().unwrap();
    std::thread::spawn(move || {
        let _ = loop_.call_soon(|| ());
    });
}
