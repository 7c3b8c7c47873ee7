//! Formatting as Python prints things.

use std::panic::Location;

/// Where something was created, as CPython's debug-mode reprs print it:
/// `file:line` (`created at file:line`), without Rust's column.
pub(crate) fn py_location(location: &Location<'_>) -> String {
    format!("{}:{}", location.file(), location.line())
}

/// Python's `repr()` of a float: `1.0`, `0.5`, `1e-05`, `1e+16`, `inf`, `nan`.
pub fn py_float(x: f64) -> String {
    if x.is_nan() {
        return "nan".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    let abs = x.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Exponent form, with Python's explicit sign and two-digit exponent.
        let s = format!("{x:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = format!("{x}");
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

/// A number of seconds as CPython prints the value its caller passed, for
/// messages that print an argument given as `int` or `float` (such as
/// `shutdown_default_executor(timeout)`, which `asyncio.run` calls with the
/// int `THREAD_JOIN_TIMEOUT = 300`).
///
/// An `f64` cannot tell `1` from `1.0`, so integral values print as Python
/// prints an int (`300`, `1`, `0`) and the others as Python's float repr
/// (`0.05`). Integral values too large for an `f64` to count exactly, and
/// the infinities and NaN, keep the float form (`1e+16`, `inf`).
pub(crate) fn py_number(x: f64) -> String {
    if x.is_finite() && x.fract() == 0.0 && x.abs() < 1e16 {
        // `as` is exact here, and turns -0.0 into 0 as Python's int would be.
        (x as i64).to_string()
    } else {
        py_float(x)
    }
}

/// The path segments of a Rust type name, without generic arguments and
/// `<impl … for …>` blocks: `a::b::<impl x::Y for a::Z>::f::{{closure}}`
/// gives `["a", "b", "f", "{{closure}}"]`.
fn path_segments(type_name: &str) -> Vec<String> {
    let mut depth = 0usize;
    let mut kept = String::with_capacity(type_name.len());
    for c in type_name.chars() {
        match c {
            '<' => depth += 1,
            '>' if depth > 0 => depth -= 1,
            c if depth == 0 => kept.push(c),
            _ => {}
        }
    }
    kept.split("::")
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A callback's name as CPython prints a function's `__qualname__`: `boom`
/// for `my_crate::net::boom`, `Server.close` for a method, and
/// `main.<locals>.<closure>` for a closure defined in `main` (Python's
/// `main.<locals>.<lambda>`).
pub fn callable_name(type_name: &str) -> String {
    let segments = path_segments(type_name);
    let closures = segments
        .iter()
        .rev()
        .take_while(|s| **s == "{{closure}}")
        .count();
    let named = &segments[..segments.len() - closures];
    let Some(last) = named.last() else {
        return "<closure>".to_owned();
    };
    let mut name = match named.len().checked_sub(2).map(|i| &named[i]) {
        // A method: `Type.method`.
        Some(owner) if owner.starts_with(|c: char| c.is_ascii_uppercase()) => {
            format!("{owner}.{last}")
        }
        _ => last.clone(),
    };
    if closures > 0 {
        name.push_str(".<locals>.<closure>");
    }
    name
}

/// `true` if the type is a closure (its name ends in `{{closure}}`).
pub(crate) fn is_closure(type_name: &str) -> bool {
    type_name.ends_with("{{closure}}")
}

/// A callback as CPython's `_format_callback_source` prints it: `boom()`,
/// and for a closure also where it was made: `main.<locals>.<closure>() at
/// src/main.rs:12` (CPython prints a function's definition site; a Rust
/// function item has none to show, a closure is defined where it is passed).
pub fn callback_repr(type_name: &str, location: Option<&Location<'_>>) -> String {
    let name = callable_name(type_name);
    match location {
        Some(l) if is_closure(type_name) => format!("{name}() at {}", py_location(l)),
        _ => format!("{name}()"),
    }
}

/// A coroutine's name for task reprs (`coro=<main()>`): the `async fn`
/// that made it, or the function an `async` block is written in.
pub fn coroutine_name(type_name: &str) -> String {
    let name = callable_name(type_name);
    match name.strip_suffix(".<locals>.<closure>") {
        Some(f) => f.to_owned(),
        None => name,
    }
}

/// `reprlib.repr` of a value whose full repr is `full`: more than 30
/// characters are cut in the middle (`maxother`/`maxstring` = 30).
///
/// ```
/// use asyncio_core::format_helpers::reprlib_repr;
/// assert_eq!(reprlib_repr("4"), "4");
/// assert_eq!(
///     reprlib_repr(&format!("{:?}", "x".repeat(40))),
///     "\"xxxxxxxxxxxx...xxxxxxxxxxxxx\""
/// );
/// ```
pub fn reprlib_repr(full: &str) -> String {
    const MAX: usize = 30;
    let chars: Vec<char> = full.chars().collect();
    if chars.len() <= MAX {
        return full.to_owned();
    }
    let i = (MAX - 3) / 2;
    let j = MAX - 3 - i;
    let mut out: String = chars[..i].iter().collect();
    out.push_str("...");
    out.extend(&chars[chars.len() - j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::{callable_name, callback_repr, coroutine_name, py_float, py_number};

    fn boom() {}

    #[test]
    fn callables_are_named_as_python_qualnames() {
        assert_eq!(callable_name(std::any::type_name_of_val(&boom)), "boom");
        let closure = || {};
        assert_eq!(
            callable_name(std::any::type_name_of_val(&closure)),
            "callables_are_named_as_python_qualnames.<locals>.<closure>"
        );
        assert_eq!(callable_name("a::b::Server::close"), "Server.close");
        assert_eq!(
            callable_name("a::<impl a::T for a::X>::run::{{closure}}::{{closure}}"),
            "run.<locals>.<closure>"
        );
        assert_eq!(callable_name("core::future::ready::Ready<i32>"), "Ready");
        assert_eq!(callable_name("a::f<alloc::vec::Vec<u8>>"), "f");
        let here = std::panic::Location::caller();
        assert_eq!(
            callback_repr(std::any::type_name_of_val(&closure), Some(here)),
            format!(
                "callables_are_named_as_python_qualnames.<locals>.<closure>() at {}:{}",
                here.file(),
                here.line()
            )
        );
        assert_eq!(
            callback_repr(std::any::type_name_of_val(&boom), Some(here)),
            "boom()"
        );
        let coro = async {};
        assert_eq!(
            coroutine_name(std::any::type_name_of_val(&coro)),
            "callables_are_named_as_python_qualnames"
        );
    }

    #[test]
    fn integral_numbers_print_as_python_ints() {
        assert_eq!(py_number(300.0), "300");
        assert_eq!(py_number(1.0), "1");
        assert_eq!(py_number(0.0), "0");
        assert_eq!(py_number(-0.0), "0");
        assert_eq!(py_number(-2.0), "-2");
        assert_eq!(py_number(0.05), "0.05");
        assert_eq!(py_number(1.5), "1.5");
        assert_eq!(py_number(1e-5), "1e-05");
        assert_eq!(py_number(1e16), "1e+16");
        assert_eq!(py_number(f64::INFINITY), "inf");
    }

    #[test]
    fn matches_python_repr() {
        assert_eq!(py_float(1.0), "1.0");
        assert_eq!(py_float(0.1), "0.1");
        assert_eq!(py_float(123.456), "123.456");
        assert_eq!(py_float(1e-5), "1e-05");
        assert_eq!(py_float(1e16), "1e+16");
        assert_eq!(py_float(-2.5e-7), "-2.5e-07");
        assert_eq!(py_float(0.0), "0.0");
        assert_eq!(py_float(f64::INFINITY), "inf");
    }
}
