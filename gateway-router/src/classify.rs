//! Classification: which pool serves a request. A pure function over the ordered rule table.

use http::{HeaderMap, Method};

use crate::config::Rule;

/// The pool of the first rule that matches, or `None` (the router answers 404 itself).
pub fn classify<'r>(
    rules: &'r [Rule],
    method: &Method,
    host: Option<&str>,
    path: &str,
    headers: &HeaderMap,
) -> Option<&'r str> {
    rules.iter().find(|rule| matches(rule, method, host, path, headers)).map(|rule| rule.pool.as_str())
}

fn matches(rule: &Rule, method: &Method, host: Option<&str>, path: &str, headers: &HeaderMap) -> bool {
    let prefix = rule.prefix.trim_end_matches('/');
    let path_ok = path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'));
    let method_ok = rule.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()));
    let host_ok = rule.host.as_deref().is_none_or(|h| {
        host.map(|given| given.rsplit_once(':').map_or(given, |(name, _)| name))
            .is_some_and(|given| given.eq_ignore_ascii_case(h))
    });
    let header_ok = rule.header.as_ref().is_none_or(|(name, value)| {
        headers.get(name.as_str()).is_some_and(|v| v.as_bytes() == value.as_bytes())
    });
    path_ok && method_ok && host_ok && header_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_rules;

    fn pool(path: &str) -> Option<&'static str> {
        let rules: &'static [Rule] = Box::leak(default_rules().into_boxed_slice());
        classify(rules, &Method::GET, None, path, &HeaderMap::new())
    }

    #[test]
    fn the_default_table_sends_each_domain_to_its_pool() {
        for path in
            ["/v1/auth/login", "/v1/auth/api-keys/01H", "/v1/users/me", "/v1/quota", "/.well-known/jwks.json"]
        {
            assert_eq!(pool(path), Some("identity"), "{path}");
        }
        for path in
            ["/v1/orders", "/v1/orders/1", "/v1/articles?q=x", "/v1/analytics/summary", "/v1/dashboard"]
        {
            let path = path.split('?').next().unwrap();
            assert_eq!(pool(path), Some("business"), "{path}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments_only_and_unknown_paths_match_nothing() {
        for path in ["/", "/v1", "/v1/ordersx", "/v1/authz", "/v2/orders", "/metrics-not", ""] {
            assert_eq!(pool(path), None, "{path:?}");
        }
    }

    #[test]
    fn method_host_and_header_conditions_narrow_a_rule_and_order_decides() {
        let rules = vec![
            Rule {
                prefix: "/v1/x".into(),
                method: Some("POST".into()),
                host: None,
                header: None,
                pool: "writes".into(),
            },
            Rule {
                prefix: "/v1/x".into(),
                method: None,
                host: Some("beta.example.com".into()),
                header: None,
                pool: "beta".into(),
            },
            Rule {
                prefix: "/v1/x".into(),
                method: None,
                host: None,
                header: Some(("x-canary".into(), "1".into())),
                pool: "canary".into(),
            },
            Rule { prefix: "/v1/x".into(), method: None, host: None, header: None, pool: "reads".into() },
        ];
        let none = HeaderMap::new();
        assert_eq!(classify(&rules, &Method::POST, None, "/v1/x", &none), Some("writes"));
        assert_eq!(
            classify(&rules, &Method::GET, Some("beta.example.com:8080"), "/v1/x/1", &none),
            Some("beta")
        );
        let mut canary = HeaderMap::new();
        canary.insert("x-canary", "1".parse().unwrap());
        assert_eq!(classify(&rules, &Method::GET, None, "/v1/x", &canary), Some("canary"));
        assert_eq!(classify(&rules, &Method::GET, Some("other"), "/v1/x", &none), Some("reads"));
    }
}
