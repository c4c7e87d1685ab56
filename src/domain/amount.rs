//! Money amounts: strict decimal text on the wire, `rust_decimal` inside, never floats.
//!
//! Grammar accepted: `-?[0-9]+(\.[0-9]+)?`. No exponent, no `NaN`/`Infinity`, no spaces, no `+`.
//! A parsed amount is rescaled to exactly the currency's minor units, so it prints back the same
//! way every time ("12.5" in USD prints as "12.50").

use rust_decimal::Decimal;

use crate::limits::{AMOUNT_CHARS_MAX, AMOUNT_DIGITS_MAX, AMOUNT_INTEGER_DIGITS_MAX};

/// Why an amount's text was refused; the caller adds the line number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmountError {
    /// Not the plain decimal grammar (exponent, letters, empty, ...).
    NotDecimal,
    /// Zero or negative.
    NotPositive,
    /// Too many integer digits or characters.
    OutOfRange,
    /// More significant decimals than the currency allows.
    ScaleExceeds { scale: u32 },
}

/// Integer digits an amount of an asset with `scale` may have: 18, fewer for scales above 8.
pub fn integer_digits_max(scale: u32) -> u32 {
    AMOUNT_INTEGER_DIGITS_MAX.min(AMOUNT_DIGITS_MAX.saturating_sub(scale))
}

/// Parses a positive amount with at most `minor_units` significant decimals.
pub fn parse_amount(text: &str, minor_units: u32) -> Result<Decimal, AmountError> {
    if text.len() > AMOUNT_CHARS_MAX {
        // Checked before looking at digits: bounds the work done on hostile input.
        return Err(if is_decimal_grammar(text) {
            AmountError::OutOfRange
        } else {
            AmountError::NotDecimal
        });
    }
    if !is_decimal_grammar(text) {
        return Err(AmountError::NotDecimal);
    }
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int_part, frac_part) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int_digits = int_part.trim_start_matches('0').len() as u32;
    if int_digits > integer_digits_max(minor_units) {
        return Err(AmountError::OutOfRange);
    }
    let significant_scale = frac_part.trim_end_matches('0').len() as u32;
    // Up to 18 + 40 chars: the scale may exceed what rust_decimal holds (28) only when it also
    // exceeds any currency's minor units, so this check comes first.
    if significant_scale > minor_units {
        return Err(AmountError::ScaleExceeds {
            scale: significant_scale,
        });
    }
    let trimmed_frac = &frac_part[..significant_scale as usize];
    let canonical = if trimmed_frac.is_empty() {
        int_part.to_string()
    } else {
        format!("{int_part}.{trimmed_frac}")
    };
    let mut value: Decimal = canonical.parse().map_err(|_| AmountError::OutOfRange)?;
    if text.starts_with('-') {
        value.set_sign_negative(true);
    }
    if value <= Decimal::ZERO {
        return Err(AmountError::NotPositive);
    }
    value.rescale(minor_units);
    Ok(value)
}

/// Prints an amount with exactly `minor_units` decimals.
pub fn format_amount(value: Decimal, minor_units: u32) -> String {
    let mut v = value;
    v.rescale(minor_units);
    v.to_string()
}

fn is_decimal_grammar(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int_part, frac_part) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int_part) && frac_part.is_none_or(all_digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_decimals_and_rescales() {
        assert_eq!(parse_amount("12.5", 2).unwrap().to_string(), "12.50");
        assert_eq!(parse_amount("0012.500", 2).unwrap().to_string(), "12.50");
        assert_eq!(parse_amount("7", 0).unwrap().to_string(), "7");
        assert_eq!(
            parse_amount("999999999999999999.99", 2)
                .unwrap()
                .to_string(),
            "999999999999999999.99"
        );
    }

    #[test]
    fn refuses_what_is_not_a_plain_positive_decimal() {
        for bad in [
            "",
            "1e5",
            "NaN",
            "Infinity",
            "-Infinity",
            "+1",
            " 1",
            "1.",
            ".5",
            "1,00",
            "0x10",
            "１",
        ] {
            assert_eq!(
                parse_amount(bad, 2),
                Err(AmountError::NotDecimal),
                "{bad:?}"
            );
        }
        assert_eq!(parse_amount("0.00", 2), Err(AmountError::NotPositive));
        assert_eq!(parse_amount("-5.00", 2), Err(AmountError::NotPositive));
        assert_eq!(
            parse_amount("1.001", 2),
            Err(AmountError::ScaleExceeds { scale: 3 })
        );
        assert_eq!(
            parse_amount("1.5", 0),
            Err(AmountError::ScaleExceeds { scale: 1 })
        );
        assert_eq!(
            parse_amount("1000000000000000000", 2),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(
            parse_amount(&"9".repeat(40), 2),
            Err(AmountError::OutOfRange)
        );
        assert_eq!(
            parse_amount(&"9".repeat(41), 2),
            Err(AmountError::OutOfRange)
        );
    }

    proptest! {
        #[test]
        fn print_then_parse_round_trips(units in 0u32..=8, mantissa in 1i64..1_000_000_000_000_000_000) {
            let value = Decimal::new(mantissa, units);
            let text = format_amount(value, units);
            prop_assert_eq!(parse_amount(&text, units), Ok(value));
            prop_assert_eq!(format_amount(parse_amount(&text, units).unwrap(), units), text);
        }

        #[test]
        fn never_panics_and_never_accepts_non_positive(text in "\\PC{0,50}") {
            if let Ok(v) = parse_amount(&text, 4) {
                prop_assert!(v > Decimal::ZERO);
                prop_assert!(v.scale() == 4);
            }
        }

        #[test]
        fn integer_digit_limit_is_exact(digits in 1usize..=30) {
            let text = format!("1{}", "0".repeat(digits - 1));
            let result = parse_amount(&text, 2);
            if digits as u32 <= AMOUNT_INTEGER_DIGITS_MAX {
                prop_assert!(result.is_ok());
            } else {
                prop_assert_eq!(result, Err(AmountError::OutOfRange));
            }
        }
    }
}
