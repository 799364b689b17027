//! The engine in the test's own process, wired as `idpsync serve` wires it:
//! a config loaded with the given driver kinds, its connections registered,
//! manual syncs, and approved devices to watch being revoked.

use idpsync_core::api::AppState;
use idpsync_core::reconcile::Trigger;
use idpsync_core::store::Store;
use idpsync_core::sync::{DriverRegistry, SyncReport};
use idpsync_core::testing::TestApp;

/// Loads `config_text` (connections and ACL groups) against `registry`
/// and starts the engine ([`TestApp`]); its state.
pub async fn start(store: &Store, config_text: &str, registry: DriverRegistry) -> AppState {
    TestApp::builder(store)
        .config(config_text)
        .drivers(registry)
        .start()
        .await
        .state
}

/// One sync of `connection` (delta when it has a cursor), to completion.
pub async fn sync(state: &AppState, connection: &str, trigger: Trigger) -> SyncReport {
    state
        .engine()
        .sync
        .run(connection, trigger, false, false, std::future::pending())
        .await
        .unwrap()
}

/// Registers and approves a laptop of `owner` in `connection`; returns its id.
pub async fn approved_device(state: &AppState, connection: &str, owner: &str) -> i64 {
    let node_key = format!("nk-{connection}-{owner}");
    idpsync_core::testing::approved_device(
        state.engine().sync.store(),
        &state.bus,
        connection,
        owner,
        &node_key,
    )
    .await
}
