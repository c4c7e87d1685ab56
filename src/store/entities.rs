//! Entities (tenants): every account and entry belongs to exactly one.

use sqlx::PgPool;

use crate::store::StoreError;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct EntityRow {
    pub id: String,
    pub name: String,
}

/// Creates an entity; creating the same entity with the same name again is a no-op.
pub async fn create(pool: &PgPool, id: &str, name: &str) -> Result<bool, StoreError> {
    let inserted =
        sqlx::query("INSERT INTO entities (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected();
    if inserted == 0 {
        let existing: String = sqlx::query_scalar("SELECT name FROM entities WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await?;
        if existing != name {
            return Err(StoreError::Conflict(format!(
                "entity {id:?} exists with name {existing:?}, not {name:?}"
            )));
        }
    }
    Ok(inserted == 1)
}

pub async fn list(pool: &PgPool) -> Result<Vec<EntityRow>, StoreError> {
    Ok(sqlx::query_as("SELECT id, name FROM entities ORDER BY id")
        .fetch_all(pool)
        .await?)
}
