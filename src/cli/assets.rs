//! `ledgerline assets add|list|import`: the assets accounts may hold, with their scales.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use super::schema_checked_pool;
use crate::output::{self, Format};
use crate::store;
use crate::store::assets::AssetRow;

#[derive(Debug, Subcommand)]
pub enum AssetsCmd {
    /// Add an asset (a currency, a token, a share class, a unit of account).
    Add {
        /// Its code: 1-32 characters of A-Z 0-9 _ - (USD, USDC, IRAUSD, VACHR, BTC).
        code: String,
        /// Decimal places an amount may have, 0-18; fixed once a journal line uses the asset.
        #[arg(long)]
        scale: i16,
        /// What it is, for people.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the assets with their scales.
    List {
        /// table, json or csv.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Add every asset of a CSV file with the header `code,scale,description`; rows already
    /// present with the same scale are left as they are.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
}

pub(super) async fn assets(cmd: AssetsCmd) -> Result<()> {
    let pool = schema_checked_pool().await?;
    match cmd {
        AssetsCmd::Add {
            code,
            scale,
            description,
        } => {
            let row = AssetRow {
                code,
                scale,
                description,
            };
            let created = store::assets::add(&pool, &row).await?;
            let outcome = if created { "added" } else { "already present" };
            println!("asset {} {outcome} (scale {})", row.code, row.scale);
        }
        AssetsCmd::List { format } => {
            let rows = store::assets::list(&pool).await?;
            output::print(format, &["asset", "scale", "description"], &rows, |a| {
                vec![a.code.clone(), a.scale.to_string(), a.description.clone()]
            })?;
        }
        AssetsCmd::Import { file } => {
            let rows = read_assets(&file)?;
            let mut added = 0;
            for row in &rows {
                added += usize::from(store::assets::add(&pool, row).await?);
            }
            println!(
                "assets: {added} added, {} already present",
                rows.len() - added
            );
        }
    }
    Ok(())
}

fn read_assets(file: &PathBuf) -> Result<Vec<AssetRow>> {
    let mut reader =
        csv::Reader::from_path(file).with_context(|| format!("reading {}", file.display()))?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| row.with_context(|| format!("{} row {}", file.display(), i + 2)))
        .collect()
}
