//! `kiln owners show|set-quota`: read an owner's usage and limits, and set their quota
//! overrides (the same as `GET`/`PUT /v1/admin/owners/{owner}…`), straight on the upload store.

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
}

/// Runs a `kiln owners` subcommand.
///
/// # Errors
/// When the database cannot be reached or migrated, or a query fails.
pub async fn run(settings: &Settings, cmd: OwnersCommand) -> anyhow::Result<()> {
    let pool = kiln_shared::db::connect(&settings.database)?;
    let owner = match cmd {
        OwnersCommand::Show { owner } => owner,
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
