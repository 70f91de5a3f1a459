//! Configuration of the user service.

// The shared head, its ports included, is tested once with the macro (`mesh_core::service_config`).
mesh_core::service_config! {
    /// The user service: profiles, kept in `store`.
    pub struct Config {
        listen: 50052,
        admin_listen: 9052,
    }
}

/// Keys whose environment value is a comma-separated list: none.
pub const LIST_KEYS: &[&str] = &[];

/// Nothing to check beyond the types.
impl mesh_core::config::Validate for Config {}
