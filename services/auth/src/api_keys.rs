//! API keys: long-lived secrets for programs, stored only as digests.
//!
//! Keys in the store:
//! - `auth:apikey:{id}`: the record (owner, name, recognisable prefix, digest of the secret);
//! - `auth:apikey-hash:{digest}`: the id, so a presented secret is found with one lookup;
//! - `auth:apikeys:{user_id}`: the owner's ids in id order (creation time to the millisecond),
//!   for paging;
//! - `auth:apikey-count:{user_id}`: how many the owner holds, bounded atomically.

use mesh_core::ServiceError;
use mesh_core::ids::{new_id, unix_now};
use mesh_core::page::PageRequest;
use mesh_core::store::{Bounded, Store, decode};
use serde::{Deserialize, Serialize};

use crate::secrets;
use crate::validate;

/// Every API key starts with this ("mesh key").
const KEY_PREFIX: &str = "mk_";
/// How much of a key is kept in clear for people to recognise it: the prefix and 8 hex digits.
const SHOWN: usize = KEY_PREFIX.len() + 8;
const INVALID_KEY: &str = "invalid API key";

/// A stored API key. The secret itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: String,
    pub user_id: String,
    pub name: String,
    /// The first characters of the secret.
    pub prefix: String,
    pub created_at: i64,
    pub key_digest: String,
}

/// A page of a user's keys.
#[derive(Debug)]
pub struct Page {
    pub keys: Vec<ApiKeyRecord>,
    /// The cursor of the next page; empty on the last page.
    pub next_cursor: String,
}

/// API keys, shared by all replicas through the store.
#[derive(Debug)]
pub struct ApiKeys {
    store: Store,
    max_per_user: u32,
}

fn record_key(id: &str) -> String {
    format!("auth:apikey:{id}")
}

fn digest_key(digest: &str) -> String {
    format!("auth:apikey-hash:{digest}")
}

fn index_key(user_id: &str) -> String {
    format!("auth:apikeys:{user_id}")
}

fn count_key(user_id: &str) -> String {
    format!("auth:apikey-count:{user_id}")
}

// === impl ApiKeys ===

impl ApiKeys {
    pub fn new(store: Store, max_per_user: u32) -> Self {
        Self { store, max_per_user }
    }

    /// Creates a key for `user_id` (an existing user) and returns it with its secret, which
    /// exists nowhere else from then on.
    pub async fn create(&self, user_id: &str, name: &str) -> Result<(ApiKeyRecord, String), ServiceError> {
        validate::id("user_id", user_id)?;
        let name = validate::label("name", name)?;
        let count = count_key(user_id);
        let max = i64::from(self.max_per_user);
        if let Bounded::Refused(_) = self.store.add_bounded(&count, 1, 0, max, None).await? {
            return Err(ServiceError::FailedPrecondition(format!(
                "api keys: a user may hold at most {max}; delete one first"
            )));
        }
        let secret = secrets::new_secret(KEY_PREFIX);
        let record = ApiKeyRecord {
            id: new_id(),
            user_id: user_id.to_owned(),
            name,
            prefix: secret[..SHOWN].to_owned(),
            created_at: unix_now(),
            key_digest: secrets::digest(&secret),
        };
        if let Err(e) = self.write(&record).await {
            // Give the slot back; the half-written key is unreachable without its digest entry.
            let _ = self.store.add_bounded(&count, -1, 0, i64::MAX, None).await;
            return Err(e);
        }
        tracing::info!(user_id, api_key_id = %record.id, "api key created");
        Ok((record, secret))
    }

    async fn write(&self, record: &ApiKeyRecord) -> Result<(), ServiceError> {
        self.store.set_json(&record_key(&record.id), record, None).await?;
        self.store.index_add(&index_key(&record.user_id), &record.id).await?;
        // Last: from here on the secret verifies.
        self.store.set(&digest_key(&record.key_digest), &record.id, None).await?;
        Ok(())
    }

    /// Up to `limit` of `user_id`'s keys after `cursor`, in id order; limit and cursor are
    /// checked like every list's ([`PageRequest`]: 0 is 20, more than 100 is refused).
    pub async fn list(&self, user_id: &str, limit: u32, cursor: &str) -> Result<Page, ServiceError> {
        validate::id("user_id", user_id)?;
        let page = PageRequest::parse(limit, cursor)?;
        let limit = page.limit;
        // One more than asked tells whether another page exists.
        let mut ids =
            self.store.index_page(&index_key(user_id), page.after.as_deref(), limit + 1, false).await?;
        let more = ids.len() > limit;
        ids.truncate(limit);
        let keys: Vec<String> = ids.iter().map(|id| record_key(id)).collect();
        let mut records = Vec::with_capacity(ids.len());
        for (key, raw) in keys.iter().zip(self.store.get_many(&keys).await?) {
            // A key deleted between the two reads is simply absent from the page.
            if let Some(raw) = raw {
                records.push(decode::<ApiKeyRecord>(key, &raw)?);
            }
        }
        let next_cursor = if more { ids.last().cloned().unwrap_or_default() } else { String::new() };
        Ok(Page { keys: records, next_cursor })
    }

    /// Deletes key `id` of `user_id`. Someone else's key is "not found".
    pub async fn delete(&self, user_id: &str, id: &str) -> Result<(), ServiceError> {
        validate::id("user_id", user_id)?;
        validate::id("id", id)?;
        let key = record_key(id);
        let record = match self.store.get_json::<ApiKeyRecord>(&key).await? {
            Some(record) if record.user_id == user_id => record,
            _ => return Err(ServiceError::not_found("api key not found")),
        };
        // The digest entry first: the secret stops verifying before anything else changes. Only
        // the caller that removed it gives the slot back, so concurrent deletes count once.
        let removed = self.store.delete(&digest_key(&record.key_digest)).await?;
        self.store.delete(&key).await?;
        self.store.index_remove(&index_key(user_id), id).await?;
        if removed {
            self.store.add_bounded(&count_key(user_id), -1, 0, i64::MAX, None).await?;
            tracing::info!(user_id, api_key_id = id, "api key deleted");
        }
        Ok(())
    }

    /// The key whose secret this is. Unknown, deleted and malformed secrets fail alike.
    pub async fn verify(&self, secret: &str) -> Result<ApiKeyRecord, ServiceError> {
        validate::secret("key", secret)?;
        if !secrets::is_secret(KEY_PREFIX, secret) {
            return Err(ServiceError::Unauthenticated(INVALID_KEY.into()));
        }
        let digest = secrets::digest(secret);
        let Some(id) = self.store.get(&digest_key(&digest)).await? else {
            return Err(ServiceError::Unauthenticated(INVALID_KEY.into()));
        };
        match self.store.get_json::<ApiKeyRecord>(&record_key(&id)).await? {
            Some(record) if record.key_digest == digest => Ok(record),
            _ => Err(ServiceError::Unauthenticated(INVALID_KEY.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> String {
        new_id()
    }

    #[tokio::test]
    async fn the_cap_refuses_one_more_and_a_delete_frees_a_slot() {
        let keys = ApiKeys::new(Store::memory(), 2);
        let owner = user();
        let (first, _) = keys.create(&owner, "a").await.unwrap();
        keys.create(&owner, "b").await.unwrap();
        let err = keys.create(&owner, "c").await.unwrap_err();
        assert!(matches!(err, ServiceError::FailedPrecondition(_)), "{err:?}");
        keys.delete(&owner, &first.id).await.unwrap();
        keys.create(&owner, "c").await.unwrap();
        // Another user has their own allowance.
        keys.create(&user(), "a").await.unwrap();
    }

    #[tokio::test]
    async fn pages_follow_the_cursor_to_an_empty_next_cursor() {
        let keys = ApiKeys::new(Store::memory(), 100);
        let owner = user();
        let mut created = Vec::new();
        for i in 0..5 {
            created.push(keys.create(&owner, &format!("k{i}")).await.unwrap().0.id);
        }
        let mut seen = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10 {
            let page = keys.list(&owner, 2, &cursor).await.unwrap();
            assert!(page.keys.len() <= 2);
            seen.extend(page.keys.into_iter().map(|k| k.id));
            if page.next_cursor.is_empty() {
                break;
            }
            cursor = page.next_cursor;
        }
        created.sort();
        assert_eq!(seen, created);
        let all = keys.list(&owner, 0, "").await.unwrap();
        assert_eq!((all.keys.len(), all.next_cursor.as_str()), (5, ""));
        // Like every list: more than the largest page is refused, not clamped.
        let err = keys.list(&owner, 101, "").await.unwrap_err();
        assert!(matches!(err, ServiceError::InvalidArgument(_)), "{err:?}");
    }

    #[tokio::test]
    async fn malformed_and_unknown_secrets_are_unauthenticated() {
        let keys = ApiKeys::new(Store::memory(), 100);
        for bad in ["mk_", "mk_zz", "sk_0123", &format!("mk_{}", "0".repeat(64))] {
            assert!(matches!(keys.verify(bad).await, Err(ServiceError::Unauthenticated(_))), "{bad}");
        }
        assert!(matches!(keys.verify("").await, Err(ServiceError::InvalidArgument(_))));
    }
}
