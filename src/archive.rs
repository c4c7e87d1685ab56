//! Archiving a closed accounting period: its entries and lines, each with its hash-chain links,
//! exported to a JSON file that is checked against the live chains before the run is recorded
//! (with the file's SHA-256) in `archive_runs`. `ledgerline verify --archive FILE` proves the
//! file and the live ledger one chain again: the file is the recorded one, every archived hash
//! recomputes from the archived content, equals the live entry's, and links to a live one.
//! Nothing is deleted: the archive is the read-only copy for cold storage.

use std::path::Path;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::store::archive::{self, ArchiveRun};
use crate::store::verify::{self, ChainRow, Violation};

pub const FORMAT: &str = "ledgerline-archive-v1";

/// The file's content.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ArchiveFile {
    pub format: String,
    pub entity: String,
    pub period_start: NaiveDate,
    pub period_end: NaiveDate,
    pub entries: Vec<ChainRow>,
}

/// What an archive run wrote.
#[derive(Debug)]
pub struct Archived {
    pub entries: usize,
    pub period_end: NaiveDate,
    pub sha256: String,
}

/// Archives the closed period of `entity` starting on `start` into `path` (written whole, then
/// checked against the live chains, then recorded; a file that fails the check is removed).
pub async fn write(pool: &PgPool, entity: &str, start: NaiveDate, path: &Path) -> Result<Archived> {
    let period = crate::store::periods::list(pool, Some(entity))
        .await?
        .into_iter()
        .find(|p| p.period_start == start)
        .with_context(|| format!("entity {entity:?} has no period starting on {start}"))?;
    if period.status != "closed" {
        bail!("the period {start}..{} of {entity:?} is {}: close it first (an open period still takes entries)", period.period_end, period.status);
    }
    let entries = verify::period_rows(pool, entity, start, period.period_end).await?;
    let file = ArchiveFile {
        format: FORMAT.into(),
        entity: entity.into(),
        period_start: start,
        period_end: period.period_end,
        entries,
    };
    let bytes = serde_json::to_vec_pretty(&file)?;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, &bytes)
        .with_context(|| format!("cannot write {}", partial.display()))?;
    let written: ArchiveFile = serde_json::from_slice(&std::fs::read(&partial)?)?;
    let violations = verify::archived_rows(pool, &written.entries).await?;
    if let Some(v) = violations.first() {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "the archive does not check against the live ledger ({} violations), first: {}",
            violations.len(),
            v.detail
        );
    }
    std::fs::rename(&partial, path)?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let run = ArchiveRun {
        entity_id: entity.into(),
        period_start: start,
        period_end: period.period_end,
        file: path.display().to_string(),
        sha256: sha256.to_vec(),
        entries: file.entries.len() as i64,
    };
    archive::record(pool, &run).await?;
    Ok(Archived {
        entries: file.entries.len(),
        period_end: period.period_end,
        sha256: hex::encode(sha256),
    })
}

/// The violations of one archive file: not the recorded file, not an archive, or entries that
/// are not links of the live chains (each named).
pub async fn check(pool: &PgPool, path: &Path) -> Result<Vec<Violation>> {
    let name = path.display();
    let bytes = std::fs::read(path).with_context(|| format!("cannot read archive {name}"))?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let mut violations = Vec::new();
    let recorded = archive::by_sha256(pool, &sha256).await?;
    if recorded.is_none() {
        violations.push(Violation {
            entry_id: None,
            detail: format!("archive {name}: its SHA-256 {} is no recorded archive run's (altered after archiving, or not archived from this ledger)", hex::encode(sha256)),
        });
    }
    let file: ArchiveFile = match serde_json::from_slice(&bytes) {
        Ok(f) => f,
        Err(e) => {
            violations.push(Violation {
                entry_id: None,
                detail: format!("archive {name} is not a {FORMAT} file: {e}"),
            });
            return Ok(violations);
        }
    };
    if let Some(run) = recorded.filter(|r| r.entries != file.entries.len() as i64) {
        violations.push(Violation {
            entry_id: None,
            detail: format!(
                "archive {name} holds {} entries, its run recorded {}",
                file.entries.len(),
                run.entries
            ),
        });
    }
    violations.extend(verify::archived_rows(pool, &file.entries).await?);
    Ok(violations)
}
