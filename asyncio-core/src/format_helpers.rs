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

#[cfg(test)]
mod tests {
    use super::{py_float, py_number};

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
