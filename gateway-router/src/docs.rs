//! `/docs`: the API reference page, Swagger UI over the merged `/openapi.json`.
//!
//! Everything the page loads is included in the binary at build time: our page and its
//! initialiser (`assets/docs.html`, `assets/docs-init.js`) and Swagger UI itself, vendored into
//! `assets/docs/` by `scripts/vendor-swagger-ui.sh`. The page is served under a
//! Content-Security-Policy that allows scripts, styles and requests from this origin only, so it
//! loads nothing from elsewhere and "Try it out" can only call this router.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use axum::routing::get;
use http::header::{self, HeaderMap, HeaderValue};

/// The vendored `swagger-ui-dist` version; part of the asset URLs, so a new one is fetched anew.
const SWAGGER_UI_VERSION: &str = include_str!("../assets/docs/VERSION");

const PAGE: &str = include_str!("../assets/docs.html");
const INIT_JS: &[u8] = include_bytes!("../assets/docs-init.js");
const BUNDLE_JS: &[u8] = include_bytes!("../assets/docs/swagger-ui-bundle.js");
const BUNDLE_JS_GZ: &[u8] = include_bytes!("../assets/docs/swagger-ui-bundle.js.gz");
const BUNDLE_LICENSES: &[u8] = include_bytes!("../assets/docs/swagger-ui-bundle.js.LICENSE.txt");
const CSS: &[u8] = include_bytes!("../assets/docs/swagger-ui.css");
const FAVICON: &[u8] = include_bytes!("../assets/docs/favicon-32x32.png");

/// Scripts, styles and requests from this origin only; images also as `data:` URIs, which
/// Swagger UI's stylesheet uses for its icons. No inline script, no frames, no forms.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page and its initialiser change with the router: revalidated on every load.
const NO_CACHE: &str = "no-cache";
/// The vendored files are asked for with `?v=<version>` (see the page), so a cached copy is
/// always the right one.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The paths [`routes`] answers; the router's public port answers them itself.
pub const PATHS: [&str; 6] = [
    "/docs",
    "/docs/init.js",
    "/docs/swagger-ui-bundle.js",
    "/docs/swagger-ui-bundle.js.LICENSE.txt",
    "/docs/swagger-ui.css",
    "/docs/favicon-32x32.png",
];

static PAGE_HTML: LazyLock<String> =
    LazyLock::new(|| PAGE.replace("{swagger_ui_version}", SWAGGER_UI_VERSION.trim()));

/// The page and its assets.
pub fn routes() -> Router {
    let [page, init, bundle, licenses, css, favicon] = PATHS;
    Router::new()
        .route(page, get(|| async { page_response() }))
        .route(init, get(|| async { asset(INIT_JS, "text/javascript; charset=utf-8", NO_CACHE) }))
        .route(bundle, get(bundle_js))
        .route(licenses, get(|| async { asset(BUNDLE_LICENSES, "text/plain; charset=utf-8", IMMUTABLE) }))
        .route(css, get(|| async { asset(CSS, "text/css; charset=utf-8", IMMUTABLE) }))
        .route(favicon, get(|| async { asset(FAVICON, "image/png", IMMUTABLE) }))
}

fn page_response() -> Response {
    let mut response = asset(PAGE_HTML.as_bytes(), "text/html; charset=utf-8", NO_CACHE);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// The bundle (1.7 MB) gzipped (0.46 MB) to clients that accept it.
async fn bundle_js(headers: HeaderMap) -> Response {
    let mut response = if accepts_gzip(&headers) {
        let mut response = asset(BUNDLE_JS_GZ, "text/javascript; charset=utf-8", IMMUTABLE);
        response.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        response
    } else {
        asset(BUNDLE_JS, "text/javascript; charset=utf-8", IMMUTABLE)
    };
    response.headers_mut().insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

fn asset(bytes: &'static [u8], content_type: &'static str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(bytes));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Whether `Accept-Encoding` names gzip (or `*`) with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).any(|value| {
        value.split(',').any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused =
                parts.any(|p| p.strip_prefix("q=").is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0)));
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
    })
}

#[cfg(test)]
mod tests {
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, accept_encoding: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(value) = accept_encoding {
            request = request.header(header::ACCEPT_ENCODING, value);
        }
        routes().oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn every_path_is_served_with_its_type_and_caching() {
        for path in PATHS {
            let response = get(path, None).await;
            assert_eq!(response.status(), 200, "{path}");
            assert!(!header(&response, header::CONTENT_TYPE).is_empty(), "{path}");
            assert!(!header(&response, header::CACHE_CONTROL).is_empty(), "{path}");
        }
        let page = get("/docs", None).await;
        assert!(header(&page, header::CONTENT_SECURITY_POLICY).contains("script-src 'self'"));
        let html = String::from_utf8(page.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        let versioned = format!("/docs/swagger-ui-bundle.js?v={}", SWAGGER_UI_VERSION.trim());
        assert!(html.contains(&versioned), "{html}");
        assert!(!html.contains('{'), "a placeholder is left: {html}");
        assert!(!html.contains("<script>"), "an inline script: the CSP would block it");
    }

    #[tokio::test]
    async fn the_bundle_is_gzipped_only_for_clients_that_accept_it() {
        let gzipped = get("/docs/swagger-ui-bundle.js", Some("br;q=1.0, gzip;q=0.8")).await;
        assert_eq!(header(&gzipped, header::CONTENT_ENCODING), "gzip");
        assert_eq!(header(&gzipped, header::VARY), "accept-encoding");
        for refused in [None, Some("br"), Some("gzip;q=0"), Some("identity")] {
            let plain = get("/docs/swagger-ui-bundle.js", refused).await;
            assert_eq!(header(&plain, header::CONTENT_ENCODING), "", "{refused:?}");
            assert_eq!(plain.into_body().collect().await.unwrap().to_bytes().len(), BUNDLE_JS.len());
        }
    }

    /// The script writes both files; a `.gz` left from another version would serve old code to
    /// most browsers. The gzip trailer holds the CRC-32 and length of what it compressed.
    #[test]
    fn the_gzipped_bundle_is_the_bundle() {
        let trailer = &BUNDLE_JS_GZ[BUNDLE_JS_GZ.len() - 8..];
        let crc = u32::from_le_bytes(trailer[..4].try_into().unwrap());
        let len = u32::from_le_bytes(trailer[4..].try_into().unwrap());
        assert_eq!(len as usize, BUNDLE_JS.len() % (1 << 32), "rerun scripts/vendor-swagger-ui.sh");
        assert_eq!(crc, crc32(BUNDLE_JS), "rerun scripts/vendor-swagger-ui.sh");
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let table: Vec<u32> = (0..256u32)
            .map(|n| (0..8).fold(n, |c, _| if c & 1 == 1 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 }))
            .collect();
        !bytes.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
    }
}
