//! `kiln owners show|set-quota|erase`: read an owner's usage and limits, set their quota
//! overrides (the same as `GET`/`PUT /v1/admin/owners/{owner}…`), straight on the upload store,
//! and erase every row and object of an owner (`DELETE /v1/admin/owners/{owner}`).

use kiln_shared::Settings;
use kiln_shared::db::owners::{self, QuotaOverride};
use kiln_shared::domain::OwnerId;
use kiln_shared::wire::OwnerView;

/// `kiln owners …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OwnersCommand {
    /// Print an owner's usage, effective limits and overrides as JSON.
    Show {
        /// Owner id.
        owner: OwnerId,
    },
    /// Set an owner's quota overrides (each one left out restores the configured default),
    /// then print the owner as `show` does.
    SetQuota {
        /// Owner id.
        owner: OwnerId,
        /// Bytes the owner may hold in live uploads.
        #[arg(long)]
        max_bytes: Option<u64>,
        /// Live uploads the owner may hold.
        #[arg(long)]
        max_uploads: Option<u64>,
        /// Authorized, not yet completed uploads the owner may hold.
        #[arg(long)]
        max_pending: Option<u64>,
    },
    /// Erase every row and object of an owner (uploads in any state, originals, derivatives,
    /// temporary objects, share links, API keys, quota rows, finished queue tasks) and print
    /// what was removed as JSON. Resumable: run it again after a failure; on an erased owner it
    /// removes nothing.
    Erase {
        /// Owner id.
        owner: OwnerId,
    },
}

/// Runs a `kiln owners` subcommand.
///
/// # Errors
/// When the database cannot be reached or migrated, or a query fails.
pub async fn run(settings: &Settings, cmd: OwnersCommand) -> anyhow::Result<()> {
    let pool = kiln_shared::db::connect(&settings.database)?;
    let owner = match cmd {
        OwnersCommand::Show { owner } => owner,
        OwnersCommand::Erase { owner } => {
            let storage = kiln_shared::storage::Storage::new(&settings.storage);
            let lifecycle = kiln_shared::lifecycle::Lifecycle::connect(
                std::sync::Arc::new(settings.clone()),
                pool,
                storage,
            )
            .await?;
            let report = lifecycle.erase_owner(&owner).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(());
        }
        OwnersCommand::SetQuota {
            owner,
            max_bytes,
            max_uploads,
            max_pending,
        } => {
            let q = QuotaOverride {
                max_bytes,
                max_uploads,
                max_pending,
            };
            owners::set_overrides(&pool, &owner, q).await?;
            owner
        }
    };
    let overrides = owners::overrides(&pool, &owner).await?;
    let view = OwnerView {
        owner: owner.as_str().to_owned(),
        usage: owners::usage(&pool, &owner).await?,
        limits: overrides.apply(&settings.quotas),
        overrides,
    };
    println!("{}", serde_json::to_string_pretty(&view)?);
    Ok(())
}
