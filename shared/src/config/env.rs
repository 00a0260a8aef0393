//! [`Settings::to_env`]: settings written back as the `KILN__SECTION__KEY=value` environment
//! that [`Settings::load`]'s env layer (figment's `Env` provider) reads, value syntax included:
//! e.g. `KILN__WORKER__RENDITIONS=[{fit="cover",format="webp",keep_metadata=false,…}]`.

use figment::value::{Num, Value};

use super::{ENV_PREFIX, ENV_SPLIT, Settings};

/// Every key of `settings` as an env pair (see [`Settings::to_env`]).
///
/// # Panics
/// If the settings cannot be serialized; they are plain data, so this does not happen.
pub(super) fn pairs(settings: &Settings) -> Vec<(String, String)> {
    let value = Value::serialize(settings).expect("settings serialize to a figment value");
    let mut pairs = Vec::new();
    env_pairs(ENV_PREFIX.trim_end_matches(ENV_SPLIT), &value, &mut pairs);
    pairs
}

/// Appends the env pairs of `value` under the variable name `name` (`KILN`, then
/// `KILN__SECTION`…): a dict's entries each under `{name}__{KEY}`, anything else as one value.
fn env_pairs(name: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    if let Value::Dict(_, dict) = value {
        for (key, v) in dict {
            let name = format!("{name}{ENV_SPLIT}{}", key.to_ascii_uppercase());
            env_pairs(&name, v, pairs);
        }
    } else if let Some(text) = env_value(value, false) {
        pairs.push((name.to_owned(), text));
    }
}

/// `value` as figment's env provider parses it back (`figment::value::Value`'s `FromStr`);
/// `None` for an empty value. `nested`: inside a list or dict, where strings are always quoted.
fn env_value(value: &Value, nested: bool) -> Option<String> {
    Some(match value {
        Value::String(_, s) if !nested && reads_back_as(s) => s.clone(),
        Value::String(_, s) => quoted(s),
        Value::Char(_, c) => quoted(&c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => number(*n),
        Value::Empty(..) => return None,
        Value::Array(_, items) => {
            let items: Vec<String> = items.iter().filter_map(|v| env_value(v, true)).collect();
            format!("[{}]", items.join(","))
        }
        Value::Dict(_, dict) => {
            let entries: Vec<String> = dict
                .iter()
                .filter_map(|(k, v)| {
                    let bare = !k.is_empty()
                        && k.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    let key = if bare { k.clone() } else { quoted(k) };
                    Some(format!("{key}={}", env_value(v, true)?))
                })
                .collect();
            format!("{{{}}}", entries.join(","))
        }
    })
}

/// Whether figment parses `s`, unquoted, back into the string `s`.
fn reads_back_as(s: &str) -> bool {
    matches!(s.parse::<Value>(), Ok(Value::String(_, parsed)) if parsed == s)
}

/// `s` in double quotes, with the escapes figment's string syntax reads.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number as figment parses it back: integers as written, floats always with a `.` (figment
/// reads a number without one as an integer, or failing that as a string).
fn number(n: Num) -> String {
    if let Some(u) = n.to_u128() {
        u.to_string()
    } else if let Some(i) = n.to_i128() {
        i.to_string()
    } else {
        let f = n.to_f64().unwrap_or_default();
        let text = f.to_string();
        if f.is_finite() && !text.contains('.') {
            text + ".0"
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use secrecy::SecretString;

    use super::super::LogFormat;
    use super::*;

    /// Settings unlike the defaults in every section, with strings figment would misread bare
    /// (so they must be quoted, with every kind of escape) and odd ones it reads back bare.
    fn unusual_settings() -> Settings {
        let mut s = Settings::default();
        s.database.url = "postgres://u:p@db.example:6543/kiln_x?sslmode=disable".into();
        s.database.max_connections = 3;
        s.redis.queue = "kiln-test-01jabc".into();
        s.redis.poll_interval_ms = 100;
        s.redis.heartbeat_secs = 2;
        s.redis.missed_heartbeats = 5;
        s.worker.shutdown_timeout_secs = 5;
        s.storage.endpoint = "http://[::1]:3900".into();
        s.storage.access_key_id = "12345".into();
        // Bare, figment would read `quoted`: quoted, with its quotes escaped.
        s.storage.secret_access_key = SecretString::from("\"quoted\"".to_owned());
        s.storage.force_path_style = false;
        s.storage.key_prefix = "true".into();
        s.api.listen = "[::1]:0".parse().unwrap();
        s.api.allowed_content_types = vec!["image/jpeg".into(), "x/y, z".into()];
        // Bare, figment would trim the space: quoted, with `\\`, `\t` and `\u0001` escapes.
        s.auth.jwt_secret = SecretString::from(" 0123456789abcdef\\\t\u{1}".to_owned());
        s.worker.metrics_listen = "127.0.0.1:0".parse().unwrap();
        s.worker.concurrency = 7;
        s.worker.renditions[0].name = "small".into();
        s.worker.renditions[0].keep_metadata = true;
        s.worker.renditions[1].format = crate::domain::rendition::OutputFormat::Jpeg;
        s.worker.renditions[1].version = 3;
        s.telemetry.format = LogFormat::Json;
        // Figment cannot parse it as a value, so it reads it back bare as it is.
        s.telemetry.filter = "info,kiln_worker=debug,a\"b\" [c]".into();
        s.sweeper.enabled = false;
        s
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure signature, not ours
    fn to_env_round_trips_through_load() {
        let want = unusual_settings();
        want.validate().unwrap();
        let env = want.to_env();
        let get = |k: &str| &env.iter().find(|(n, _)| n == k).unwrap().1;
        assert_eq!(get("KILN__DATABASE__MAX_CONNECTIONS"), "3");
        assert_eq!(get("KILN__STORAGE__KEY_PREFIX"), "\"true\"");
        assert_eq!(get("KILN__REDIS__QUEUE"), "kiln-test-01jabc");
        assert_eq!(get("KILN__STORAGE__SECRET_ACCESS_KEY"), r#""\"quoted\"""#);
        assert_eq!(
            get("KILN__AUTH__JWT_SECRET"),
            r#"" 0123456789abcdef\\\t\u0001""#
        );
        assert_eq!(
            get("KILN__API__ALLOWED_CONTENT_TYPES"),
            "[\"image/jpeg\",\"x/y, z\"]"
        );
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            // A file and env that the pairs must override, key by key.
            jail.create_file("kiln.toml", "[worker]\nconcurrency = 1\n")?;
            jail.set_env("KILN__REDIS__QUEUE", "other");
            for (k, v) in &env {
                jail.set_env(k, v);
            }
            let got = Settings::load(Some(Path::new("kiln.toml"))).expect("load");
            // Serialized (secrets in clear), so every field is compared.
            assert_eq!(
                serde_json::to_value(&got).unwrap(),
                serde_json::to_value(&want).unwrap()
            );
            Ok(())
        });
    }
}
