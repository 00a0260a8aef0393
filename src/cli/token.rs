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
