//! ISO 4217 currencies and their minor units (the number of decimal places an amount may have).

use std::collections::BTreeMap;

/// ISO 4217 codes with their minor units. Extend at run time with [`CurrencyTable::with`]
/// (for example from `LEDGERLINE_EXTRA_CURRENCIES=XAU:4,BTC:8`).
const ISO_4217_MINOR_UNITS: &[(&str, u32)] = &[
    ("AED", 2),
    ("AUD", 2),
    ("BHD", 3),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("ISK", 0),
    ("JOD", 3),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("LYD", 3),
    ("MXN", 2),
    ("MYR", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PHP", 2),
    ("PLN", 2),
    ("RON", 2),
    ("SAR", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("THB", 2),
    ("TND", 3),
    ("TRY", 2),
    ("TWD", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYW", 4),
    ("VND", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("ZAR", 2),
];

/// A three-letter currency code known to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    /// A currency code as stored (three ASCII uppercase letters), whether or not the table
    /// knows it: for reading back what the ledger already accepted.
    pub fn from_stored(code: &str) -> Option<Currency> {
        CurrencyTable::code(code)
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from three ASCII uppercase letters.
        std::str::from_utf8(&self.0).expect("currency codes are ASCII")
    }
}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The currencies the ledger accepts, each with its minor units.
#[derive(Debug, Clone)]
pub struct CurrencyTable {
    minor_units: BTreeMap<Currency, u32>,
}

impl Default for CurrencyTable {
    fn default() -> Self {
        let mut table = CurrencyTable {
            minor_units: BTreeMap::new(),
        };
        for (code, units) in ISO_4217_MINOR_UNITS {
            table = table
                .with(code, *units)
                .expect("built-in currency table is valid");
        }
        table
    }
}

/// Largest number of minor units a currency may declare (rust_decimal keeps 28 digits).
pub const MINOR_UNITS_MAX: u32 = 8;

impl CurrencyTable {
    /// Adds or replaces a currency. The code must be three ASCII uppercase letters.
    pub fn with(mut self, code: &str, minor_units: u32) -> Result<Self, String> {
        let currency = Self::code(code)
            .ok_or_else(|| format!("currency code {code:?} is not three uppercase letters A-Z"))?;
        if minor_units > MINOR_UNITS_MAX {
            return Err(format!(
                "currency {code} has {minor_units} minor units, the maximum is {MINOR_UNITS_MAX}"
            ));
        }
        self.minor_units.insert(currency, minor_units);
        Ok(self)
    }

    /// Parses `XAU:4,BTC:8` and adds each pair.
    pub fn with_spec(self, spec: &str) -> Result<Self, String> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .try_fold(self, |table, pair| {
                let (code, units) = pair
                    .split_once(':')
                    .ok_or_else(|| format!("currency entry {pair:?} is not CODE:MINOR_UNITS"))?;
                let units = units
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| format!("minor units in {pair:?} are not a number"))?;
                table.with(code.trim(), units)
            })
    }

    /// The currency for a code, if the ledger knows it.
    pub fn lookup(&self, code: &str) -> Option<(Currency, u32)> {
        let currency = Self::code(code)?;
        self.minor_units
            .get(&currency)
            .map(|units| (currency, *units))
    }

    fn code(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_uppercase)
            .then_some(Currency(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_iso_minor_units_and_can_be_extended() {
        let table = CurrencyTable::default();
        assert_eq!(table.lookup("JPY").map(|c| c.1), Some(0));
        assert_eq!(table.lookup("KWD").map(|c| c.1), Some(3));
        assert!(table.lookup("XAU").is_none());
        let table = table.with_spec("XAU:4, BTC:8").unwrap();
        assert_eq!(table.lookup("BTC").map(|c| c.1), Some(8));
        assert!(table.lookup("usd").is_none());
    }

    #[test]
    fn refuses_bad_extensions() {
        assert!(CurrencyTable::default().with_spec("XAU").is_err());
        assert!(CurrencyTable::default().with_spec("XAU:x").is_err());
        assert!(CurrencyTable::default().with_spec("xau:2").is_err());
        assert!(CurrencyTable::default().with_spec("XAU:12").is_err());
    }
}
