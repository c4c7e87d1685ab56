//! Chart of accounts: what an account is and the rules for defining one.

use serde::{Deserialize, Serialize};

use crate::domain::currency::CurrencyTable;
use crate::domain::ids::check_id;
use crate::domain::posting::{Side, UnknownName};

/// An account's type, as in a balance sheet (asset, liability, equity) and an income statement
/// (income, expense). Written in lower case wherever it is text (SQL, JSON, CSV, reports).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AccountType {
    Asset,
    Liability,
    Equity,
    Income,
    Expense,
}

impl AccountType {
    pub const ALL: [AccountType; 5] = [
        AccountType::Asset,
        AccountType::Liability,
        AccountType::Equity,
        AccountType::Income,
        AccountType::Expense,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountType::Asset => "asset",
            AccountType::Liability => "liability",
            AccountType::Equity => "equity",
            AccountType::Income => "income",
            AccountType::Expense => "expense",
        }
    }

    /// The type named by `text`, in any case.
    pub fn parse(text: &str) -> Option<AccountType> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }

    /// The side that increases a balance of this type: debit for assets and expenses.
    pub fn normal_side(self) -> Side {
        match self {
            AccountType::Asset | AccountType::Expense => Side::Debit,
            _ => Side::Credit,
        }
    }

    /// Does the type belong on the balance sheet (rather than the income statement)?
    pub fn on_balance_sheet(self) -> bool {
        matches!(
            self,
            AccountType::Asset | AccountType::Liability | AccountType::Equity
        )
    }

    /// What an account of this type adds to current earnings per unit of its normal-side
    /// balance: income adds, expenses subtract, balance-sheet types do not count.
    pub fn earnings_sign(self) -> i8 {
        match self {
            AccountType::Income => 1,
            AccountType::Expense => -1,
            _ => 0,
        }
    }
}

impl std::fmt::Display for AccountType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl TryFrom<String> for AccountType {
    type Error = UnknownName;
    fn try_from(text: String) -> Result<Self, UnknownName> {
        AccountType::parse(&text).ok_or(UnknownName {
            what: "account type",
            text,
            allowed: "asset, liability, equity, income, expense",
        })
    }
}

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
    pub account_type: AccountType,
    pub currency: String,
    pub normal_side: Side,
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
    #[error("type {0:?} is not one of asset, liability, equity, income, expense")]
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
        let Some(account_type) = AccountType::parse(&self.account_type) else {
            return Err(at(AccountProblem::Type(self.account_type.clone())));
        };
        let Some((_, scale)) = currencies.lookup(&self.currency) else {
            return Err(at(AccountProblem::Currency(self.currency.clone())));
        };
        let overdraft_limit = parse_limit(self.overdraft_limit.as_deref(), scale)
            .map_err(|e| at(AccountProblem::Limit(e)))?;
        let normal_side = match self.normal_side.as_deref() {
            None => account_type.normal_side(),
            Some(code) => {
                Side::parse(code).ok_or_else(|| at(AccountProblem::NormalSide(code.to_string())))?
            }
        };
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
        assert_eq!(spec("asset").check(&t).unwrap().normal_side, Side::Debit);
        assert_eq!(spec("Income").check(&t).unwrap().normal_side, Side::Credit);
        assert_eq!(
            spec("EXPENSE").check(&t).unwrap().account_type,
            AccountType::Expense
        );
        let mut odd = spec("asset");
        odd.normal_side = Some("C".into());
        assert_eq!(odd.check(&t).unwrap().normal_side, Side::Credit);
        odd.normal_side = Some("debit".into());
        let side = odd.check(&t).unwrap_err();
        assert_eq!(side.problem, AccountProblem::NormalSide("debit".into()));
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
