//! `kiln token --sub ID [--admin] [--ttl S]`: mints an HS256 JWT with `auth.jwt_secret`
//! ([`kiln_shared::auth::Signer`]: at most `auth.max_ttl_secs`, with `iss`/`aud` when set).
//! With a public key configured the host application mints tokens, and this refuses.

use std::time::Duration;

use kiln_shared::Settings;
use kiln_shared::auth::Signer;
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
    /// Lifetime in seconds: 1 ..= `auth.max_ttl_secs` (default `auth.token_ttl_secs`).
    #[arg(long)]
    ttl: Option<u64>,
}

/// Prints the token on stdout.
///
/// # Errors
/// An invalid owner id, a missing/short/published secret, a public-key configuration, or a
/// lifetime out of range (each message names the setting or flag).
pub fn run(settings: &Settings, args: &TokenArgs) -> anyhow::Result<()> {
    let owner = OwnerId::parse(&args.sub)?;
    let ttl = Duration::from_secs(args.ttl.unwrap_or(settings.auth.token_ttl_secs));
    let signer = Signer::from_settings(&settings.auth)?;
    println!("{}", signer.mint(&owner, args.admin, ttl)?);
    Ok(())
}

/// The owner `kiln upload --data-dir` uploads as.
pub const LOCAL_OWNER: &str = "local";

/// A token for owner [`LOCAL_OWNER`] (no admin scope), valid `auth.token_ttl_secs`.
///
/// # Errors
/// When `auth.*` gives no signing key.
pub fn mint_local(settings: &Settings) -> anyhow::Result<String> {
    let owner = OwnerId::parse(LOCAL_OWNER)?;
    let ttl = Duration::from_secs(settings.auth.token_ttl_secs);
    Ok(Signer::from_settings(&settings.auth)?.mint(&owner, false, ttl)?)
}
