//! Token keys: the fleet refuses a missing, short or published signing key; `iss`, `aud` and
//! the lifetime cap hold on mint and verify; tokens verify with an Ed25519 PEM public key or
//! an RSA JWK Set, and a token cannot switch algorithm. Against the real API (in-process and
//! `kiln api`/`kiln worker` processes).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kiln_shared::Settings;
use kiln_shared::auth::{Audience, Claims};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{TestApp, TestOptions, kiln_command, random_secret, spawn_app_with};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(app: &TestApp, ttl: u64) -> Claims {
    let iat = now();
    Claims {
        sub: app.owner.to_string(),
        scope: String::new(),
        exp: iat + ttl,
        iat,
        iss: None,
        aud: None,
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Claims) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(secret: &str, claims: &Claims) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(secret.as_bytes()),
        None,
        claims,
    )
}

/// `GET /v1/uploads` with `token`: 200 when it verifies, 401 when not.
async fn status_with(app: &TestApp, token: &str) -> StatusCode {
    app.client
        .get(format!("{}/v1/uploads", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

/// What `kiln {role}` prints on stderr when it refuses to start with `change`d settings.
async fn refusal(role: &str, change: impl FnOnce(&mut Settings)) -> String {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let mut settings = app.settings.clone();
    change(&mut settings);
    let mut cmd = kiln_command(role, &settings);
    // `kiln_command` gives a worker no key; this test gives it the changed one anyway.
    let secret = secrecy::ExposeSecret::expose_secret(&settings.auth.jwt_secret).to_owned();
    cmd.env("KILN__AUTH__JWT_SECRET", secret)
        .stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("kiln exits within 30 s")
        .unwrap();
    app.finish().await;
    assert!(!out.status.success(), "kiln {role} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn the_api_refuses_a_missing_short_or_published_key() {
    for (secret, says) in [
        ("", "auth.jwt_secret"),
        ("0123456789abcdef0123", "at least 32"),
        ("dev-secret-change-me", "published or guessable"),
    ] {
        let err = refusal("api", |s| s.auth.jwt_secret = secret.to_owned().into()).await;
        assert!(err.contains("auth.jwt_secret"), "{secret:?}: {err}");
        assert!(err.contains(says), "{secret:?}: {err}");
    }
}

#[tokio::test]
async fn a_worker_refuses_a_short_key_and_never_needs_one() {
    // A shared configuration with a weak key is refused by every process.
    let err = refusal("worker", |s| {
        s.auth.jwt_secret = "short-secret".to_owned().into();
    })
    .await;
    assert!(err.contains("auth.jwt_secret"), "{err}");
    // Without any key the worker runs and processes uploads (the other tests' workers are
    // started that way: `kiln_command` gives a worker no key).
}

#[tokio::test]
async fn a_token_signed_with_the_old_default_is_refused() {
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        ..Default::default()
    })
    .await;
    let forged = hs256("dev-secret-change-me", &claims(&app, 600));
    assert_eq!(status_with(&app, &forged).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_with(&app, &app.token).await, StatusCode::OK);
    app.finish().await;
}

#[tokio::test]
async fn issuer_audience_and_lifetime_are_checked() {
    let secret = random_secret();
    let key = secrecy::ExposeSecret::expose_secret(&secret).to_owned();
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        settings: Some(Box::new(move |s: &mut Settings| {
            s.auth.jwt_secret = secret;
            s.auth.issuer = Some("https://photos.example".into());
            s.auth.audience = Some("kiln".into());
            s.auth.max_ttl_secs = 3600;
            s.auth.token_ttl_secs = 600;
        })),
        ..Default::default()
    })
    .await;
    // The app's own token (minted by `Signer`) carries iss and aud.
    assert_eq!(status_with(&app, &app.token).await, StatusCode::OK);
    let good = Claims {
        iss: Some("https://photos.example".into()),
        aud: Some(Audience::Many(vec!["other".into(), "kiln".into()])),
        ..claims(&app, 600)
    };
    assert_eq!(status_with(&app, &hs256(&key, &good)).await, StatusCode::OK);
    let cases = [
        (
            "no iss",
            Claims {
                iss: None,
                ..good.clone()
            },
        ),
        (
            "wrong iss",
            Claims {
                iss: Some("https://evil.example".into()),
                ..good.clone()
            },
        ),
        (
            "no aud",
            Claims {
                aud: None,
                ..good.clone()
            },
        ),
        (
            "wrong aud",
            Claims {
                aud: Some(Audience::One("other".into())),
                ..good.clone()
            },
        ),
        (
            "too long",
            Claims {
                exp: good.iat + 3601,
                ..good.clone()
            },
        ),
        (
            "issued in the future",
            Claims {
                iat: now() + 600,
                exp: now() + 900,
                ..good.clone()
            },
        ),
    ];
    for (what, c) in cases {
        assert_eq!(
            status_with(&app, &hs256(&key, &c)).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    // Minting is capped too: `kiln token --ttl` past auth.max_ttl_secs fails and names it.
    let out = kiln_command("token", &app.settings)
        .args(["--sub", "alice", "--ttl", "18446744073709551615"])
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.max_ttl_secs"));
    app.finish().await;
}

/// `openssl` writes a key pair into `dir`: `(private PEM, public key DER)`.
fn keypair(dir: &Path, algorithm: &str) -> (Vec<u8>, Vec<u8>) {
    let private = dir.join(format!("{algorithm}.pem"));
    let mut genpkey = Command::new("openssl");
    genpkey
        .args(["genpkey", "-algorithm", algorithm, "-out"])
        .arg(&private);
    if algorithm == "RSA" {
        genpkey.args(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    assert!(genpkey.status().unwrap().success(), "openssl genpkey");
    let der = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(der.status.success(), "openssl pkey");
    (std::fs::read(&private).unwrap(), der.stdout)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{name}-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn tokens_verify_with_an_ed25519_public_key_and_cannot_switch_algorithm() {
    let dir = temp_dir("kiln-keys-ed");
    let (private, _) = keypair(&dir, "ED25519");
    let public = dir.join("public.pem");
    let pem = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(dir.join("ED25519.pem"))
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&public, &pem).unwrap();
    let file = public.clone();
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        settings: Some(Box::new(move |s: &mut Settings| {
            s.auth.jwt_secret = SecretString::from(String::new());
            s.auth.public_key_file = Some(file);
        })),
        ..Default::default()
    })
    .await;
    let key = EncodingKey::from_ed_pem(&private).unwrap();
    let c = claims(&app, 600);
    assert_eq!(
        status_with(&app, &sign(Algorithm::EdDSA, &key, None, &c)).await,
        StatusCode::OK
    );
    // RFC 8725 §2.1: the public key used as an HMAC secret must not verify.
    let confused = sign(Algorithm::HS256, &EncodingKey::from_secret(&pem), None, &c);
    assert_eq!(status_with(&app, &confused).await, StatusCode::UNAUTHORIZED);
    let other = EncodingKey::from_ed_pem(&keypair(&dir, "ED25519").0).unwrap();
    assert_eq!(
        status_with(&app, &sign(Algorithm::EdDSA, &other, None, &c)).await,
        StatusCode::UNAUTHORIZED
    );
    // `kiln token` cannot mint with a public key.
    let out = kiln_command("token", &app.settings)
        .args(["--sub", "alice"])
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    app.finish().await;
    std::fs::remove_dir_all(dir).ok();
}

/// The RSA modulus of a SubjectPublicKeyInfo DER, via `openssl rsa -modulus` (hex).
fn rsa_modulus(private_pem: &Path) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(["rsa", "-noout", "-modulus", "-in"])
        .arg(private_pem)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    hex::decode(text.trim().trim_start_matches("Modulus=")).unwrap()
}

#[tokio::test]
async fn tokens_verify_with_an_rsa_jwk_set_by_kid() {
    let dir = temp_dir("kiln-keys-rsa");
    let (private, _) = keypair(&dir, "RSA");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let n = b64.encode(rsa_modulus(&dir.join("RSA.pem")));
    let jwks = json!({ "keys": [
        { "kty": "RSA", "kid": "2026-11", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB" }
    ]});
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let path = file.clone();
    let app = spawn_app_with(TestOptions {
        no_worker: true,
        settings: Some(Box::new(move |s: &mut Settings| {
            s.auth.jwt_secret = SecretString::from(String::new());
            s.auth.jwks_file = Some(path);
        })),
        ..Default::default()
    })
    .await;
    let key = EncodingKey::from_rsa_pem(&private).unwrap();
    let c = claims(&app, 600);
    let ok = sign(Algorithm::RS256, &key, Some("2026-11"), &c);
    assert_eq!(status_with(&app, &ok).await, StatusCode::OK);
    for (what, token) in [
        (
            "unknown kid",
            sign(Algorithm::RS256, &key, Some("2025-01"), &c),
        ),
        ("no kid", sign(Algorithm::RS256, &key, None, &c)),
        ("RS512", sign(Algorithm::RS512, &key, Some("2026-11"), &c)),
    ] {
        assert_eq!(
            status_with(&app, &token).await,
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }
    app.finish().await;
    std::fs::remove_dir_all(dir).ok();
}
