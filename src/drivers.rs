//! The driver kinds compiled into this binary. Add a driver here (one line)
//! after creating its crate under `drivers/`.

use idpsync_core::sync::DriverRegistry;

pub fn registry() -> DriverRegistry {
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_keycloak::KeycloakFactory);
    registry.register(idpsync_driver_jumpcloud::JumpCloudFactory);
    registry.register(idpsync_driver_entra::EntraFactory);
    registry.register(idpsync_driver_okta::OktaFactory);
    registry.register(idpsync_driver_google::GoogleFactory);
    registry
}
