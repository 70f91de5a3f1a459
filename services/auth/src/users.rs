//! Accounts: registration and password checks.
//!
//! A user is a JSON record under `auth:user:{id}`; `auth:email:{email}` maps the normalised email
//! to the id. The email key is claimed with `set_nx`, which is what makes an email unique across
//! every replica sharing the store.

use std::collections::BTreeSet;
use std::time::Instant;

use mesh_core::ServiceError;
use mesh_core::ids::{new_id, unix_now};
use mesh_core::store::Store;
use serde::{Deserialize, Serialize};

use crate::passwords::Passwords;
use crate::validate;

/// The one answer to every failed login, so a caller cannot tell which emails have accounts.
pub const INVALID_CREDENTIALS: &str = "invalid email or password";
const EMAIL_TAKEN: &str = "email already registered";

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    /// Normalised: trimmed, lower-case.
    pub email: String,
    pub display_name: String,
    /// argon2id PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
    pub created_at: i64,
}

/// Accounts, shared by all replicas through the store.
#[derive(Debug)]
pub struct Accounts {
    store: Store,
    passwords: Passwords,
    /// Normalised like the emails they are compared with.
    admin_emails: BTreeSet<String>,
}

fn user_key(id: &str) -> String {
    format!("auth:user:{id}")
}

fn email_key(email: &str) -> String {
    format!("auth:email:{email}")
}

// === impl Accounts ===

impl Accounts {
    pub fn new(store: Store, passwords: Passwords, admin_emails: &[String]) -> Self {
        let admin_emails = admin_emails.iter().map(|e| e.trim().to_lowercase()).collect();
        Self { store, passwords, admin_emails }
    }

    /// Creates an account. All input is checked before anything is hashed or stored. No hash
    /// starts after `deadline` (the caller's).
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        display_name: &str,
        deadline: Option<Instant>,
    ) -> Result<UserRecord, ServiceError> {
        let email = validate::email(email)?;
        validate::new_password(password, &email)?;
        let display_name = validate::label("display_name", display_name)?;
        // Refusing a known duplicate before hashing keeps repeated registrations cheap; the
        // `set_nx` below is what actually decides a race.
        if self.store.get(&email_key(&email)).await?.is_some() {
            return Err(ServiceError::AlreadyExists(EMAIL_TAKEN.into()));
        }

        let mut roles = vec!["user".to_owned()];
        if self.admin_emails.contains(&email) {
            roles.push("admin".to_owned());
        }
        let user = UserRecord {
            id: new_id(),
            email,
            display_name,
            password_hash: self.passwords.hash(password, deadline).await?,
            roles,
            created_at: unix_now(),
        };
        // The record goes first: once the email points at an id, a login on any replica must
        // find the record. A record whose email claim loses is unreachable and removed.
        self.store.set_json(&user_key(&user.id), &user, None).await?;
        if !self.store.set_nx(&email_key(&user.email), &user.id, None).await? {
            if let Err(e) = self.store.delete(&user_key(&user.id)).await {
                tracing::warn!(user_id = %user.id, error = %e, "could not remove an unclaimed user record");
            }
            return Err(ServiceError::AlreadyExists(EMAIL_TAKEN.into()));
        }
        tracing::info!(user_id = %user.id, roles = ?user.roles, "user registered");
        Ok(user)
    }

    /// The account whose password this is. Unknown email and wrong password fail alike, in
    /// message and (through a dummy verification) in time. No hash starts after `deadline`.
    pub async fn authenticate(
        &self,
        email: &str,
        password: &str,
        deadline: Option<Instant>,
    ) -> Result<UserRecord, ServiceError> {
        let email = validate::email(email)?;
        validate::presented_password(password)?;
        let user = match self.store.get(&email_key(&email)).await? {
            Some(id) => self.get(&id).await?,
            None => None,
        };
        let Some(user) = user else {
            self.passwords.verify_nothing(password, deadline).await?;
            return Err(ServiceError::Unauthenticated(INVALID_CREDENTIALS.into()));
        };
        if !self.passwords.verify(&user.password_hash, password, deadline).await? {
            return Err(ServiceError::Unauthenticated(INVALID_CREDENTIALS.into()));
        }
        Ok(user)
    }

    /// The account `user_id`, if it exists.
    pub async fn get(&self, user_id: &str) -> Result<Option<UserRecord>, ServiceError> {
        validate::id("user_id", user_id)?;
        Ok(self.store.get_json(&user_key(user_id)).await?)
    }
}
