//! How a profile is laid out in the store.
//!
//! A profile is three keys, not one document:
//! - `user:profile:{id}`: the [`Identity`] (user id, email, the display name given at creation,
//!   creation time), written once with `set_nx`. This key existing *is* the profile existing;
//!   `set_nx` succeeding only once is what makes creation idempotent across replicas.
//! - `user:profile:{id}:display_name` and `user:profile:{id}:bio`: one [`FieldValue`] each,
//!   written with a plain `set` by every update that changes that field.
//!
//! Why not one JSON document: an update that sets only some fields would be read-modify-write,
//! and two replicas updating different fields at once would each write back the other's old
//! value, losing one change. The store has no compare-and-set to guard that (a version-keyed
//! lock would work, but a replica dying while holding it would block the profile until the lock
//! expired, and an expiring lock is no longer a guarantee). With a key per field, an update
//! writes exactly the fields it changes, so updates of different fields never touch the same key
//! and neither can be lost, with no lock and no retry. Updates of the same field are
//! last-writer-wins, which is what setting a field means. The cost: an update setting both fields
//! is two writes, and a read between them sees the first without the second.
//!
//! Reading is one `get_many` round trip over the three keys.

use mesh_core::ServiceError;
use mesh_core::store::{Store, decode};
use mesh_proto::user::Profile;
use serde::{Deserialize, Serialize};

use crate::validate::UserId;

/// What creation fixes for good.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Identity {
    pub user_id: String,
    pub email: String,
    /// The display name given at creation; an edited one in its own key takes precedence.
    pub display_name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// One edited field and when it was set (unix seconds); the latest of these is `updated_at`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct FieldValue {
    pub value: String,
    pub set_at: i64,
}

/// The store keys of one profile.
#[derive(Clone, Debug)]
pub struct Keys {
    pub identity: String,
    pub display_name: String,
    pub bio: String,
}

/// A profile as read back from its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub identity: Identity,
    pub display_name: Option<FieldValue>,
    pub bio: Option<FieldValue>,
}

// === impl Keys ===

impl Keys {
    pub fn new(id: &UserId) -> Self {
        let identity = format!("user:profile:{id}");
        Self { display_name: format!("{identity}:display_name"), bio: format!("{identity}:bio"), identity }
    }

    /// Reads the profile in one round trip; `None` if it was never created.
    pub async fn load(&self, store: &Store) -> Result<Option<Stored>, ServiceError> {
        let keys = [self.identity.clone(), self.display_name.clone(), self.bio.clone()];
        let [identity, display_name, bio]: [Option<String>; 3] = store
            .get_many(&keys)
            .await?
            .try_into()
            .map_err(|got: Vec<_>| ServiceError::internal(format!("asked 3 keys, got {}", got.len())))?;
        let Some(identity) = identity else {
            return Ok(None);
        };
        let field =
            |key: &str, raw: Option<String>| raw.map(|raw| decode::<FieldValue>(key, &raw)).transpose();
        Ok(Some(Stored {
            identity: decode(&self.identity, &identity)?,
            display_name: field(&self.display_name, display_name)?,
            bio: field(&self.bio, bio)?,
        }))
    }
}

// === impl Stored ===

impl Stored {
    /// A profile just created: no field edited yet.
    pub fn new(identity: Identity) -> Self {
        Self { identity, display_name: None, bio: None }
    }

    /// The latest time any part of the profile was written.
    pub fn updated_at(&self) -> i64 {
        [&self.display_name, &self.bio]
            .into_iter()
            .flatten()
            .map(|field| field.set_at)
            .fold(self.identity.created_at, i64::max)
    }

    pub fn into_profile(self) -> Profile {
        let updated_at = self.updated_at();
        Profile {
            user_id: self.identity.user_id,
            email: self.identity.email,
            display_name: self.display_name.map_or(self.identity.display_name, |field| field.value),
            bio: self.bio.map(|field| field.value).unwrap_or_default(),
            created_at: self.identity.created_at,
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            user_id: "01J0000000000000000000000A".into(),
            email: "ada@example.org".into(),
            display_name: "Ada".into(),
            created_at: 100,
        }
    }

    #[test]
    fn a_new_profile_has_its_creation_name_no_bio_and_was_updated_when_created() {
        let profile = Stored::new(identity()).into_profile();
        assert_eq!((profile.display_name.as_str(), profile.bio.as_str()), ("Ada", ""));
        assert_eq!((profile.created_at, profile.updated_at), (100, 100));
    }

    #[test]
    fn edited_fields_win_and_updated_at_is_the_latest_write() {
        let stored = Stored {
            identity: identity(),
            display_name: Some(FieldValue { value: "Countess".into(), set_at: 300 }),
            bio: Some(FieldValue { value: "maths".into(), set_at: 200 }),
        };
        let profile = stored.into_profile();
        assert_eq!((profile.display_name.as_str(), profile.bio.as_str()), ("Countess", "maths"));
        assert_eq!((profile.created_at, profile.updated_at), (100, 300));
    }

    #[tokio::test]
    async fn keys_of_one_user_are_distinct_and_load_reads_them_back() {
        let store = Store::memory();
        let id = crate::validate::user_id(&mesh_core::ids::new_id()).unwrap();
        let keys = Keys::new(&id);
        assert!(keys.load(&store).await.unwrap().is_none());
        store.set_json(&keys.identity, &identity(), None).await.unwrap();
        let bio = FieldValue { value: "b".into(), set_at: 150 };
        store.set_json(&keys.bio, &bio, None).await.unwrap();
        let stored = keys.load(&store).await.unwrap().unwrap();
        assert_eq!(stored, Stored { identity: identity(), display_name: None, bio: Some(bio) });
    }
}
