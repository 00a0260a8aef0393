//! `/openapi.json`: the served document is valid OpenAPI (checked by `openapi-spec-validator`,
//! which `scripts/deps` installs), and it lists exactly the routes the app serves.

use std::collections::BTreeSet;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app};

/// The routes of the README's API table, as a floor: the document may not lose any of them.
const KNOWN_ROUTES: [(&str, &str); 18] = [
    ("post", "/v1/uploads"),
    ("get", "/v1/uploads"),
    ("get", "/v1/uploads/{id}"),
    ("delete", "/v1/uploads/{id}"),
    ("post", "/v1/uploads/{id}/restore"),
    ("get", "/v1/uploads/{id}/original"),
    ("post", "/v1/uploads/{id}/shares"),
    ("get", "/v1/uploads/{id}/shares"),
    ("delete", "/v1/uploads/{id}/shares/{share_id}"),
    ("get", "/s/{token}"),
    ("delete", "/v1/admin/owners/{owner}"),
    ("post", "/v1/uploads/{id}/complete"),
    ("get", "/v1/admin/jobs"),
    ("post", "/v1/admin/jobs/replay"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/openapi.json"),
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every (method, path template) of an OpenAPI document.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("the document has paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| ((*m).to_owned(), path.clone()))
        })
        .collect()
}

async fn fetch_document(app: &TestApp) -> Value {
    let resp = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    resp.json().await.unwrap()
}

/// The `error.code` of a JSON error body, if the body is one.
fn error_code(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["error"]["code"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn openapi_document_validates() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    assert_eq!(doc["info"]["title"], "Kiln");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3."),
        "not OpenAPI 3: {}",
        doc["openapi"]
    );

    let file = std::env::temp_dir().join(format!("kiln-openapi-{}.json", ulid::Ulid::generate()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let out = Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .expect("run python3 (scripts/deps installs openapi-spec-validator)");
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected /openapi.json ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("OK"),
        "unexpected validator output: {stdout}"
    );

    // Security requirements name schemes by string; the validator does not check they exist.
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for (method, path) in operations(&doc) {
        for requirement in doc["paths"][&path][&method]["security"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for name in requirement.as_object().unwrap().keys() {
                assert!(
                    schemes.contains_key(name),
                    "{method} {path} requires undefined scheme {name}"
                );
            }
        }
    }
    app.finish().await;
}

#[tokio::test]
async fn openapi_covers_every_route() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let served = operations(&doc);

    // The app's router and the document are built from the same `routes!` declarations
    // (`kiln_api::routes::router`); the served document must list each of them, and the
    // README's routes.
    let declared = operations(&serde_json::to_value(kiln_api::routes::openapi()).unwrap());
    assert_eq!(
        served, declared,
        "/openapi.json differs from the router's routes"
    );
    for (method, path) in KNOWN_ROUTES {
        assert!(
            served.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is missing from /openapi.json"
        );
    }

    // The checks below can tell a route from no route: the fallback's code, and 405.
    let resp = app
        .client
        .get(format!("{}/v1/no-such-route", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        error_code(&resp.text().await.unwrap()).as_deref(),
        Some("route_not_found")
    );
    let resp = app
        .client
        .delete(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET,HEAD");
    assert_eq!(
        error_code(&resp.text().await.unwrap()).as_deref(),
        Some("method_not_allowed")
    );

    // Every documented operation is served: called without a token, with an unknown id and an
    // empty body, each answers from its handler with a status the document lists for it.
    let unknown_id = kiln_shared::domain::UploadId::new().to_string();
    for (method, path) in &served {
        let op = &doc["paths"][path][method];
        let url = format!(
            "{}{}",
            app.address,
            path.replace("{id}", &unknown_id)
                .replace("{prefix}", "000000000000")
                .replace("{owner}", "nobody")
                .replace("{share_id}", "shr_000000000000000000000000")
                .replace("{token}", &"A".repeat(43))
        );
        assert!(!url.contains('{'), "unfilled path parameter in {path}");
        let mut req = app.client.request(
            Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
            url,
        );
        if op.get("requestBody").is_some() {
            req = req.json(&serde_json::json!({}));
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert_ne!(
            error_code(&body).as_deref(),
            Some("route_not_found"),
            "{method} {path} is documented but not served"
        );
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is documented but its method is not served"
        );
        assert!(
            op["responses"].get(status.as_str()).is_some(),
            "{method} {path} answered {status}, which its document does not list: {body}"
        );
    }
    app.finish().await;
}

#[tokio::test]
async fn openapi_carries_the_server_limits_error_bodies_and_links() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let schemas = &doc["components"]["schemas"];

    // The configured limits, filled in when the document was built.
    let create = &schemas["CreateUpload"]["properties"];
    assert_eq!(
        create["content_type"]["enum"],
        serde_json::json!(app.settings.api.allowed_content_types)
    );
    assert_eq!(
        create["byte_size"]["maximum"],
        app.settings.api.max_upload_bytes
    );

    // Every error status of an API route is an `ErrorBody` (a 408 from the timeout layer has
    // no body; a 302 redirect has none either; `/readyz` answers 503 with its probe body).
    let error_body = serde_json::json!({"$ref": "#/components/schemas/ErrorBody"});
    for (method, path) in operations(&doc) {
        if !path.starts_with("/v1/") {
            continue;
        }
        for (status, response) in doc["paths"][&path][&method]["responses"]
            .as_object()
            .unwrap()
        {
            if status.starts_with('2') || status.starts_with('3') || status == "408" {
                continue;
            }
            let response = match response["$ref"].as_str() {
                Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
                None => response,
            };
            assert_eq!(
                response["content"]["application/json"]["schema"], error_body,
                "{method} {path} {status}"
            );
        }
    }

    // Links: create → get and complete, complete → get, by the upload's id.
    let links =
        |path: &str, status: &str| doc["paths"][path]["post"]["responses"][status]["links"].clone();
    let by_id = serde_json::json!({"id": "$response.body#/id"});
    let created = links("/v1/uploads", "201");
    for op in ["get_upload", "complete_upload"] {
        assert_eq!(created[op]["operationId"], op);
        assert_eq!(created[op]["parameters"], by_id);
    }
    let completed = links("/v1/uploads/{id}/complete", "202");
    assert_eq!(completed["get_upload"]["operationId"], "get_upload");
    assert_eq!(completed["get_upload"]["parameters"], by_id);
    app.finish().await;
}
