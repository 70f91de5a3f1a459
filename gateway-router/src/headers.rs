//! Proxy header hygiene: hop-by-hop headers, forwarding headers, request ids, trace context.
//!
//! All of it runs on every request, so none of it parses a header name at run time (the names
//! are [`HeaderName`] constants), and what depends only on the connection (the client's
//! forwarding headers, when the client is the TCP peer) is built once per connection
//! ([`ClientHeaders`]).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use rand::RngCore;

pub use mesh_core::headers::{IDEMPOTENCY_KEY, MESH_FAULT, REQUEST_ID, TRACEPARENT};

/// The mesh's header names as [`HeaderName`]s: a `&str` name is parsed on each lookup.
pub mod names {
    use http::HeaderName;

    pub static REQUEST_ID: HeaderName = HeaderName::from_static(super::REQUEST_ID);
    pub static TRACEPARENT: HeaderName = HeaderName::from_static(super::TRACEPARENT);
    pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
    pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static(super::IDEMPOTENCY_KEY);
    pub static MESH_FAULT: HeaderName = HeaderName::from_static(super::MESH_FAULT);
    pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) names, noting which hop-by-hop ones are there: most messages
    // carry none, or only `Connection: keep-alive`.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // `keep-alive`, `upgrade` and the like go below anyway.
            .filter(|name| !HOP_BY_HOP.iter().any(|hop| name.eq_ignore_ascii_case(hop.as_str())))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

// === impl RequestId ===

/// A request's id, kept as the header value it travels in (the client's, shared, or a new
/// one), so it is neither copied into a `String` nor parsed again on its way out.
#[derive(Clone, Debug)]
pub struct RequestId(HeaderValue);

impl RequestId {
    pub fn as_str(&self) -> &str {
        // Only ever built from printable ASCII (checked, or a ULID).
        self.0.to_str().unwrap_or_default()
    }

    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

/// The client's request id when sane (printable ASCII, at most 128 bytes), else a new one.
pub fn request_id(headers: &HeaderMap) -> RequestId {
    let sane = headers
        .get(&names::REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(mesh_core::contracts::is_token))
        .cloned();
    RequestId(sane.unwrap_or_else(|| {
        HeaderValue::from_bytes(&mesh_core::ids::new_id_bytes()).expect("a ULID is a valid header value")
    }))
}

// === trace context ===

/// Whether `value` is a W3C `traceparent` this router can pass on (version 00, non-zero ids):
/// `00-<32 hex>-<16 hex>-<2 hex>`, lower-case hex.
pub fn is_valid_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    let nonzero = |s: &[u8]| s.iter().any(|b| *b != b'0');
    b.len() == 55
        && b[..3] == *b"00-"
        && b[35] == b'-'
        && b[52] == b'-'
        && hex(&b[3..35])
        && nonzero(&b[3..35])
        && hex(&b[36..52])
        && nonzero(&b[36..52])
        && hex(&b[53..55])
}

/// A new sampled trace context for a request that came without a valid one. Random from the
/// thread's generator (seeded once from the OS), not a system call per request.
pub fn new_traceparent() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut random = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut random);
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-01";
    // The trace id (16 bytes) at 3..35, the parent id (8 bytes) at 36..52.
    for (i, byte) in random.iter().enumerate() {
        let at = if i < 16 { 3 + 2 * i } else { 36 + 2 * (i - 16) };
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
    }
    HeaderValue::from_bytes(&text).expect("hex is a valid header value")
}

// === impl ClientHeaders ===

/// The forwarding headers that name one client: `X-Forwarded-For` and `Forwarded`. Built once
/// per connection for its TCP peer, and per request only when a trusted proxy names another
/// client.
#[derive(Clone, Debug)]
pub struct ClientHeaders {
    pub client: IpAddr,
    x_forwarded_for: HeaderValue,
    forwarded: HeaderValue,
}

impl ClientHeaders {
    pub fn new(client: IpAddr) -> Self {
        let x_forwarded_for =
            HeaderValue::from_str(&client.to_string()).expect("an address is a valid header value");
        // In `Forwarded`, IPv6 is quoted and bracketed (RFC 7239 §6).
        let forwarded = match client {
            IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto=http"),
            ip => format!("for={ip};proto=http"),
        };
        let forwarded = HeaderValue::from_str(&forwarded).expect("an address is a valid header value");
        Self { client, x_forwarded_for, forwarded }
    }

    /// The client's address as text (what `X-Forwarded-For` says).
    pub fn as_str(&self) -> &str {
        self.x_forwarded_for.to_str().unwrap_or_default()
    }
}

/// Sets what the gateway needs to know about the hop: request id, trace context, and who the
/// client is: `X-Forwarded-For` and `Forwarded` *replaced* by the one client address the router
/// determined (`client`, see [`mesh_core::forwarded`]). A client-written chain is never passed
/// on: whatever it said was either spoofed (untrusted peer) or already consumed (trusted
/// proxies), so the gateway, which trusts the router, reads the client from the last hop.
pub fn prepare_forwarded(headers: &mut HeaderMap, client: IpAddr, request_id: &str) {
    let id = HeaderValue::from_str(request_id).ok();
    forward_headers(headers, &ClientHeaders::new(client), id.as_ref());
}

/// [`prepare_forwarded`] with the client's headers and the request id already built.
pub fn forward_headers(headers: &mut HeaderMap, client: &ClientHeaders, request_id: Option<&HeaderValue>) {
    strip_hop_by_hop(headers);
    headers.insert(&names::X_FORWARDED_FOR, client.x_forwarded_for.clone());
    headers.insert(&names::X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    // `insert` replaces every value a client sent.
    headers.insert(header::FORWARDED, client.forwarded.clone());
    if let Some(id) = request_id {
        headers.insert(&names::REQUEST_ID, id.clone());
    }
    let traceparent_ok =
        headers.get(&names::TRACEPARENT).and_then(|v| v.to_str().ok()).is_some_and(is_valid_traceparent);
    if !traceparent_ok {
        headers.remove(&names::TRACESTATE);
        headers.insert(&names::TRACEPARENT, new_traceparent());
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
        assert_ne!(new_traceparent(), new_traceparent());
        assert_eq!(fresh[header::FORWARDED], "for=\"[::1]\";proto=http");
        assert_eq!(fresh["x-forwarded-for"], "::1");
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID, "abc-1".parse().unwrap());
        assert_eq!(request_id(&headers).as_str(), "abc-1");
        headers.insert(REQUEST_ID, "a b".parse().unwrap());
        assert_ne!(request_id(&headers).as_str(), "a b");
        assert!(mesh_core::ids::is_id(&request_id(&headers)), "a new id is a ULID");
    }
}
