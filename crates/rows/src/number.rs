//! Decimal numbers to the nearest f64, fast, for the readers of rows.
//!
//! [`decimal`] reads a number in JSON's grammar (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`)
//! and returns the f64 nearest its value, bit for bit what the standard library's parser (and
//! serde_json with `float_roundtrip`) gives. The digits are gathered while the grammar is
//! checked; when they fit in 53 bits and the power of ten is at most 22, both are exact doubles
//! and one multiplication or division rounds correctly (Clinger's fast path), which covers sensor
//! readings such as `2208.8556` or `-0.0259`. Anything else goes to the standard library's parser.

/// Reads a number at `b[p..]`: its nearest f64 and the position after it; `None` when the text
/// there is not a JSON number.
#[inline(always)]
pub(crate) fn decimal(b: &[u8], p: usize) -> Option<(f64, usize)> {
    let start = p;
    let negative = b.get(start) == Some(&b'-');
    let int_start = start + usize::from(negative);
    let (mut mantissa, mut p) = digits(b, int_start, 0);
    let int_digits = p - int_start;
    // At least one integer digit, and no leading zero before another digit.
    if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut frac_digits = 0;
    if b.get(p) == Some(&b'.') {
        let (m, end) = digits(b, p + 1, mantissa);
        frac_digits = end - (p + 1);
        if frac_digits == 0 {
            return None;
        }
        (mantissa, p) = (m, end);
    }
    let mut exponent = -(frac_digits as i64);
    if let Some(b'e' | b'E') = b.get(p) {
        p += 1;
        let sign = match b.get(p) {
            Some(b'-') => -1,
            _ => 1,
        };
        if let Some(b'-' | b'+') = b.get(p) {
            p += 1;
        }
        let first = p;
        let mut e = 0i64;
        while let Some(&d @ b'0'..=b'9') = b.get(p) {
            e = (e * 10 + i64::from(d - b'0')).min(1 << 20);
            p += 1;
        }
        if p == first {
            return None;
        }
        exponent += sign * e;
    }
    // At most 19 digits cannot overflow 64 bits.
    if int_digits + frac_digits <= 19 && mantissa <= 1 << 53 && (-22..=22).contains(&exponent) {
        let m = mantissa as f64;
        let pow = POW10[exponent.unsigned_abs() as usize];
        let x = if exponent < 0 { m / pow } else { m * pow };
        return Some((if negative { -x } else { x }, p));
    }
    // Checked above to be ASCII digits, signs, '.' and 'e'.
    let text = std::str::from_utf8(&b[start..p]).ok()?;
    Some((text.parse::<f64>().ok()?, p))
}

/// A short plain number at the start of `w`, `-?(0|[1-9][0-9]*)(\.[0-9]+)?` with at most 19
/// digits and no exponent, when Clinger's fast path applies: its nearest f64 (as [`decimal`]
/// gives it) and its length. `None` for anything else, which [`decimal`] then reads: a longer
/// number, an exponent, text that is not a number. The byte after the number is not looked at
/// beyond checking that it cannot continue one.
#[inline(always)]
pub(crate) fn short_number(w: &[u8; 32]) -> Option<(f64, usize)> {
    let negative = w[0] == b'-';
    let int_start = usize::from(negative);
    let (mut m, mut i) = window_digits(w, int_start, 21, 0);
    let int_digits = i - int_start;
    if int_digits == 0 || (int_digits > 1 && w[int_start] == b'0') {
        return None;
    }
    let mut frac_digits = 0;
    if w[i] == b'.' {
        let first = i + 1;
        (m, i) = window_digits(w, first, 31, m);
        frac_digits = i - first;
        if frac_digits == 0 {
            return None;
        }
    }
    let after = w[i];
    if after.is_ascii_digit()
        || after | 0x20 == b'e'
        || int_digits + frac_digits > 19
        || m > 1 << 53
    {
        return None;
    }
    // At most 19 digits, so no wrap, and a fraction of at most 18 (after a digit): exact powers.
    let x = m as f64 / POW10[frac_digits];
    Some((if negative { -x } else { x }, i))
}

/// [`digits`] within a window, stopping at `limit` (< 32) at the latest: no bounds checks.
/// Four digits a step with one check of the limit for the four, then one at a time.
#[inline(always)]
fn window_digits(w: &[u8; 32], mut i: usize, limit: usize, mut m: u64) -> (u64, usize) {
    while i + 4 <= limit {
        let four: &[u8; 4] = w[i..i + 4].try_into().unwrap_or(&[0; 4]);
        for (k, &c) in four.iter().enumerate() {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return (m, i + k);
            }
            m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        }
        i += 4;
    }
    while i < limit {
        let d = w[i].wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        i += 1;
    }
    (m, i)
}

/// Reads decimal digits from `b[p..]` onto `m` (wrapping past 19 digits, which the caller
/// checks); returns the new value and the position after the last digit.
#[inline(always)]
fn digits(b: &[u8], mut p: usize, mut m: u64) -> (u64, usize) {
    while let Some(&d) = b.get(p) {
        let d = d.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        m = m.wrapping_mul(10).wrapping_add(u64::from(d));
        p += 1;
    }
    (m, p)
}

/// Powers of ten exactly representable as f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` followed by `after`, padded to a window as the JSON reader passes it.
    fn window(text: &str, after: u8) -> [u8; 32] {
        let mut w = [b' '; 32];
        let n = text.len().min(31);
        w[..n].copy_from_slice(&text.as_bytes()[..n]);
        w[n] = after;
        w
    }

    #[test]
    fn short_numbers_read_as_decimal_reads_them_or_not_at_all() {
        let fixed = [
            "0",
            "-0",
            "7",
            "3030.93",
            "-0.0259",
            "00",
            "01",
            "-",
            "1.",
            ".5",
            "1e3",
            "1.5E2",
            "9007199254740993",
            "1234567890123456789",
            "12345678901234567890",
            "0.000000000000000001",
            "1.0000000000000000001",
            "99999999999999999999999999999",
            "x",
        ];
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let mut texts: Vec<String> = fixed.iter().map(|s| s.to_string()).collect();
        for _ in 0..100_000 {
            let digits = 1 + (next() % 22) as usize;
            let m = next() % 10u64.pow(digits.min(19) as u32);
            let frac = (next() % 24) as usize;
            let sign = if next() % 3 == 0 { "-" } else { "" };
            texts.push(format!("{sign}{m}"));
            texts.push(format!("{sign}{}", m as f64 / 10f64.powi(frac as i32)));
            texts.push(format!("{sign}{m}.{:0frac$}", next() % 1000));
        }
        let mut short = 0;
        for t in &texts {
            for after in [b',', b'}', b' ', b'e', b'5', b'.', b'x'] {
                let w = window(t, after);
                let want = decimal(&w, 0);
                // Where it declines, decimal reads the text or it is not a number.
                if let Some((x, n)) = short_number(&w) {
                    short += 1;
                    let (y, m) = want.unwrap_or_else(|| panic!("{t:?}+{after}: decimal refuses"));
                    let after = after as char;
                    assert_eq!((x.to_bits(), n), (y.to_bits(), m), "{t:?} then {after:?}");
                    assert!(!after.is_ascii_digit() && after != 'e' || n != t.len());
                }
            }
        }
        assert!(
            short > texts.len(),
            "only {short} windows were read as short numbers"
        );
    }

    /// `window_digits` takes digits four at a time; every start and limit its callers could
    /// give, on windows of digits broken by a non-digit anywhere, must read as [`digits`] reads
    /// one at a time (the tail after the last step of four included: `short_number` refuses what
    /// reaches it, so only this test sees it).
    #[test]
    fn digits_four_at_a_time_read_as_one_at_a_time() {
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1d);
        let mut checked = 0;
        for _ in 0..2_000 {
            let mut w = [0u8; 32];
            for c in &mut w {
                *c = b'0' + (next() % 10) as u8;
            }
            // None, one or two non-digits, anywhere.
            for _ in 0..next() % 3 {
                w[(next() % 32) as usize] = b".,}e- x"[(next() % 7) as usize];
            }
            for limit in 0..32 {
                for i in 0..=limit {
                    let m = next() % 1000;
                    assert_eq!(
                        window_digits(&w, i, limit, m),
                        digits(&w[..limit], i, m),
                        "{:?} from {i} to {limit}",
                        std::str::from_utf8(&w)
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked > 1_000_000);
    }
}
