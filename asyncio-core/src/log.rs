//! The `asyncio` logger (CPython's `asyncio.log.logger`).
//!
//! Reports go through `tracing` (target `"asyncio"`) when the program has a
//! subscriber. A program that set none still sees what CPython shows with
//! logging unconfigured: Python's last-resort handler prints records of
//! level WARNING and above to stderr as the bare message, and so does this.

use std::fmt;

use tracing::subscriber::NoSubscriber;

/// `true` when no `tracing` subscriber will receive events on this thread
/// (neither a global default nor a scoped one).
pub fn no_subscriber() -> bool {
    tracing::dispatcher::get_default(|d| d.is::<NoSubscriber>())
}

/// Python's `lastResort` handler: the message alone, on stderr.
fn last_resort(message: fmt::Arguments<'_>) {
    // `eprintln!` rather than a raw write: a test harness captures it.
    eprintln!("{message}");
}

/// `logger.error(...)`.
pub fn error(message: fmt::Arguments<'_>) {
    if no_subscriber() {
        last_resort(message);
    } else {
        tracing::error!(target: "asyncio", "{}", message);
    }
}

/// `logger.warning(...)`.
pub fn warning(message: fmt::Arguments<'_>) {
    if no_subscriber() {
        last_resort(message);
    } else {
        tracing::warn!(target: "asyncio", "{}", message);
    }
}

/// `logger.info(...)`: below the last-resort level, so only subscribers see it.
pub fn info(message: fmt::Arguments<'_>) {
    tracing::info!(target: "asyncio", "{}", message);
}

/// `logger.debug(...)`: only subscribers see it.
pub fn debug(message: fmt::Arguments<'_>) {
    tracing::debug!(target: "asyncio", "{}", message);
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_subscriber_is_detected_and_scoped_ones_are_seen() {
        assert!(super::no_subscriber());
        let scoped = tracing::subscriber::with_default(
            tracing::subscriber::NoSubscriber::new(),
            super::no_subscriber,
        );
        // A scoped `NoSubscriber` is still no subscriber.
        assert!(scoped);
    }
}
