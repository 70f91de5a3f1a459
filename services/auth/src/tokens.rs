//! Access tokens: short-lived EdDSA JWTs that gateways verify locally against the JWKS.
//!
//! Nothing about an access token is stored: its signature and `exp` are checked wherever it is
//! presented. Revocation works on the session the token names in `sid`: ending the session stops
//! the refresh that would renew it, and the revoked-session marker the gateways check
//! (`sessions`) stops the access tokens already issued.

use std::time::Duration;

use jsonwebtoken::{Algorithm, Header};
use mesh_core::ServiceError;
use mesh_proto::auth::Jwks;
use serde::{Deserialize, Serialize};

use crate::keys::KeySet;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub email: String,
    pub roles: Vec<String>,
    /// The session the token belongs to; what logout revokes.
    pub sid: String,
    pub iss: String,
    pub aud: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token, for audit logs and deny lists.
    pub jti: String,
}

/// Whom an access token is for.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    pub user_id: &'a str,
    pub email: &'a str,
    pub roles: &'a [String],
    pub session_id: &'a str,
}

/// Signs access tokens with the current key of a [`KeySet`].
#[derive(Debug)]
pub struct AccessTokens {
    keys: KeySet,
    issuer: String,
    audience: String,
    ttl: Duration,
}

// === impl AccessTokens ===

impl AccessTokens {
    pub fn new(keys: KeySet, issuer: String, audience: String, ttl: Duration) -> Self {
        Self { keys, issuer, audience, ttl }
    }

    /// Lifetime of a token in seconds, as reported in `expires_in`.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// The claims of a token for `subject` issued at `now` (Unix seconds).
    pub fn claims(&self, subject: Subject<'_>, now: i64) -> Claims {
        Claims {
            sub: subject.user_id.to_owned(),
            email: subject.email.to_owned(),
            roles: subject.roles.to_vec(),
            sid: subject.session_id.to_owned(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            iat: now,
            nbf: now,
            exp: now.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: mesh_core::ids::new_id(),
        }
    }

    /// A signed token for `subject`, valid from now for the configured lifetime.
    pub fn issue(&self, subject: Subject<'_>) -> Result<String, ServiceError> {
        self.sign(&self.claims(subject, mesh_core::ids::unix_now()))
    }

    /// Signs `claims` with the current key, naming it in the header's `kid`.
    pub fn sign(&self, claims: &Claims) -> Result<String, ServiceError> {
        let key = self.keys.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding).map_err(ServiceError::internal)
    }

    /// The JWK set with the issuer and audience tokens carry.
    pub fn jwks(&self) -> Jwks {
        Jwks { keys: self.keys.jwks(), issuer: self.issuer.clone(), audience: self.audience.clone() }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};

    use super::*;
    use crate::keys::generate;

    fn tokens(ttl: Duration) -> AccessTokens {
        let (key, _) = generate("t-").unwrap();
        AccessTokens::new(KeySet::new(vec![key]).unwrap(), "mesh-auth".into(), "mesh".into(), ttl)
    }

    fn validation() -> Validation {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&["mesh-auth"]);
        v.set_audience(&["mesh"]);
        v.validate_nbf = true;
        v.leeway = 0;
        v
    }

    fn subject<'a>(roles: &'a [String]) -> Subject<'a> {
        Subject { user_id: "01J00000000000000000000000", email: "ada@example.com", roles, session_id: "s" }
    }

    #[test]
    fn a_token_carries_the_claims_and_verifies_with_the_published_key() {
        let tokens = tokens(Duration::from_secs(900));
        let roles = vec!["user".to_string(), "admin".to_string()];
        let token = tokens.issue(subject(&roles)).unwrap();
        let header = decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::EdDSA);
        let jwks = tokens.jwks();
        assert_eq!(header.kid.as_deref(), Some(jwks.keys[0].kid.as_str()));

        let key = DecodingKey::from_ed_components(&jwks.keys[0].x).unwrap();
        let claims = decode::<Claims>(&token, &key, &validation()).unwrap().claims;
        assert_eq!(claims.sub, "01J00000000000000000000000");
        assert_eq!(claims.roles, roles);
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str(), claims.sid.as_str()),
            ("mesh-auth", "mesh", "s")
        );
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.nbf, claims.iat);
    }

    #[test]
    fn expired_future_and_foreign_tokens_are_refused_by_a_verifier() {
        let tokens = tokens(Duration::from_secs(60));
        let jwks = tokens.jwks();
        let key = DecodingKey::from_ed_components(&jwks.keys[0].x).unwrap();
        let now = mesh_core::ids::unix_now();
        let roles = vec!["user".to_string()];

        let expired = tokens.sign(&tokens.claims(subject(&roles), now - 3600)).unwrap();
        assert!(decode::<Claims>(&expired, &key, &validation()).is_err());
        let not_yet = tokens.sign(&tokens.claims(subject(&roles), now + 3600)).unwrap();
        assert!(decode::<Claims>(&not_yet, &key, &validation()).is_err());
        let mut other = validation();
        other.set_audience(&["elsewhere"]);
        let fine = tokens.issue(subject(&roles)).unwrap();
        assert!(decode::<Claims>(&fine, &key, &other).is_err());
        // A key that did not sign it does not verify it.
        let stranger = self::tokens(Duration::from_secs(60)).jwks();
        let wrong = DecodingKey::from_ed_components(&stranger.keys[0].x).unwrap();
        assert!(decode::<Claims>(&fine, &wrong, &validation()).is_err());
    }
}
