//! Assets: the currencies and other units of account (`USD`, `USDC`, `IRAUSD`, `VACHR`, `BTC`)
//! a ledger account may hold, each with its scale (the decimal places an amount may have). The
//! ledger's own list lives in PostgreSQL (`assets`, `store::assets`); the default table here is
//! every ISO 4217 currency that has minor units, from the `iso_currency` crate.

use std::collections::BTreeMap;

use iso_currency::IntoEnumIterator;

/// Longest asset code.
pub const CODE_CHARS_MAX: usize = 32;
/// Largest scale an asset may have (amounts stay inside rust_decimal's 28 digits: see
/// `amount::integer_digits_max`).
pub const SCALE_MAX: u32 = 18;

/// An asset code known to be well formed: 1-32 characters of `A-Z 0-9 _ -`. Held inline so that
/// it stays `Copy` like the three-letter codes it replaced; ordered as its text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    bytes: [u8; CODE_CHARS_MAX],
    len: u8,
}

impl Currency {
    /// A well-formed code, whether or not a table knows it.
    pub fn parse(code: &str) -> Option<Currency> {
        let raw = code.as_bytes();
        let well_formed = (1..=CODE_CHARS_MAX).contains(&raw.len())
            && raw
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-');
        if !well_formed {
            return None;
        }
        let mut bytes = [0; CODE_CHARS_MAX];
        bytes[..raw.len()].copy_from_slice(raw);
        Some(Currency {
            bytes,
            len: raw.len() as u8,
        })
    }

    /// A code as stored, for reading back what the ledger already accepted.
    pub fn from_stored(code: &str) -> Option<Currency> {
        Self::parse(code)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).expect("asset codes are ASCII")
    }
}

impl std::fmt::Debug for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The assets the ledger accepts, each with its scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyTable {
    scales: BTreeMap<Currency, u32>,
}

impl Default for CurrencyTable {
    /// Every ISO 4217 currency that has minor units (the table the `assets` migration seeds).
    fn default() -> Self {
        let scales = iso_currency::Currency::iter()
            .filter_map(|c| {
                let code = Currency::parse(c.code())?;
                Some((code, u32::from(c.exponent()?)))
            })
            .collect();
        CurrencyTable { scales }
    }
}

/// Why an asset definition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssetError {
    #[error("asset code {0:?} is not 1-{CODE_CHARS_MAX} characters of A-Z 0-9 _ -")]
    InvalidCode(String),
    #[error("asset {code} has scale {scale}, the maximum is {SCALE_MAX}")]
    ScaleTooLarge { code: String, scale: u32 },
    #[error("asset entry {0:?} is not CODE:SCALE")]
    NotCodeAndScale(String),
    #[error("scale in {0:?} is not a number")]
    ScaleNotANumber(String),
}

impl CurrencyTable {
    /// A table of exactly these assets (the rows of `assets`).
    pub fn of<'a>(assets: impl IntoIterator<Item = (&'a str, u32)>) -> Result<Self, AssetError> {
        assets.into_iter().try_fold(
            CurrencyTable {
                scales: BTreeMap::new(),
            },
            |t, (code, scale)| t.with(code, scale),
        )
    }

    /// Adds or replaces an asset.
    pub fn with(mut self, code: &str, scale: u32) -> Result<Self, AssetError> {
        let currency =
            Currency::parse(code).ok_or_else(|| AssetError::InvalidCode(code.to_string()))?;
        if scale > SCALE_MAX {
            return Err(AssetError::ScaleTooLarge {
                code: code.to_string(),
                scale,
            });
        }
        self.scales.insert(currency, scale);
        Ok(self)
    }

    /// Parses `XAU:4,BTC:8` and adds each pair.
    pub fn with_spec(self, spec: &str) -> Result<Self, AssetError> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .try_fold(self, |table, pair| {
                let (code, scale) = pair
                    .split_once(':')
                    .ok_or_else(|| AssetError::NotCodeAndScale(pair.to_string()))?;
                let scale = scale
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| AssetError::ScaleNotANumber(pair.to_string()))?;
                table.with(code.trim(), scale)
            })
    }

    /// The asset for a code and its scale, if the ledger knows it.
    pub fn lookup(&self, code: &str) -> Option<(Currency, u32)> {
        let currency = Currency::parse(code)?;
        self.scales.get(&currency).map(|scale| (currency, *scale))
    }

    /// Every asset with its scale, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (Currency, u32)> + '_ {
        self.scales.iter().map(|(c, s)| (*c, *s))
    }

    pub fn len(&self) -> usize {
        self.scales.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scales.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_every_iso_currency_with_minor_units_and_can_be_extended() {
        let table = CurrencyTable::default();
        assert_eq!(table.lookup("JPY").map(|c| c.1), Some(0));
        assert_eq!(table.lookup("KWD").map(|c| c.1), Some(3));
        for code in ["RUB", "UAH", "EGP", "NGN", "KES", "PKR", "COP", "ARS"] {
            assert_eq!(table.lookup(code).map(|c| c.1), Some(2), "{code}");
        }
        assert!(table.len() > 150, "{} ISO currencies", table.len());
        assert!(table.lookup("XAU").is_none(), "no minor units in ISO 4217");
        let table = table
            .with_spec("XAU:4, BTC:8, IRAUSD:0, USDC:6, VACHR:2")
            .unwrap();
        assert_eq!(table.lookup("BTC").map(|c| c.1), Some(8));
        assert_eq!(table.lookup("IRAUSD").map(|c| c.1), Some(0));
        assert!(table.lookup("usd").is_none());
    }

    #[test]
    fn codes_are_one_to_32_characters_of_capitals_digits_underscore_and_dash() {
        for good in [
            "A",
            "USD",
            "USDC",
            "IRAUSD",
            "BRK-B",
            "X_1",
            &"Z".repeat(32),
        ] {
            assert_eq!(
                Currency::parse(good).map(|c| c.to_string()),
                Some(good.to_string())
            );
        }
        for bad in ["", "usd", "US D", "USD.", "ÜSD", &"Z".repeat(33)] {
            assert!(Currency::parse(bad).is_none(), "{bad:?}");
        }
        let mut codes = ["USDC", "USD", "BTC", "US"].map(|c| Currency::parse(c).unwrap());
        codes.sort();
        assert_eq!(codes.map(|c| c.to_string()), ["BTC", "US", "USD", "USDC"]);
    }

    #[test]
    fn refuses_bad_extensions() {
        assert!(CurrencyTable::default().with_spec("XAU").is_err());
        assert!(CurrencyTable::default().with_spec("XAU:x").is_err());
        assert!(CurrencyTable::default().with_spec("xau:2").is_err());
        assert!(CurrencyTable::default().with_spec("XAU:19").is_err());
        assert!(CurrencyTable::default().with_spec("WEI:18").is_ok());
    }
}
