//! Assets (`assets`): the codes accounts may hold, with their scales. Every process reads the
//! same table, so that a replay a year later decides as the first run did. Rows are added, never
//! removed; a scale is fixed once a journal line uses the asset (a trigger enforces it).

use sqlx::PgPool;

use crate::domain::CurrencyTable;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct AssetRow {
    pub code: String,
    pub scale: i16,
    #[serde(default)]
    pub description: String,
}

/// Every asset, in code order.
pub async fn list(pool: &PgPool) -> Result<Vec<AssetRow>, StoreError> {
    Ok(
        sqlx::query_as("SELECT code, scale, description FROM assets ORDER BY code")
            .fetch_all(pool)
            .await?,
    )
}

/// The table the poster and the admin commands check postings and accounts against.
pub async fn table(pool: &PgPool) -> Result<CurrencyTable, StoreError> {
    let rows = list(pool).await?;
    CurrencyTable::of(rows.iter().map(|r| (r.code.as_str(), r.scale as u32)))
        .map_err(|e| StoreError::Conflict(format!("the assets table holds a bad row: {e}")))
}

/// Adds an asset; adding the same code with the same scale again is a no-op (returns false).
/// The same code with another scale is a conflict: scales never change once lines use them.
pub async fn add(pool: &PgPool, asset: &AssetRow) -> Result<bool, StoreError> {
    // The domain's rules for a code and a scale, with the same message an import would give.
    let scale = u32::try_from(asset.scale).map_err(|_| {
        StoreError::Conflict(format!(
            "asset {} has scale {}, the minimum is 0",
            asset.code, asset.scale
        ))
    })?;
    CurrencyTable::of([(asset.code.as_str(), scale)])
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    let inserted = sqlx::query(
        "INSERT INTO assets (code, scale, description) VALUES ($1, $2, $3)
         ON CONFLICT (code) DO NOTHING",
    )
    .bind(&asset.code)
    .bind(asset.scale)
    .bind(&asset.description)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(true);
    }
    let scale: i16 = sqlx::query_scalar("SELECT scale FROM assets WHERE code = $1")
        .bind(&asset.code)
        .fetch_one(pool)
        .await?;
    if scale != asset.scale {
        return Err(StoreError::Conflict(format!(
            "asset {} exists with scale {scale}, not {}",
            asset.code, asset.scale
        )));
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use crate::domain::CurrencyTable;

    /// The ISO 4217 rows migration 0011 inserts are the default table (the `iso_currency`
    /// crate's currencies with minor units): a new crate version with new currencies fails here
    /// until a migration adds them.
    #[test]
    fn the_assets_migration_seeds_exactly_the_iso_table() {
        let sql = include_str!("../../migrations/0011_assets.sql");
        let seeded: Vec<(String, u32)> = sql
            .lines()
            .filter_map(|l| l.trim().strip_prefix("('"))
            .map(|l| {
                let mut fields = l.splitn(3, ", ");
                let code = fields.next().unwrap().trim_end_matches('\'').to_string();
                (code, fields.next().unwrap().parse().unwrap())
            })
            .collect();
        let expected: Vec<(String, u32)> = CurrencyTable::default()
            .iter()
            .map(|(c, s)| (c.to_string(), s))
            .collect();
        assert_eq!(seeded, expected);
    }
}
