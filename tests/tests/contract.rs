//! The OpenAPI contract against the code, cheaply and in Rust (schemathesis does it thoroughly,
//! tests/tests/conformance.rs):
//! - every status each route answers to the usual bad requests is documented for that route;
//! - every problem type the code can emit has its section in docs/problems.md, and every section
//!   is a type the code emits.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use reqwest::Method;
use serde_json::Value;
use support::{ADMIN_EMAIL, TestMesh};

/// The problem types the code can emit: the slug next to a status in every place a problem is
/// made (`ApiError::new`, its constructors, the gateway's bare-status table, the router's
/// refusals), read from the source outside its tests.
fn emitted_problem_types() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pattern = regex::Regex::new(
        r#"(?:StatusCode|S)::[A-Z_]+,\s*"([a-z]+(?:-[a-z]+)*)"|=>\s*\{?\s*\(\s*"([a-z]+(?:-[a-z]+)*)",\s*""#,
    )
    .unwrap();
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for dir in ["services/gateway/src", "gateway-router/src", "services/mesh-core/src"] {
        let mut stack = vec![root.join(dir)];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for captures in pattern.captures_iter(code) {
                let slug = captures.get(1).or(captures.get(2)).unwrap().as_str().to_owned();
                found.entry(slug).or_default().insert(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn every_problem_type_is_documented() {
    let emitted = emitted_problem_types();
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/problems.md")).unwrap();
    let documented: BTreeSet<String> =
        doc.lines().filter_map(|l| l.strip_prefix("## ")).map(|s| s.trim().to_owned()).collect();
    println!("{} problem types emitted, {} documented", emitted.len(), documented.len());
    // The scan finds the types it must: if it found none, it would pass vacuously.
    for known in ["invalid-body", "quota-exceeded", "rate-limited", "bad-framing", "method-not-allowed"] {
        assert!(emitted.contains_key(known), "the scan misses {known}: {emitted:?}");
    }
    let undocumented: Vec<_> = emitted.iter().filter(|(slug, _)| !documented.contains(*slug)).collect();
    assert!(undocumented.is_empty(), "emitted but not in docs/problems.md: {undocumented:?}");
    let stale: Vec<_> = documented.iter().filter(|slug| !emitted.contains_key(*slug)).collect();
    assert!(stale.is_empty(), "documented in docs/problems.md but never emitted: {stale:?}");
}

/// The requests every operation is tried with: a name, credentials, body, content type.
struct Try {
    name: &'static str,
    auth: Option<String>,
    body: Option<(&'static str, Vec<u8>)>,
    path_id: &'static str,
    query: &'static str,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_documents_every_status_it_answers() {
    let t = TestMesh::start().await;
    let (_, token, _) = t.user(ADMIN_EMAIL).await;
    let document: Value =
        t.http.get(format!("{}/openapi.json", t.base)).send().await.unwrap().json().await.unwrap();
    let fresh_id = mesh_core::ids::new_id();
    let big = format!("{{\"x\": \"{}\"}}", "a".repeat(70 * 1024)).into_bytes();
    let tries = |token: &str| {
        let with = |name, body: Option<(&'static str, Vec<u8>)>, path_id, query| Try {
            name,
            auth: Some(token.to_owned()),
            body,
            path_id,
            query,
        };
        let json = |bytes: &[u8]| Some(("application/json", bytes.to_vec()));
        vec![
            Try { auth: None, ..with("no credentials", None, "id", "") },
            Try { auth: Some("e30.e30.e30".into()), ..with("a forged token", None, "id", "") },
            with("no body", None, "id", ""),
            with("not JSON", Some(("text/plain", b"hello".to_vec())), "id", ""),
            with("malformed JSON", json(b"{\"a\":"), "id", ""),
            with("an unknown field", json(b"{\"nope\": 1}"), "id", ""),
            with("a body too large", json(&big), "id", ""),
            with("not an id", None, "bad", ""),
            with("a bad query", None, "id", "?limit=many&window=1y&cursor=x"),
        ]
    };
    let mut undocumented = Vec::new();
    let mut tried = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented: BTreeSet<&str> =
                operation["responses"].as_object().unwrap().keys().map(String::as_str).collect();
            // Logout revokes the session it is called with: a session of its own each time.
            let session = if path == "/v1/auth/logout" {
                t.login(ADMIN_EMAIL).await.body["access_token"].as_str().unwrap().to_owned()
            } else {
                token.clone()
            };
            for attempt in tries(&session) {
                let id = if attempt.path_id == "id" { fresh_id.as_str() } else { "not-an-id" };
                let url = format!("{}{}{}", t.base, path.replace("{id}", id), attempt.query);
                let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut request = t.http.request(method.clone(), &url);
                if let Some(auth) = &attempt.auth {
                    request = request.bearer_auth(auth);
                }
                if path == "/v1/orders" {
                    request = request.header("idempotency-key", format!("contract-{tried}"));
                }
                if let Some((content_type, body)) = &attempt.body {
                    request = request.header("content-type", *content_type).body(body.clone());
                }
                // Streams answer their headers, then stay open: the status is all this needs.
                let response = request.send().await.unwrap();
                let status = response.status().as_u16().to_string();
                drop(response);
                tried += 1;
                if !documented.contains(status.as_str()) {
                    undocumented.push(format!("{method} {path} with {}: {status}", attempt.name));
                }
            }
        }
    }
    println!("{tried} requests over {} paths", document["paths"].as_object().unwrap().len());
    assert!(tried > 100, "the document lists too few operations: {tried} requests");
    assert!(undocumented.is_empty(), "answered but not documented:\n{}", undocumented.join("\n"));
}
