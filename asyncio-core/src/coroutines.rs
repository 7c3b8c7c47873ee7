//! Debug-mode switch (CPython's `coroutines._is_debug_mode`).

/// The environment variable that turns debug mode on for new loops
/// (Python's `PYTHONASYNCIODEBUG`).
pub const DEBUG_ENV_VAR: &str = "ASYNCIO_DEBUG";

/// `true` when [`DEBUG_ENV_VAR`] is set to a non-empty value other than `0`.
pub fn debug_from_env() -> bool {
    match std::env::var_os(DEBUG_ENV_VAR) {
        Some(v) => !v.is_empty() && v != "0",
        None => false,
    }
}
