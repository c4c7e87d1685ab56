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

/// Why an account definition was refused, naming the account.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account {account:?}: {problem}")]
pub struct AccountError {
    pub account: String,
    pub problem: AccountProblem,
}

/// What is wrong with an account definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountProblem {
    #[error("{0}")]
    Identifier(crate::domain::Rejection),
    #[error("name must have 1 to 256 characters")]
    Name,
    #[error("type {0:?} is not one of {ACCOUNT_TYPES:?}")]
    Type(String),
    #[error("unknown currency {0:?}")]
    Currency(String),
    #[error(transparent)]
    Limit(#[from] LimitError),
    #[error("normal side {0:?} is neither D nor C")]
    NormalSide(String),
}

/// An overdraft limit that is not an amount of its asset's scale.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("overdraft limit {text:?} is not an amount of scale {scale}: {reason:?}")]
pub struct LimitError {
    pub text: String,
    pub scale: u32,
    pub reason: crate::domain::amount::AmountError,
}

impl AccountSpec {
    pub fn check(&self, currencies: &CurrencyTable) -> Result<Account, AccountError> {
        let at = |problem: AccountProblem| AccountError {
            account: self.id.clone(),
            problem,
        };
        check_id("id", &self.id).map_err(|e| at(AccountProblem::Identifier(e)))?;
        check_id("entity_id", &self.entity_id).map_err(|e| at(AccountProblem::Identifier(e)))?;
        if self.name.trim().is_empty() || self.name.chars().count() > 256 {
            return Err(at(AccountProblem::Name));
        }
        let account_type = self.account_type.to_ascii_lowercase();
        if !ACCOUNT_TYPES.contains(&account_type.as_str()) {
            return Err(at(AccountProblem::Type(self.account_type.clone())));
        }
        let Some((_, scale)) = currencies.lookup(&self.currency) else {
            return Err(at(AccountProblem::Currency(self.currency.clone())));
        };
        let overdraft_limit = parse_limit(self.overdraft_limit.as_deref(), scale)
            .map_err(|e| at(AccountProblem::Limit(e)))?;
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
            return Err(at(AccountProblem::NormalSide(normal_side)));
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
pub fn parse_limit(text: Option<&str>, scale: u32) -> Result<rust_decimal::Decimal, LimitError> {
    match text.map(str::trim) {
        None | Some("") | Some("0") => Ok(rust_decimal::Decimal::ZERO),
        Some(text) => {
            crate::domain::amount::parse_amount(text, scale).map_err(|reason| LimitError {
                text: text.to_string(),
                scale,
                reason,
            })
        }
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
        let cookie = spec("cookie").check(&t).unwrap_err();
        assert_eq!(cookie.problem, AccountProblem::Type("cookie".into()));
        assert!(cookie.to_string().contains("cookie"));
        let mut s = spec("asset");
        s.currency = "XXX".into();
        assert!(s.check(&t).unwrap_err().to_string().contains("XXX"));
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
