//! Chart of accounts: what an account is and the rules for defining one.

use serde::{Deserialize, Serialize};

use crate::domain::currency::CurrencyTable;
use crate::domain::ids::check_id;

/// Account types, as in a balance sheet (asset, liability, equity) and income statement.
pub const ACCOUNT_TYPES: &[&str] = &["asset", "liability", "equity", "income", "expense"];

/// An account definition, as imported from CSV/JSON or created on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSpec {
    pub id: String,
    pub entity_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub account_type: String,
    pub currency: String,
    /// `D` or `C`; defaults from the type (assets and expenses are debit-normal).
    #[serde(default)]
    pub normal_side: Option<String>,
    /// May the balance (in the normal side's direction) go below zero? Default true.
    #[serde(default)]
    pub allow_negative: Option<bool>,
    /// How far below zero an account that may not go negative may go (its overdraft or credit
    /// line), as decimal text in its asset's scale; default 0.
    #[serde(default)]
    pub overdraft_limit: Option<String>,
}

/// A checked account definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub entity_id: String,
    pub name: String,
    pub account_type: String,
    pub currency: String,
    pub normal_side: String,
    pub allow_negative: bool,
    pub overdraft_limit: rust_decimal::Decimal,
}

impl AccountSpec {
    pub fn check(&self, currencies: &CurrencyTable) -> Result<Account, String> {
        let at = |what: String| format!("account {:?}: {what}", self.id);
        check_id("id", &self.id).map_err(|e| at(e.to_string()))?;
        check_id("entity_id", &self.entity_id).map_err(|e| at(e.to_string()))?;
        if self.name.trim().is_empty() || self.name.chars().count() > 256 {
            return Err(at("name must have 1 to 256 characters".into()));
        }
        let account_type = self.account_type.to_ascii_lowercase();
        if !ACCOUNT_TYPES.contains(&account_type.as_str()) {
            return Err(at(format!(
                "type {:?} is not one of {ACCOUNT_TYPES:?}",
                self.account_type
            )));
        }
        let Some((_, scale)) = currencies.lookup(&self.currency) else {
            return Err(at(format!("unknown currency {:?}", self.currency)));
        };
        let overdraft_limit = parse_limit(self.overdraft_limit.as_deref(), scale).map_err(at)?;
        let default_side = if matches!(account_type.as_str(), "asset" | "expense") {
            "D"
        } else {
            "C"
        };
        let normal_side = self
            .normal_side
            .clone()
            .unwrap_or_else(|| default_side.into());
        if normal_side != "D" && normal_side != "C" {
            return Err(at(format!(
                "normal side {normal_side:?} is neither D nor C"
            )));
        }
        Ok(Account {
            id: self.id.clone(),
            entity_id: self.entity_id.clone(),
            name: self.name.trim().to_string(),
            account_type,
            currency: self.currency.clone(),
            normal_side,
            allow_negative: self.allow_negative.unwrap_or(true),
            overdraft_limit,
        })
    }
}

/// An overdraft limit: zero, or a positive amount within the asset's scale.
pub fn parse_limit(text: Option<&str>, scale: u32) -> Result<rust_decimal::Decimal, String> {
    match text.map(str::trim) {
        None | Some("") | Some("0") => Ok(rust_decimal::Decimal::ZERO),
        Some(text) => crate::domain::amount::parse_amount(text, scale).map_err(|e| {
            format!("overdraft limit {text:?} is not an amount of scale {scale}: {e:?}")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: &str) -> AccountSpec {
        AccountSpec {
            id: "cash".into(),
            entity_id: "acme".into(),
            name: "Cash".into(),
            account_type: t.into(),
            currency: "USD".into(),
            normal_side: None,
            allow_negative: None,
            overdraft_limit: None,
        }
    }

    #[test]
    fn normal_side_follows_the_type_and_bad_specs_are_named() {
        let t = CurrencyTable::default();
        assert_eq!(spec("asset").check(&t).unwrap().normal_side, "D");
        assert_eq!(spec("income").check(&t).unwrap().normal_side, "C");
        assert!(spec("cookie").check(&t).unwrap_err().contains("cookie"));
        let mut s = spec("asset");
        s.currency = "XXX".into();
        assert!(s.check(&t).unwrap_err().contains("XXX"));
    }

    #[test]
    fn an_overdraft_limit_is_zero_or_an_amount_of_the_assets_scale() {
        let t = CurrencyTable::default();
        let limit = |text: &str| {
            let mut s = spec("asset");
            s.overdraft_limit = Some(text.into());
            s.check(&t).map(|a| a.overdraft_limit.to_string())
        };
        assert_eq!(
            spec("asset").check(&t).unwrap().overdraft_limit.to_string(),
            "0"
        );
        assert_eq!(limit("0").unwrap(), "0");
        assert_eq!(limit("250.5").unwrap(), "250.50");
        assert!(limit("-1").is_err());
        assert!(limit("1.001").is_err(), "USD has 2 decimals");
        assert!(limit("lots").is_err());
    }
}
