//! Running one test alone in a child process: descriptor counts are
//! process-wide, and the other tests of the binary run in parallel.

/// Set in the child to the name of the test it runs.
const CHILD: &str = "ASYNCIO_TEST_CHILD";

/// Runs the test `name` alone in a child process (this test binary) and
/// fails if it fails there; returns `true` in the child, where the caller
/// then does the work.
pub fn in_child(name: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(name) {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// The number of open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
