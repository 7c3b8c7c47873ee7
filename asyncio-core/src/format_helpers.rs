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

#[cfg(test)]
mod tests {
    use super::py_float;

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
