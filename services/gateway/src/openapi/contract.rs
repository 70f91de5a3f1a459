//! What turns the generated document into a contract a client can be generated from.
//!
//! utoipa gives the shapes of the handler types. What the handlers and the services behind them
//! enforce, and what every layer in front of a handler can answer, is added here, in one place:
//! - [`FIELD_RULES`]: each request field's rule (pattern, length, range), written to accept
//!   exactly what the code accepts: a schema-valid request is never refused as invalid, and a
//!   schema-invalid one never accepted (schemathesis checks both ways,
//!   tests/tests/conformance.rs);
//! - [`responses`]: the statuses every route answers besides its own (authentication,
//!   metering, body and parameter problems, shedding, timeouts), each with the problem+json body
//!   and its headers;
//! - the security schemes, and [`LINKS`] between operations.
//!
//! JSON, not utoipa's builders: the rules need keywords (`not`, `propertyNames`) utoipa's
//! attributes do not carry, and the router merges the gateways' documents as JSON anyway.

use serde_json::{Map, Value, json};

use mesh_core::contracts::{MAX_ORDER_LINES, MAX_QUANTITY, MAX_TOKEN_LEN};
use mesh_core::ids::ID_PATTERN;
use mesh_core::page::MAX_LIMIT;

/// Operations anyone may call: no credentials, not metered.
pub const PUBLIC_OPERATIONS: &[&str] = &["register", "login", "refresh", "jwks"];

/// Characters no text field accepts: Unicode's control characters (`char::is_control`).
const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// Control characters and Unicode's White_Space (`char::is_whitespace`), the set excluded from
/// emails and required to be absent from at least one character of a label.
const CONTROL_OR_SPACE: &str = r"\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// A label for people (display name, API key name, article title): at most `max` characters,
/// one of them not white space, none a control character (the services trim it, then check it).
fn label(max: usize) -> Value {
    json!({
        "type": "string",
        "maxLength": max,
        "pattern": format!("^[^{CONTROL}]*[^{CONTROL_OR_SPACE}][^{CONTROL}]*$"),
    })
}

/// An email as auth takes it: `local@domain`, the local part 1 to 64 characters, the domain of
/// non-empty dot-separated labels, 254 characters in all, no white space or control characters.
fn email() -> Value {
    let c = format!("[^{CONTROL_OR_SPACE}@]");
    let d = format!("[^{CONTROL_OR_SPACE}@.]");
    json!({
        "type": "string",
        "maxLength": 254,
        "pattern": format!("^{c}{{1,64}}@(?:{d}+\\.)*{d}+$"),
        "examples": ["ada@example.com"],
    })
}

fn id() -> Value {
    json!({"type": "string", "pattern": ID_PATTERN, "examples": ["01JD8X0000000000000000AAAA"]})
}

/// Each request field's rule, by schema and property. Where a rule lives in a service, the
/// comment names it; the conformance run fails when the two drift apart.
fn field_rules() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        // auth validate::email, new_password, label.
        ("RegisterBody", "email", email()),
        (
            "RegisterBody",
            "password",
            json!({
                "type": "string", "minLength": 10, "maxLength": 128,
                "not": {"pattern": r"^([\s\S])\1*$"},
                "description": "10 to 128 characters, not one character repeated, not the email address",
                "examples": ["correct horse battery"],
            }),
        ),
        ("RegisterBody", "display_name", label(64)),
        // auth validate::email, presented_password.
        ("LoginBody", "email", email()),
        (
            "LoginBody",
            "password",
            json!({"type": "string", "minLength": 1, "maxLength": 128, "examples": ["correct horse battery"]}),
        ),
        // auth validate::secret.
        ("RefreshBody", "refresh_token", json!({"type": "string", "minLength": 1, "maxLength": 256})),
        ("CreateApiKeyBody", "name", label(64)),
        // user validate::display_name, bio.
        ("UpdateProfileBody", "display_name", nullable(label(64))),
        (
            "UpdateProfileBody",
            "bio",
            nullable(json!({
                "type": "string", "maxLength": 500,
                "pattern": r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$",
            })),
        ),
        // articles validate::new_article.
        ("CreateArticleBody", "title", label(200)),
        (
            "CreateArticleBody",
            "body",
            json!({
                "type": "string", "maxLength": 10_000,
                "pattern": r"^[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]*$",
            }),
        ),
        (
            "CreateArticleBody",
            "price_cents",
            json!({"type": "integer", "minimum": 0, "maximum": 1_000_000_000}),
        ),
        ("CreateArticleBody", "stock", json!({"type": "integer", "minimum": 0, "maximum": 1_000_000})),
        // mesh_core::contracts::check_order_lines.
        (
            "CreateOrderBody",
            "items",
            json!({
                "type": "array", "minItems": 1, "maxItems": MAX_ORDER_LINES,
                "items": {"$ref": "#/components/schemas/OrderLine"},
            }),
        ),
        ("OrderLine", "article_id", id()),
        ("OrderLine", "quantity", json!({"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY})),
        // analytics validate::event_type, properties.
        (
            "EventBody",
            "type",
            json!({"type": "string", "pattern": "^[a-z0-9_.-]{1,64}$", "examples": ["page.view"]}),
        ),
        (
            "EventBody",
            "properties",
            json!({
                "type": "object", "maxProperties": 32,
                "propertyNames": {"minLength": 1, "maxLength": 64, "pattern": format!("^[^{CONTROL}]*$")},
                "additionalProperties": {"type": "string", "maxLength": 512},
            }),
        ),
    ]
}

fn nullable(mut schema: Value) -> Value {
    schema["type"] = json!(["string", "null"]);
    schema
}

/// Rules of parameters, by name and place.
fn parameter_rule(name: &str, place: &str) -> Option<Value> {
    Some(match (name, place) {
        ("id", "path") => id(),
        // Empty is the first page, as absent.
        ("cursor", "query") => {
            json!({"type": "string", "pattern": format!("^({})?$", ID_PATTERN.trim_matches(['^', '$']))})
        }
        ("limit", "query") => {
            json!({"type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "description": "0 or absent: 20"})
        }
        // articles search: MAX_QUERY_CHARS.
        ("q", "query") => json!({"type": "string", "maxLength": 200}),
        // analytics window::Window::parse.
        // analytics window::Window::parse; empty is the default, 1h.
        ("window", "query") => json!({"type": "string", "enum": ["", "5m", "15m", "1h", "6h", "24h", "7d"]}),
        // Empty is every type, as absent.
        ("type", "query") => json!({"type": "string", "pattern": "^[a-z0-9_.-]{0,64}$"}),
        ("Idempotency-Key", "header") => json!({
            "type": "string", "pattern": format!("^[\\u0021-\\u007e]{{1,{MAX_TOKEN_LEN}}}$"),
            "examples": ["order-2026-12-02-1"],
        }),
        // mesh_core::store::is_entry_id.
        ("last-event-id", "header") => json!({"type": "string", "pattern": r"^([0-9]{1,20}-[0-9]{1,20})?$"}),
        _ => return None,
    })
}

/// Links between operations (by operationId), so stateful testing and readers can follow
/// what one answer makes possible.
const LINKS: &[(&str, &str, &str, &str, &str)] = &[
    // (from operation, status, link name, to operation, parameters as JSON)
    ("create_order", "201", "GetOrder", "get_order", r#"{"id": "$response.body#/id"}"#),
    ("create_order", "201", "OrderEvents", "order_events", r#"{"id": "$response.body#/id"}"#),
    ("create_order", "202", "GetQueuedOrder", "get_order", r#"{"id": "$response.body#/id"}"#),
    ("list_orders", "200", "GetFirstOrder", "get_order", r#"{"id": "$response.body#/orders/0/id"}"#),
    ("list_orders", "200", "NextPage", "list_orders", r#"{"cursor": "$response.body#/next_cursor"}"#),
    ("create_article", "201", "GetArticle", "get_article", r#"{"id": "$response.body#/id"}"#),
    ("list_articles", "200", "GetFirstArticle", "get_article", r#"{"id": "$response.body#/articles/0/id"}"#),
    ("list_articles", "200", "NextPage", "list_articles", r#"{"cursor": "$response.body#/next_cursor"}"#),
    ("create_api_key", "201", "DeleteApiKey", "delete_api_key", r#"{"id": "$response.body#/id"}"#),
    ("list_api_keys", "200", "DeleteFirstApiKey", "delete_api_key", r#"{"id": "$response.body#/keys/0/id"}"#),
];

/// Makes the generated document the contract.
pub(super) fn apply(document: &mut Value) {
    components(document);
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        for (schema, property, rule) in field_rules() {
            if let Some(target) = schemas.get_mut(schema).and_then(|s| s["properties"].get_mut(property)) {
                merge_object(target, rule);
            }
        }
    }
    // user service UpdateProfile: something to update.
    if let Some(update) = document["components"]["schemas"].get_mut("UpdateProfileBody") {
        update["anyOf"] = json!([
            {"required": ["display_name"], "properties": {"display_name": {"type": "string"}}},
            {"required": ["bio"], "properties": {"bio": {"type": "string"}}},
        ]);
    }
    let Some(paths) = document["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else { continue };
        for (method, operation) in item.iter_mut() {
            responses(path, method, operation);
        }
    }
    links(document);
}

fn components(document: &mut Value) {
    let components = document["components"].as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut components = Value::Object(components);
    components["schemas"]["Problem"] = json!({
        "type": "object",
        "description": "RFC 9457 problem details; `type` resolves to its description (docs/problems.md).",
        "required": ["type", "title", "status", "detail", "instance"],
        "properties": {
            "type": {"type": "string", "pattern": "^/problems/[a-z-]+$", "examples": ["/problems/invalid-body"]},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string", "description": "what was wrong, naming the field"},
            "instance": {"type": "string", "description": "the request id (`x-request-id`)"},
        },
    });
    components["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "a session's access token from `POST /v1/auth/login`"},
        "apiKey": {"type": "apiKey", "in": "header", "name": mesh_core::headers::API_KEY,
                   "description": "an API key from `POST /v1/auth/api-keys`"},
    });
    let header = |description: &str, schema: Value| json!({"description": description, "schema": schema});
    let integer = json!({"type": "integer", "minimum": 0});
    let text = json!({"type": "string"});
    components["headers"] = json!({
        "x-request-id": header("the request's id, also the problem's `instance`", text.clone()),
        "Retry-After": header("seconds to wait before trying again", integer.clone()),
        "RateLimit-Limit": header("requests allowed in the quota window", integer.clone()),
        "RateLimit-Remaining": header("requests left in the quota window", integer.clone()),
        "RateLimit-Reset": header("seconds until the quota window resets", integer.clone()),
        "WWW-Authenticate": header("the scheme to authenticate with", text.clone()),
        "x-mesh-fallback": header(
            "set when the answer is not live: `cache` (last known), `degraded` or `queued`",
            json!({"type": "string", "enum": ["cache", "degraded", "queued"]}),
        ),
        "Age": header("seconds since a fallback answer was live", integer),
        "Cache-Status": header("RFC 9211: whether the gateway's response cache answered", text.clone()),
        "Location": header("the created (or queued) resource", text),
    });
    document["components"] = components;
}

/// The description of a status every route of a kind may answer.
fn common_description(status: u16) -> &'static str {
    match status {
        400 => "the request is invalid (the problem's `detail` names the field)",
        401 => "no credentials, or credentials that are not valid (expired, revoked, unknown)",
        413 => "the body is larger than the gateway accepts",
        415 => "the body is not `Content-Type: application/json`",
        422 => "the body is JSON but not of this shape (the `detail` names the field)",
        429 => "over the quota of your plan, or sending too fast; see `Retry-After`",
        500 => "an internal error",
        503 => "a service this needs is out, or the gateway is at capacity; see `Retry-After`",
        504 => "the request did not complete in time",
        _ => "an error",
    }
}

/// The problem answer of `status` ([`mesh_core::problem::openapi_response`]); a 429 here is
/// the quota's, which says how much is left.
fn error_response(status: u16, description: &str) -> Value {
    let mut response = mesh_core::problem::openapi_response(status, description);
    if status == 429 {
        for name in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
            response["headers"][name] = json!({"$ref": format!("#/components/headers/{name}")});
        }
    }
    response
}

fn responses(path: &str, method: &str, operation: &mut Value) {
    let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
    let public = PUBLIC_OPERATIONS.contains(&id.as_str());
    let has_body = operation.get("requestBody").is_some();
    if let Some(parameters) = operation.get_mut("parameters").and_then(Value::as_array_mut) {
        for parameter in parameters.iter_mut() {
            let (name, place) = (
                parameter["name"].as_str().unwrap_or_default(),
                parameter["in"].as_str().unwrap_or_default(),
            );
            if let Some(rule) = parameter_rule(name, place) {
                parameter["schema"] = rule;
            }
        }
    }
    let has_parameters = operation.get("parameters").and_then(Value::as_array).is_some_and(|p| !p.is_empty());

    let mut extra: Vec<u16> = vec![500, 503, 504];
    if !public {
        extra.extend([401, 429]);
        operation["security"] = json!([{"bearer": []}, {"apiKey": []}]);
    }
    if has_body {
        extra.extend([400, 413, 415, 422]);
    }
    if has_parameters {
        extra.push(400);
    }
    let responses = operation["responses"].as_object_mut().map(std::mem::take).unwrap_or_default();
    let mut responses: Map<String, Value> = responses;
    for status in extra {
        responses
            .entry(status.to_string())
            .or_insert_with(|| json!({"description": common_description(status)}));
    }
    for (status, response) in responses.iter_mut() {
        let code: u16 = status.parse().unwrap_or(0);
        if code >= 400 {
            let description = response["description"].as_str().filter(|d| !d.is_empty()).unwrap_or("");
            let description = if description.is_empty() { common_description(code) } else { description };
            *response = error_response(code, description);
            continue;
        }
        let headers = response["headers"].as_object_mut().map(std::mem::take).unwrap_or_default();
        let mut headers = Value::Object(headers);
        headers["x-request-id"] = json!({"$ref": "#/components/headers/x-request-id"});
        if !public {
            for name in ["RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"] {
                headers[name] = json!({"$ref": format!("#/components/headers/{name}")});
            }
        }
        if method == "get" && code == 200 {
            headers["x-mesh-fallback"] = json!({"$ref": "#/components/headers/x-mesh-fallback"});
            headers["Age"] = json!({"$ref": "#/components/headers/Age"});
            if path.starts_with("/v1/articles") {
                headers["Cache-Status"] = json!({"$ref": "#/components/headers/Cache-Status"});
            }
        }
        if matches!(code, 201 | 202) && path != "/v1/auth/register" && path != "/v1/analytics/events" {
            headers["Location"] = json!({"$ref": "#/components/headers/Location"});
        }
        if code == 202 && id == "create_order" {
            headers["x-mesh-fallback"] = json!({"$ref": "#/components/headers/x-mesh-fallback"});
        }
        if response["description"].as_str().is_none_or(str::is_empty) {
            response["description"] = json!(default_description(code));
        }
        response["headers"] = headers;
    }
    operation["responses"] = Value::Object(responses);
}

fn default_description(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "created",
        202 => "accepted",
        204 => "done; no body",
        _ => "success",
    }
}

fn links(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else { return };
    let known: Vec<String> = paths
        .values()
        .filter_map(Value::as_object)
        .flat_map(|item| item.values().filter_map(|op| op["operationId"].as_str().map(str::to_owned)))
        .collect();
    for item in paths.values_mut().filter_map(Value::as_object_mut) {
        for operation in item.values_mut() {
            let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
            for (from, status, name, to, parameters) in LINKS {
                if *from != id || !known.iter().any(|k| k == to) {
                    continue;
                }
                let Some(response) = operation["responses"].get_mut(*status) else { continue };
                let parameters: Value = serde_json::from_str(parameters).unwrap_or_default();
                response["links"][*name] = json!({"operationId": to, "parameters": parameters});
            }
        }
    }
}

/// Sets every key of `rule` on `target`, keeping the target's description. The generated
/// `format` and `minimum` (utoipa's for `u32`, `int32` from 0) give way to the rule's range.
fn merge_object(target: &mut Value, rule: Value) {
    let (Some(object), Value::Object(rule)) = (target.as_object_mut(), rule) else { return };
    object.remove("format");
    object.remove("minimum");
    object.extend(rule);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Domain;

    #[test]
    fn every_field_rule_lands_on_a_real_property() {
        let mut missing = Vec::new();
        for (schema, property, _) in field_rules() {
            let found = [Domain::Identity, Domain::Business].into_iter().any(|domain| {
                let document = super::super::document(domain);
                document["components"]["schemas"][schema]["properties"].get(property).is_some()
            });
            if !found {
                missing.push(format!("{schema}.{property}"));
            }
        }
        assert!(missing.is_empty(), "rules of no property: {missing:?}");
    }

    #[test]
    fn every_error_answer_is_a_problem_with_a_request_id() {
        for domain in [Domain::Identity, Domain::Business] {
            let document = super::super::document(domain);
            for (path, item) in document["paths"].as_object().unwrap() {
                for (method, operation) in item.as_object().unwrap() {
                    for (status, response) in operation["responses"].as_object().unwrap() {
                        assert!(
                            response["headers"].get("x-request-id").is_some(),
                            "{method} {path} {status}"
                        );
                        if status.as_str() >= "400" {
                            let problem = &response["content"]["application/problem+json"]["schema"]["$ref"];
                            assert_eq!(problem, "#/components/schemas/Problem", "{method} {path} {status}");
                        }
                    }
                }
            }
        }
    }
}
