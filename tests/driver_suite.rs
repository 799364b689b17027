//! The engine half of the driver compliance suite: every compiled-in
//! driver's fake synced through the reconciler into SQLite and PostgreSQL.
//! The SDK's suite (`idpsync_driver::compliance`) holds each driver to its
//! API; this holds the pair to the product's promise, whatever the driver:
//! the tenant arrives whole, a user deleted at the source loses their
//! devices at the next scheduled sync and nobody else does, and a listing
//! that comes back empty is held by the safety gate, touching nothing.
//!
//! Adding a driver: one `driver_suite!` line below.

mod common;

use idpsync_core::reconcile::Trigger;
use idpsync_core::store::entity::source_user;
use idpsync_core::sync::{DriverRegistry, SyncStatus};
use idpsync_core::testing::{TestStore, device_status};
use idpsync_driver::DriverKind;
use idpsync_driver::compliance::{CompliantFake, Running, tenant};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

/// The `[[connections]]` entry `id` for `F`'s fake, its settings table
/// written out as TOML.
fn connection_toml<F: CompliantFake>(running: &Running<F>, id: &str) -> String {
    let kind = <F::Kind as DriverKind>::KIND;
    let settings = running.fake.settings(&running.server.base_url, 7);
    let table = toml::to_string(&settings).expect("settings are a TOML table");
    format!("[[connections]]\nid = \"{id}\"\nkind = \"{kind}\"\n[connections.{kind}]\n{table}\n")
}

async fn users_stored(test_store: &TestStore, active: Option<bool>) -> u64 {
    let mut query = source_user::Entity::find().filter(source_user::Column::ConnectionId.eq("idp"));
    if let Some(active) = active {
        query = query.filter(source_user::Column::Active.eq(active));
    }
    query.count(test_store.store.db()).await.unwrap()
}

pub async fn the_promise_holds<F: CompliantFake>(test_store: &TestStore)
where
    F::Kind: 'static,
{
    let dataset = tenant();
    let running = Running::<F>::start(dataset.clone()).await;
    let mut registry = DriverRegistry::default();
    registry.register(F::kind());
    let state = common::engine::start(
        &test_store.store,
        &connection_toml(&running, "idp"),
        registry,
    )
    .await;

    // The tenant arrives whole.
    let report = common::engine::sync(&state, "idp", Trigger::Manual).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    let inactive = dataset.users.iter().filter(|u| !u.active).count() as u64;
    assert_eq!(
        users_stored(test_store, None).await,
        dataset.users.len() as u64
    );
    assert_eq!(users_stored(test_store, Some(false)).await, inactive);

    // A deleted user's laptop is revoked at the next scheduled sync; a
    // colleague's is not touched.
    let leaver = common::engine::approved_device(&state, "idp", &dataset.users[3].id).await;
    let stayer = common::engine::approved_device(&state, "idp", &dataset.users[0].id).await;
    running.fake.delete_user(&dataset.users[3].id);
    let report = common::engine::sync(&state, "idp", Trigger::Schedule).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    assert_eq!(device_status(&test_store.store, leaver).await, "revoked");
    assert_eq!(device_status(&test_store.store, stayer).await, "approved");

    // A listing that comes back empty is held; nothing is revoked.
    for user in &dataset.users {
        running.fake.delete_user(&user.id);
    }
    let report = common::engine::sync(&state, "idp", Trigger::Schedule).await;
    assert_eq!(report.status, SyncStatus::Held, "{report:?}");
    assert_eq!(device_status(&test_store.store, stayer).await, "approved");
    assert_eq!(
        users_stored(test_store, None).await,
        dataset.users.len() as u64 - 1,
        "the held run deleted nobody"
    );
}

macro_rules! driver_suite {
    ($name:ident, $fake:ty) => {
        idpsync_core::store_test!($name, async |test_store: &TestStore| {
            the_promise_holds::<$fake>(test_store).await
        });
    };
}

driver_suite!(keycloak, idpsync_driver_keycloak::fake::FakeKeycloak);
driver_suite!(jumpcloud, idpsync_driver_jumpcloud::fake::FakeJumpCloud);
driver_suite!(entra, idpsync_driver_entra::fake::FakeGraph);
driver_suite!(okta, idpsync_driver_okta::fake::FakeOkta);
driver_suite!(google, idpsync_driver_google::fake::FakeGoogle);
driver_suite!(auth0, idpsync_driver_auth0::fake::FakeAuth0);
driver_suite!(authentik, idpsync_driver_authentik::fake::FakeAuthentik);
driver_suite!(zitadel, idpsync_driver_zitadel::fake::FakeZitadel);

/// `idpsync check-connection` against one driver's fake: the binary's own
/// registry knows the kind, and the check answers with the IdP's summary.
async fn check_connection<F: CompliantFake>() {
    let running = Running::<F>::start(tenant()).await;
    let config = format!(
        "[database]\nurl = \"{{db}}\"\n{}",
        connection_toml(&running, "idp")
    );
    let output = tokio::task::spawn_blocking(move || {
        let (workdir, _) = common::Workdir::new(&config);
        workdir.run(&["check-connection", "idp"])
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}: {}{}",
        <F::Kind as DriverKind>::KIND,
        common::stdout(&output),
        common::stderr(&output)
    );
    assert!(!common::stdout(&output).trim().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connection_works_for_every_compiled_in_kind() {
    use idpsync_driver_auth0::fake::FakeAuth0;
    use idpsync_driver_entra::fake::FakeGraph;
    use idpsync_driver_google::fake::FakeGoogle;
    use idpsync_driver_jumpcloud::fake::FakeJumpCloud;
    use idpsync_driver_keycloak::fake::FakeKeycloak;
    use idpsync_driver_okta::fake::FakeOkta;
    check_connection::<FakeKeycloak>().await;
    check_connection::<FakeJumpCloud>().await;
    check_connection::<FakeGraph>().await;
    check_connection::<FakeOkta>().await;
    check_connection::<FakeGoogle>().await;
    check_connection::<FakeAuth0>().await;
    check_connection::<idpsync_driver_authentik::fake::FakeAuthentik>().await;
    check_connection::<idpsync_driver_zitadel::fake::FakeZitadel>().await;
}

/// `rate_limit_share` in a connection's config reaches its driver's HTTP
/// kit: against a tenant limit of 20 requests a window, a share of 0.5
/// never spends more than 10 of a window, and nothing is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_rate_limit_share_is_honoured_through_the_engine() {
    use idpsync_driver::fake::{Dataset, DatasetSpec};
    use idpsync_driver_auth0::fake::FakeAuth0;
    let test_store = TestStore::sqlite().await;
    let running = Running::<FakeAuth0>::start(Dataset::generate(&DatasetSpec {
        users: 60,
        groups: 4,
        nested_groups: 0,
        ..DatasetSpec::default()
    }))
    .await;
    *running.fake.rate_limit.lock().unwrap() = Some(20);
    let config = connection_toml(&running, "idp").replacen(
        "kind = \"auth0\"\n",
        "kind = \"auth0\"\nrate_limit_share = 0.5\n",
        1,
    );
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_driver_auth0::Auth0Factory);
    let state = common::engine::start(&test_store.store, &config, registry).await;
    let report = common::engine::sync(&state, "idp", Trigger::Manual).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    let peak = *running.fake.peak_window_requests.lock().unwrap();
    assert!(peak <= 10, "at most half of each window: {peak}");
    assert_eq!(*running.fake.rate_limited.lock().unwrap(), 0);
}

/// The LDAP plugin, for what of the suite applies to a directory reached
/// over LDAP rather than HTTP (its paging, TLS and settings errors are its
/// own tests against a real slapd): the same promise through the engine on
/// both databases, with the plugin loaded from its library as the daemon
/// loads it.
async fn the_promise_holds_for_the_ldap_plugin(test_store: &TestStore) {
    use idpsync_plugin_ldap::testing::{
        GROUPS, Group, PEOPLE, Person, SERVICE_DN, SERVICE_PASSWORD, Seed, Slapd, SlapdOptions,
        person_dn,
    };
    let people: Vec<Person> = (0..20)
        .map(|i| Person::new(&format!("p{i}"), &format!("Given{i}"), "Family"))
        .collect();
    let seed = Seed {
        groups: vec![Group {
            cn: "staff".into(),
            members: (0..20).map(|i| person_dn(&format!("p{i}"))).collect(),
        }],
        people,
        ..Seed::default()
    };
    let slapd = Slapd::start(&seed, &SlapdOptions::default());
    let plugin = tokio::task::spawn_blocking(|| common::plugin_library("idpsync-plugin-ldap"))
        .await
        .unwrap();
    let config = format!(
        r#"
[[connections]]
id = "idp"
kind = "plugin"
[connections.plugin]
path = "{}"
kind = "ldap"
[connections.plugin.settings]
url = "{}"
bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
user_base_dn = "{PEOPLE}"
group_base_dn = "{GROUPS}"
page_size = 7
"#,
        plugin.display(),
        slapd.url
    );
    let mut registry = DriverRegistry::default();
    registry.register(idpsync_plugin_host::PluginFactory::new(env!(
        "CARGO_BIN_EXE_idpsync"
    )));
    let state = common::engine::start(&test_store.store, &config, registry).await;
    let report = common::engine::sync(&state, "idp", Trigger::Manual).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    assert_eq!(users_stored(test_store, None).await, 20);

    let id_of = |user_name: &'static str| async move {
        source_user::Entity::find()
            .filter(source_user::Column::ConnectionId.eq("idp"))
            .filter(source_user::Column::UserName.eq(user_name))
            .one(test_store.store.db())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{user_name} is stored"))
            .external_id
    };
    let leaver = common::engine::approved_device(&state, "idp", &id_of("p3").await).await;
    let stayer = common::engine::approved_device(&state, "idp", &id_of("p0").await).await;
    slapd.delete(&person_dn("p3")).await;
    let report = common::engine::sync(&state, "idp", Trigger::Schedule).await;
    assert_eq!(report.status, SyncStatus::Applied, "{report:?}");
    assert_eq!(device_status(&test_store.store, leaver).await, "revoked");
    assert_eq!(device_status(&test_store.store, stayer).await, "approved");

    for i in (0..20).filter(|&i| i != 3) {
        slapd.delete(&person_dn(&format!("p{i}"))).await;
    }
    let report = common::engine::sync(&state, "idp", Trigger::Schedule).await;
    assert_eq!(report.status, SyncStatus::Held, "{report:?}");
    assert_eq!(device_status(&test_store.store, stayer).await, "approved");
}

idpsync_core::store_test!(ldap_plugin, async |test_store: &TestStore| {
    the_promise_holds_for_the_ldap_plugin(test_store).await
});
