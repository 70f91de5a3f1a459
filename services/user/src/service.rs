//! `mesh.user.v1.UserService`.

use mesh_core::ServiceError;
use mesh_core::ids::unix_now;
use mesh_core::store::Store;
use mesh_proto::user::user_service_server::UserService;
use mesh_proto::user::{CreateProfileRequest, GetProfileRequest, Profile, UpdateProfileRequest};
use tonic::{Request, Response, Status};

use crate::profile::{FieldValue, Identity, Keys, Stored};
use crate::validate;

pub struct UserApi {
    store: Store,
}

fn not_found() -> ServiceError {
    ServiceError::not_found("user_id: no profile for this user")
}

// === impl UserApi ===

impl UserApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn create(&self, req: CreateProfileRequest) -> Result<Profile, ServiceError> {
        let id = validate::user_id(&req.user_id)?;
        let identity = Identity {
            user_id: id.to_string(),
            email: validate::email(&req.email)?,
            display_name: validate::display_name(&req.display_name)?,
            created_at: unix_now(),
        };
        let keys = Keys::new(&id);
        // Registration retries (a lost reply, a replayed queue) repeat this call: the first
        // writer wins and every repeat answers the profile as it stands.
        if self.store.set_nx_json(&keys.identity, &identity, None).await? {
            tracing::info!(user_id = %id, "profile created");
            return Ok(Stored::new(identity).into_profile());
        }
        let existing = keys.load(&self.store).await?;
        // Profiles are never deleted, so the key set_nx just found is still there.
        let existing =
            existing.ok_or_else(|| ServiceError::internal("profile vanished after set_nx refused"))?;
        Ok(existing.into_profile())
    }

    async fn get(&self, req: GetProfileRequest) -> Result<Profile, ServiceError> {
        let id = validate::user_id(&req.user_id)?;
        let stored = Keys::new(&id).load(&self.store).await?.ok_or_else(not_found)?;
        Ok(stored.into_profile())
    }

    async fn update(&self, req: UpdateProfileRequest) -> Result<Profile, ServiceError> {
        let id = validate::user_id(&req.user_id)?;
        if req.display_name.is_none() && req.bio.is_none() {
            return Err(ServiceError::invalid("nothing to update: set display_name or bio"));
        }
        // Validate everything before writing anything, so a bad field changes nothing.
        let display_name = req.display_name.as_deref().map(validate::display_name).transpose()?;
        let bio = req.bio.as_deref().map(validate::bio).transpose()?;

        let keys = Keys::new(&id);
        let current = keys.load(&self.store).await?.ok_or_else(not_found)?;
        // Never behind the last write, so updated_at does not go backwards when this replica's
        // clock is behind the one that wrote last.
        let set_at = unix_now().max(current.updated_at());
        // Each field is its own key (see `profile`): these writes cannot clobber a concurrent
        // update of the other field.
        if let Some(value) = display_name {
            self.store.set_json(&keys.display_name, &FieldValue { value, set_at }, None).await?;
        }
        if let Some(value) = bio {
            self.store.set_json(&keys.bio, &FieldValue { value, set_at }, None).await?;
        }
        tracing::debug!(user_id = %id, "profile updated");
        // Read back rather than patch `current`: the answer then includes any concurrent update
        // of the other field instead of the value this call happened to read before it.
        let updated = keys.load(&self.store).await?.ok_or_else(not_found)?;
        Ok(updated.into_profile())
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_profile(
        &self,
        request: Request<CreateProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn get_profile(&self, request: Request<GetProfileRequest>) -> Result<Response<Profile>, Status> {
        Ok(Response::new(self.get(request.into_inner()).await?))
    }

    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        Ok(Response::new(self.update(request.into_inner()).await?))
    }
}
