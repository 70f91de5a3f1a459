//! Configuration of the user service.

// The shared head, its ports included, is tested once with the macro (`mesh_core::service_config`).
mesh_core::service_config! {
    /// The user service: profiles, kept in `store`.
    pub struct Config {
        listen: 50052,
        admin_listen: 9052,
    }
}
