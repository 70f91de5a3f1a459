//! Configuration of the user service.

mesh_core::service_config! {
    /// The user service: profiles, kept in `store`.
    pub struct Config {
        listen: 50052,
        admin_listen: 9052,
    }
}

#[cfg(test)]
mod tests {
    use mesh_core::config::Sources;

    use super::*;

    /// The shared keys and their environment overrides are tested once, with the macro.
    #[test]
    fn defaults_are_the_documented_ports() {
        let cfg: Config = Sources::default().load().unwrap();
        assert_eq!((cfg.listen.port(), cfg.admin_listen.port()), (50052, 9052));
    }
}
