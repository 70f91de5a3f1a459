//! Proxy header hygiene: hop-by-hop headers, forwarding headers, request ids, trace context.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

pub use mesh_core::headers::{IDEMPOTENCY_KEY, MESH_FAULT, REQUEST_ID, TRACEPARENT};

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// The client's request id when sane (printable ASCII, at most 128 bytes), else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| mesh_core::contracts::is_token(v))
        .map(str::to_owned)
        .unwrap_or_else(mesh_core::ids::new_id)
}

/// Whether `value` is a W3C `traceparent` this router can pass on (version 00, non-zero ids).
pub fn is_valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    parts.len() == 4
        && parts[0] == "00"
        && hex(parts[1], 32)
        && parts[1].bytes().any(|b| b != b'0')
        && hex(parts[2], 16)
        && parts[2].bytes().any(|b| b != b'0')
        && hex(parts[3], 2)
}

/// `client` as a header value; in `Forwarded`, IPv6 is quoted and bracketed (RFC 7239 §6).
fn client_text(client: IpAddr, forwarded: bool) -> String {
    match client {
        IpAddr::V6(ip) if forwarded => format!("\"[{ip}]\""),
        ip => ip.to_string(),
    }
}

fn client_value(client: IpAddr, forwarded: bool) -> HeaderValue {
    HeaderValue::from_str(&client_text(client, forwarded)).expect("an address is a valid header value")
}

/// A new sampled trace context for a request that came without a valid one.
pub fn new_traceparent() -> String {
    format!("00-{}-{}-01", mesh_core::ids::random_hex(16), mesh_core::ids::random_hex(8))
}

/// Sets what the gateway needs to know about the hop: request id, trace context, and who the
/// client is: `X-Forwarded-For` and `Forwarded` *replaced* by the one client address the router
/// determined (`client`, see [`mesh_core::forwarded`]). A client-written chain is never passed
/// on: whatever it said was either spoofed (untrusted peer) or already consumed (trusted
/// proxies), so the gateway, which trusts the router, reads the client from the last hop.
pub fn prepare_forwarded(headers: &mut HeaderMap, client: IpAddr, request_id: &str) {
    strip_hop_by_hop(headers);
    headers.insert("x-forwarded-for", client_value(client, false));
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let forwarded = format!("for={};proto=http", client_text(client, true));
    headers.remove(header::FORWARDED);
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert(header::FORWARDED, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, v);
    }
    let traceparent_ok =
        headers.get(TRACEPARENT).and_then(|v| v.to_str().ok()).is_some_and(is_valid_traceparent);
    if !traceparent_ok {
        headers.remove("tracestate");
        if let Ok(v) = HeaderValue::from_str(&new_traceparent()) {
            headers.insert(TRACEPARENT, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_stripped() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, "keep-alive, x-secret-hop".parse().unwrap());
        headers.insert("keep-alive", "timeout=5".parse().unwrap());
        headers.insert("x-secret-hop", "1".parse().unwrap());
        headers.insert(header::TE, "trailers".parse().unwrap());
        headers.insert(header::UPGRADE, "websocket".parse().unwrap());
        headers.insert("proxy-authorization", "Basic x".parse().unwrap());
        headers.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn forwarding_headers_name_only_the_client_and_trace_context_is_kept_or_started() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        headers.insert(header::FORWARDED, "for=198.51.100.1".parse().unwrap());
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert(TRACEPARENT, parent.parse().unwrap());
        prepare_forwarded(&mut headers, "127.0.0.1".parse().unwrap(), "rid-1");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "a client's chain is replaced");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers.get_all(header::FORWARDED).iter().count(), 1);
        assert_eq!(headers[header::FORWARDED], "for=127.0.0.1;proto=http");
        assert_eq!(headers[REQUEST_ID], "rid-1");
        assert_eq!(headers[TRACEPARENT], parent);

        let mut fresh = HeaderMap::new();
        fresh.insert(TRACEPARENT, "00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse().unwrap());
        prepare_forwarded(&mut fresh, "::1".parse().unwrap(), "rid-2");
        let started = fresh[TRACEPARENT].to_str().unwrap();
        assert!(is_valid_traceparent(started), "{started}");
        assert_eq!(fresh[header::FORWARDED], "for=\"[::1]\";proto=http");
        assert_eq!(fresh["x-forwarded-for"], "::1");
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, "abc-1".parse().unwrap());
        assert_eq!(request_id(&headers), "abc-1");
        headers.insert(REQUEST_ID, "a b".parse().unwrap());
        assert_ne!(request_id(&headers), "a b");
    }
}
