//! The driver kinds compiled into this binary. Add a driver here (one line)
//! after creating its crate under `drivers/`. `kind = "plugin"` loads a
//! driver from a shared library instead (see `plugins/README.md`).

use idpsync_core::sync::DriverRegistry;

pub fn registry() -> DriverRegistry {
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_keycloak::KeycloakFactory);
    registry.register(idpsync_driver_jumpcloud::JumpCloudFactory);
    registry.register(idpsync_driver_entra::EntraFactory);
    registry.register(idpsync_driver_okta::OktaFactory);
    registry.register(idpsync_driver_google::GoogleFactory);
    registry.register(idpsync_driver_auth0::Auth0Factory);
    registry.register(idpsync_driver_authentik::AuthentikFactory);
    registry.register(idpsync_driver_zitadel::ZitadelFactory);
    // Plugin calls run in a child: this same binary, as `idpsync plugin-child`.
    let runner = std::env::current_exe().unwrap_or_else(|_| "idpsync".into());
    registry.register(idpsync_plugin_host::PluginFactory::new(runner));
    registry
}
