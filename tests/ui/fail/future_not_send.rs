// Futures and tasks are bound to their loop's thread too.
fn main() {
    let loop_ = asyncio::new_event_loop().unwrap();
    let fut = asyncio::Future::<i32>::new(&loop_);
    std::thread::spawn(move || {
        let _ = fut.set_result(1);
    });
}
