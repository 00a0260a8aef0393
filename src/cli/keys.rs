//! `kiln keys create|list|revoke`: API keys, straight in the database
//! ([`kiln_shared::api_keys`]), like the other operator commands; `/v1/admin/keys` does the
//! same over HTTP.

use std::time::Duration;

use anyhow::Context as _;
use kiln_shared::Settings;
use kiln_shared::api_keys::{self, KeyView, NewKey, Scopes};
use kiln_shared::domain::OwnerId;

/// `kiln keys …` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (stdout: the key alone, or `--json`).
    Create {
        /// The owner the key acts as.
        #[arg(long)]
        owner: String,
        /// What it may do: scopes separated by commas, from `upload`, `read`, `admin`.
        #[arg(long, value_parser = parse_scopes)]
        scope: Scopes,
        /// Lifetime, e.g. `30d`, `12h`, `90s` (humantime; at most 10 years); none: never
        /// expires.
        #[arg(long, value_parser = parse_lifetime)]
        expires_in: Option<Duration>,
        /// A label for people (1-64 characters).
        #[arg(long)]
        name: Option<String>,
        /// Print the key and its metadata as one JSON object (the API's `CreatedKey`).
        #[arg(long)]
        json: bool,
    },
    /// List keys (prefix, owner, scopes, name, times; never the secret), oldest first.
    List {
        /// Only this owner's keys.
        #[arg(long)]
        owner: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its prefix; it stops working from the next request on. Idempotent.
    Revoke {
        /// The key's prefix (the 12 hex digits after `kiln_`), or the whole key.
        prefix: String,
    },
}

/// Parses `--scope`: `upload,read,admin` in any order and combination.
fn parse_scopes(s: &str) -> Result<Scopes, String> {
    s.parse().map_err(|e: api_keys::ScopeError| e.to_string())
}

/// Parses `--expires-in`: a humantime duration such as `30d` or `12h`.
fn parse_lifetime(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration such as 30d or 12h: {e}"))
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

fn print_table(keys: &[KeyView]) {
    println!(
        "{:<12}  {:<16}  {:<19}  {:<19}  {:<19}  {:<19}  {:<19}  NAME",
        "PREFIX", "OWNER", "SCOPES", "CREATED", "EXPIRES", "LAST USED", "REVOKED"
    );
    for k in keys {
        println!(
            "{:<12}  {:<16}  {:<19}  {:<19}  {:<19}  {:<19}  {:<19}  {}",
            k.prefix,
            k.owner,
            k.scopes.to_string(),
            time(Some(k.created_at)),
            time(k.expires_at),
            time(k.last_used_at),
            time(k.revoked_at),
            k.name.as_deref().unwrap_or("")
        );
    }
}

/// Runs a `kiln keys` subcommand against `database.url`.
///
/// # Errors
/// A malformed owner, name or lifetime, an unknown prefix (revoke), or a database failure.
pub async fn run(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let pool = kiln_shared::db::connect(&settings.database)?;
    match cmd {
        KeysCommand::Create {
            owner,
            scope,
            expires_in,
            name,
            json,
        } => {
            let owner = OwnerId::parse(&owner).context("--owner")?;
            let new = NewKey::new(owner, scope, name, expires_in)?;
            let created = api_keys::create(&pool, &new).await?;
            if json {
                println!("{}", serde_json::to_string(&created)?);
            } else {
                let k = &created.api_key;
                eprintln!(
                    "API key {} for {} (scopes {}, expires {}). It is shown only now: store it.",
                    k.prefix,
                    k.owner,
                    k.scopes,
                    k.expires_at
                        .map_or_else(|| "never".into(), |t| t.to_rfc3339())
                );
                println!("{}", created.key);
            }
        }
        KeysCommand::List { owner, json } => {
            let owner = owner
                .as_deref()
                .map(OwnerId::parse)
                .transpose()
                .context("--owner")?;
            let keys = api_keys::list(&pool, owner.as_ref()).await?;
            if json {
                for k in &keys {
                    println!("{}", serde_json::to_string(k)?);
                }
            } else {
                print_table(&keys);
            }
        }
        KeysCommand::Revoke { prefix } => {
            // A whole key (a leaked one, say) names its prefix too.
            let prefix = api_keys::parse(&prefix).map_or(prefix.as_str(), |k| k.prefix);
            anyhow::ensure!(
                api_keys::valid_prefix(prefix),
                "a prefix is 12 lowercase hex digits (the part after kiln_), got {prefix:?}"
            );
            let key = api_keys::revoke(&pool, prefix).await?;
            println!("{}", serde_json::to_string(&key)?);
        }
    }
    Ok(())
}
