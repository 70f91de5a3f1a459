//! Sessions and refresh-token rotation with reuse detection.
//!
//! A login opens a session, `auth:session:{id}`, which lives `refresh_ttl` past its last refresh.
//! Each refresh token is stored under the digest of its secret, `auth:refresh:{digest}`, with a
//! state. Refreshing swaps the state from `active` to `rotated` with one atomic `replace`, so of
//! two concurrent refreshes of the same token exactly one sees `active` and gets a new pair. A
//! token seen again after it rotated was copied: whoever holds it, the session is deleted, which
//! ends every refresh token of it because each refresh checks its session still exists.
//!
//! Revoking a session (logout, detected reuse) must also stop its access tokens, which gateways
//! verify locally and which stay valid until `exp`. So a revocation first writes
//! `auth:revoked:{session_id}`, which every gateway checks per request (behind a local cache of
//! well under a second), and only then deletes the session: if the marker cannot be written the
//! revocation fails as a whole and the caller may retry. The marker lives as long as any access
//! token of the session can (the access token lifetime plus [`REVOCATION_LEEWAY`]), so the set of
//! revoked sessions bounds itself.
//!
//! Every record here expires: a session `refresh_ttl` after its last refresh, a refresh record
//! (active or rotated) `refresh_ttl` after it was written, a revocation marker as above.

use std::time::Duration;

use mesh_core::ServiceError;
use mesh_core::ids::{new_id, unix_now};
use mesh_core::store::{Store, decode};
use mesh_proto::auth::{Jwks, TokenPair};
use serde::{Deserialize, Serialize};

use crate::secrets;
use crate::tokens::{AccessTokens, Subject};
use crate::users::{Accounts, UserRecord};
use crate::validate;

/// Refresh tokens start with this, so they are recognisable in a leak scan.
const REFRESH_PREFIX: &str = "mr_";
const INVALID_REFRESH: &str = "invalid refresh token";
const REUSED: &str = "refresh token reuse detected; session revoked";
const REVOKED: &str = "refresh token is no longer valid: session revoked";

/// How long a revoked session's marker outlives the access token lifetime. It covers the clock
/// leeway verifiers allow on `exp` (the gateways' `jwt.leeway`, 5s by default, must stay below
/// it) and a token issued by a refresh racing the revocation a moment after the marker.
pub const REVOCATION_LEEWAY: Duration = Duration::from_secs(60);

/// Why a session was revoked; the value of its marker, and a log field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    Logout,
    RefreshReuse,
}

impl Revocation {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::RefreshReuse => "refresh_reuse",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionRecord {
    user_id: String,
    created_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RefreshState {
    Active,
    Rotated,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct RefreshRecord {
    state: RefreshState,
    session_id: String,
    user_id: String,
}

/// Opens, refreshes and revokes sessions.
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    tokens: AccessTokens,
    refresh_ttl: Duration,
}

fn session_key(id: &str) -> String {
    format!("auth:session:{id}")
}

fn refresh_key(digest: &str) -> String {
    format!("auth:refresh:{digest}")
}

/// The marker of a revoked session. The gateways read this exact key (`authn::revocations`):
/// the two must agree, and share one store and key prefix.
pub fn revoked_key(session_id: &str) -> String {
    format!("auth:revoked:{session_id}")
}

fn unauthenticated(msg: &str) -> ServiceError {
    ServiceError::Unauthenticated(msg.into())
}

fn encode<T: Serialize>(value: &T) -> Result<String, ServiceError> {
    serde_json::to_string(value).map_err(ServiceError::internal)
}

// === impl Sessions ===

impl Sessions {
    pub fn new(store: Store, tokens: AccessTokens, refresh_ttl: Duration) -> Self {
        Self { store, tokens, refresh_ttl }
    }

    /// The public keys that verify the access tokens issued here.
    pub fn jwks(&self) -> Jwks {
        self.tokens.jwks()
    }

    /// Opens a session for `user` and issues its first token pair.
    pub async fn open(&self, user: &UserRecord) -> Result<TokenPair, ServiceError> {
        let session_id = new_id();
        let session = SessionRecord { user_id: user.id.clone(), created_at: unix_now() };
        self.store.set_json(&session_key(&session_id), &session, Some(self.refresh_ttl)).await?;
        tracing::info!(user_id = %user.id, session_id = %session_id, "session opened");
        self.issue(user, &session_id).await
    }

    /// Exchanges a refresh token for a new pair in the same session; see the module doc.
    pub async fn refresh(&self, token: &str, accounts: &Accounts) -> Result<TokenPair, ServiceError> {
        validate::secret("refresh_token", token)?;
        if !secrets::is_secret(REFRESH_PREFIX, token) {
            return Err(unauthenticated(INVALID_REFRESH));
        }
        let key = refresh_key(&secrets::digest(token));
        let Some(record) = self.store.get_json::<RefreshRecord>(&key).await? else {
            return Err(unauthenticated(INVALID_REFRESH));
        };
        // The rotated marker outlives the token by a full refresh_ttl so a copy presented late
        // is still recognised as reuse rather than as an unknown token.
        let rotated = RefreshRecord { state: RefreshState::Rotated, ..record.clone() };
        let previous = self.store.replace(&key, &encode(&rotated)?, Some(self.refresh_ttl)).await?;
        let Some(previous) = previous else {
            // Expired between the read and the swap.
            return Err(unauthenticated(INVALID_REFRESH));
        };
        let previous: RefreshRecord = decode(&key, &previous)?;
        if previous.state == RefreshState::Rotated {
            self.end(&previous.user_id, &previous.session_id, Revocation::RefreshReuse).await?;
            return Err(unauthenticated(REUSED));
        }

        // The session decides: a logout or a detected reuse deleted it. `replace` only extends a
        // session that still exists, so a revocation racing this refresh is never undone.
        let session_key = session_key(&previous.session_id);
        let Some(session) = self.store.get_json::<SessionRecord>(&session_key).await? else {
            return Err(unauthenticated(REVOKED));
        };
        if session.user_id != previous.user_id {
            return Err(ServiceError::internal("refresh token and session disagree on the user"));
        }
        if self.store.replace(&session_key, &encode(&session)?, Some(self.refresh_ttl)).await?.is_none() {
            return Err(unauthenticated(REVOKED));
        }
        // Roles and email are read again so a refreshed token reflects the account as it is now.
        let Some(user) = accounts.get(&previous.user_id).await? else {
            return Err(unauthenticated(REVOKED));
        };
        self.issue(&user, &previous.session_id).await
    }

    /// Revokes `session_id` if it belongs to `user_id`; another user's session is "not found"
    /// (never revoked, and its existence not confirmed).
    pub async fn revoke(&self, user_id: &str, session_id: &str) -> Result<(), ServiceError> {
        validate::id("user_id", user_id)?;
        validate::id("session_id", session_id)?;
        let key = session_key(session_id);
        match self.store.get_json::<SessionRecord>(&key).await? {
            Some(session) if session.user_id == user_id => {
                self.end(user_id, session_id, Revocation::Logout).await
            }
            _ => Err(ServiceError::not_found("session not found")),
        }
    }

    /// Revokes `session_id`: the marker the gateways check first, then the session itself (see
    /// the module doc). Idempotent, so a reuse detected twice or a logout retried is harmless.
    async fn end(&self, user_id: &str, session_id: &str, why: Revocation) -> Result<(), ServiceError> {
        let marker_ttl = Duration::from_secs(self.tokens.ttl_secs()) + REVOCATION_LEEWAY;
        self.store.set(&revoked_key(session_id), why.as_str(), Some(marker_ttl)).await?;
        self.store.delete(&session_key(session_id)).await?;
        // Logged inside the RPC's span, which carries the request id.
        match why {
            Revocation::Logout => {
                tracing::info!(user_id, session_id, reason = why.as_str(), "session revoked")
            }
            Revocation::RefreshReuse => {
                tracing::warn!(
                    user_id,
                    session_id,
                    reason = why.as_str(),
                    "refresh token reused; session revoked"
                )
            }
        }
        Ok(())
    }

    /// A new access token and a new active refresh token for `session_id`.
    async fn issue(&self, user: &UserRecord, session_id: &str) -> Result<TokenPair, ServiceError> {
        let refresh_token = secrets::new_secret(REFRESH_PREFIX);
        let record = RefreshRecord {
            state: RefreshState::Active,
            session_id: session_id.to_owned(),
            user_id: user.id.clone(),
        };
        let key = refresh_key(&secrets::digest(&refresh_token));
        self.store.set_json(&key, &record, Some(self.refresh_ttl)).await?;
        let access_token = self.tokens.issue(Subject {
            user_id: &user.id,
            email: &user.email,
            roles: &user.roles,
            session_id,
        })?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: self.tokens.ttl_secs(),
        })
    }
}
