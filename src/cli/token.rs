//! `kiln token --sub ID [--admin]`: mints a development HS256 JWT from `auth.jwt_secret`.

use std::time::Duration;

use kiln_shared::Settings;
use kiln_shared::domain::OwnerId;

/// Arguments of `kiln token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Owner id (`sub`).
    #[arg(long)]
    sub: String,
    /// Add the `admin` scope.
    #[arg(long)]
    admin: bool,
    /// Lifetime in seconds (default `auth.token_ttl_secs`).
    #[arg(long)]
    ttl: Option<u64>,
}

/// Prints the token on stdout.
pub fn run(settings: &Settings, args: &TokenArgs) -> anyhow::Result<()> {
    let owner = OwnerId::parse(&args.sub)?;
    let ttl = Duration::from_secs(args.ttl.unwrap_or(settings.auth.token_ttl_secs));
    println!(
        "{}",
        kiln_shared::auth::mint(&settings.auth.jwt_secret, &owner, args.admin, ttl)?
    );
    Ok(())
}

/// The owner `kiln upload --data-dir` uploads as.
pub const LOCAL_OWNER: &str = "local";

/// A token for owner [`LOCAL_OWNER`] (no admin scope), valid `auth.token_ttl_secs`.
///
/// # Errors
/// When signing fails.
pub fn mint_local(settings: &Settings) -> anyhow::Result<String> {
    let owner = OwnerId::parse(LOCAL_OWNER)?;
    let ttl = Duration::from_secs(settings.auth.token_ttl_secs);
    Ok(kiln_shared::auth::mint(
        &settings.auth.jwt_secret,
        &owner,
        false,
        ttl,
    )?)
}
