//! The driver compliance suite (feature `compliance`): one set of
//! specifications every driver's tests run against its faithful fake, as
//! Vector runs one validation harness over every component.
//!
//! A driver's fake implements [`CompliantFake`]; its `tests/compliance.rs`
//! says `idpsync_driver::compliance_suite!(FakeThing);`, which expands into
//! one `#[tokio::test]` per specification below. What a driver does beyond
//! the suite (its API's own states, errors and quirks) stays in its own tests.
//!
//! The suite checks what every source of people must do:
//! * a full pull is exactly the seeded tenant, at page sizes 1, 7 and the
//!   API's maximum, and any totals the API declares match it;
//! * throttling with and without a `Retry-After` hint is waited out;
//! * a 5xx on a page is retried; one that persists fails the pull;
//! * a truncated or malformed page fails the pull (core then applies nothing);
//! * a token that expires mid-pull is renewed;
//! * a user deleted at the source is gone from the next scheduled pull (a
//!   full listing without them, or a delta that removes them);
//! * a user name reused by a new account is a new user, and the old account
//!   is gone;
//! * an empty tenant is an empty, complete listing, not an error (core's
//!   safety gate decides what to do with it);
//! * settings errors name the key.

use crate::driver::{CollectedRecords, Driver, DriverContext, DriverFactory, DriverKind};
use crate::driver::{PullMode, PullOutcome};
use crate::error::DriverError;
use crate::fake::{Dataset, DatasetSpec, FakeServer, FakeTokens, FakeUser, FaultInjector};
use crate::fake::{PageFault, test_kit};
use crate::records::MemberRef;
use std::collections::BTreeSet;

/// What the suite needs of a driver's fake, and what it holds the driver to.
pub trait CompliantFake: Clone + Send + Sync + 'static {
    /// The driver kind this is a fake of.
    type Kind: DriverKind;

    /// The driver kind's factory.
    fn kind() -> Self::Kind;

    /// A fake tenant that holds `dataset`.
    fn new(dataset: Dataset) -> Self;

    /// Serves the fake on 127.0.0.1.
    fn start(&self) -> impl Future<Output = std::io::Result<FakeServer>> + Send;

    /// The connection's settings table pointing at the fake at `base_url`.
    fn settings(&self, base_url: &str, page_size: u32) -> serde_json::Value;

    /// Its fault injector.
    fn faults(&self) -> &FaultInjector;

    /// The bearer tokens it issues, when the API's tokens expire (`None` for
    /// a static API key).
    fn tokens(&self) -> Option<&FakeTokens>;

    /// Deletes the user with this id, the way the API shows a deletion.
    fn delete_user(&self, id: &str);

    /// Creates a user with no groups.
    fn create_user(&self, user: FakeUser);

    /// The API's largest page (the documented maximum of the users listing).
    const MAX_PAGE_SIZE: u32;

    /// The name of the users listing in [`PageFault`]s.
    const USERS_RESOURCE: &'static str = "users";

    /// Whether the API nests groups (a nested group is a membership edge).
    const NESTED_GROUPS: bool;

    /// Whether a group nobody is in is listed (ZITADEL's roles are known
    /// only through the users who hold them).
    const LISTS_GROUPS_WITHOUT_MEMBERS: bool = true;

    /// The fewest API calls (token requests aside) a complete full pull of
    /// `dataset` can make under the API's documented limits: its largest
    /// pages, and one listing per group's members where the API has no other
    /// way. The bench sets each driver's calls against it.
    fn minimum_calls(dataset: &Dataset) -> u64;

    /// `dataset` as the IdP can hold it, when its entity limits are lower
    /// (Auth0: 1,000 roles a tenant), with what was cut; the bench pulls
    /// this. By default the dataset as it is.
    fn within_api_limits(dataset: &Dataset) -> (Dataset, Option<&'static str>) {
        (dataset.clone(), None)
    }

    /// The user name the driver reports for `user`.
    fn expected_user_name(user: &FakeUser) -> String {
        user.user_name.clone()
    }
}

/// Calls to read `n` items at `per_page` a call (an empty listing is still
/// one call).
pub fn pages(n: usize, per_page: usize) -> u64 {
    n.div_ceil(per_page.max(1)).max(1) as u64
}

/// Calls to list every group's members at `per_page`, one listing a group.
pub fn member_listings(dataset: &Dataset, per_page: usize) -> u64 {
    (0..dataset.groups.len())
        .map(|group| pages(dataset.members_of(group).len(), per_page))
        .sum()
}

/// Expands into one `#[tokio::test]` per specification of the suite for
/// `$fake`, in a module named `compliance_suite`.
#[macro_export]
macro_rules! compliance_suite {
    ($fake:ty) => {
        $crate::compliance_suite!(@specs $fake;
            a_full_pull_is_exactly_the_tenant_at_every_page_size,
            throttling_with_and_without_a_hint_is_waited_out,
            a_failing_page_is_retried_and_one_that_stays_down_fails_the_pull,
            a_truncated_or_malformed_page_fails_the_pull,
            a_token_that_expires_mid_pull_is_renewed,
            a_deleted_user_is_gone_from_the_next_scheduled_pull,
            a_name_reused_by_a_new_account_is_a_new_user,
            an_empty_tenant_is_an_empty_complete_listing,
            settings_errors_name_the_key,
        );
    };
    (@specs $fake:ty; $($spec:ident),* $(,)?) => {
        mod compliance_suite {
            $(
                #[tokio::test]
                async fn $spec() {
                    $crate::compliance::$spec::<$fake>().await
                }
            )*
        }
    };
}

/// The suite's tenant: small enough for page size 1, with inactive users,
/// nested groups and users in several groups.
pub fn tenant() -> Dataset {
    Dataset::generate(&DatasetSpec {
        users: 23,
        groups: 6,
        nested_groups: 2,
        memberships_per_user: 2,
        inactive_every: 5,
        seed: 2026,
    })
}

/// A fake of `dataset` served on loopback.
pub struct Running<F> {
    pub fake: F,
    pub server: FakeServer,
}

impl<F: CompliantFake> Running<F> {
    pub async fn start(dataset: Dataset) -> Self {
        let fake = F::new(dataset);
        let server = fake.start().await.expect("the fake serves");
        Running { fake, server }
    }

    pub fn driver(&self, page_size: u32) -> Box<dyn Driver> {
        let settings = self.fake.settings(&self.server.base_url, page_size);
        DriverFactory::build(&F::kind(), &settings, DriverContext { http: test_kit() })
            .unwrap_or_else(|error| panic!("the fake's settings build a driver: {error}"))
    }
}

/// One pull into a fresh collection, repeats merged as core merges them.
pub async fn pull(
    driver: &dyn Driver,
    mode: PullMode,
) -> Result<(CollectedRecords, PullOutcome), DriverError> {
    let mut records = CollectedRecords::default();
    let outcome = driver.pull(mode, &mut records).await?;
    records.merge_repeats();
    Ok((records, outcome))
}

/// The next pull as the scheduler makes it: a delta from the cursor when
/// the last pull left one, else a full pull.
pub async fn next_scheduled_pull(
    driver: &dyn Driver,
    last: &PullOutcome,
) -> Result<(CollectedRecords, PullOutcome), DriverError> {
    match &last.next_cursor {
        Some(cursor) => pull(driver, PullMode::Delta(cursor.clone())).await,
        None => pull(driver, PullMode::Full).await,
    }
}

/// A tenant reduced to what every driver must report of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Shape {
    /// (external id, user name in lower case, active)
    pub users: BTreeSet<(String, String, bool)>,
    /// (external id, display name)
    pub groups: BTreeSet<(String, String)>,
    /// (group id, member id, the member is a group)
    pub edges: BTreeSet<(String, String, bool)>,
}

impl Shape {
    /// What a driver of `F` must report for `dataset`.
    pub fn expected<F: CompliantFake>(dataset: &Dataset) -> Shape {
        let users = dataset
            .users
            .iter()
            .map(|u| {
                let name = F::expected_user_name(u).to_lowercase();
                (u.id.clone(), name, u.active)
            })
            .collect();
        let groups = dataset
            .groups
            .iter()
            .enumerate()
            .filter(|&(index, _)| {
                F::LISTS_GROUPS_WITHOUT_MEMBERS || !dataset.members_of(index).is_empty()
            })
            .map(|(_, g)| (g.id.clone(), g.name.clone()))
            .collect();
        let mut edges: BTreeSet<_> = dataset
            .members
            .iter()
            .map(|&(g, u)| {
                (
                    dataset.groups[g].id.clone(),
                    dataset.users[u].id.clone(),
                    false,
                )
            })
            .collect();
        if F::NESTED_GROUPS {
            for group in &dataset.groups {
                if let Some(parent) = group.parent {
                    edges.insert((dataset.groups[parent].id.clone(), group.id.clone(), true));
                }
            }
        }
        Shape {
            users,
            groups,
            edges,
        }
    }

    /// What a full pull reported.
    pub fn pulled(records: &CollectedRecords) -> Shape {
        Shape {
            users: records
                .users
                .iter()
                .map(|u| (u.external_id.clone(), u.user_name.to_lowercase(), u.active))
                .collect(),
            groups: records
                .groups
                .iter()
                .map(|g| (g.external_id.clone(), g.display_name.clone()))
                .collect(),
            edges: records
                .memberships
                .iter()
                .map(|e| {
                    (
                        e.group_external_id.to_string(),
                        e.member.external_id().to_string(),
                        matches!(e.member, MemberRef::Group(_)),
                    )
                })
                .collect(),
        }
    }
}

fn assert_exact<F: CompliantFake>(records: &CollectedRecords, dataset: &Dataset, context: &str) {
    let pulled = Shape::pulled(records);
    let expected = Shape::expected::<F>(dataset);
    let missing: Vec<_> = expected.users.difference(&pulled.users).collect();
    let extra: Vec<_> = pulled.users.difference(&expected.users).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: users missing {missing:?}, unexpected {extra:?}"
    );
    assert_eq!(
        records.users.len(),
        dataset.users.len(),
        "{context}: each user once"
    );
    assert_eq!(pulled.groups, expected.groups, "{context}: groups");
    let missing: Vec<_> = expected.edges.difference(&pulled.edges).collect();
    let extra: Vec<_> = pulled.edges.difference(&expected.edges).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{context}: edges missing {missing:?}, unexpected {extra:?}"
    );
}

fn assert_declared_totals(outcome: &PullOutcome, dataset: &Dataset, context: &str) {
    if let Some(users) = outcome.declared.users {
        assert_eq!(
            users,
            dataset.users.len() as u64,
            "{context}: declared users"
        );
    }
    if let Some(groups) = outcome.declared.groups {
        assert_eq!(
            groups,
            dataset.groups.len() as u64,
            "{context}: declared groups"
        );
    }
}

pub async fn a_full_pull_is_exactly_the_tenant_at_every_page_size<F: CompliantFake>() {
    let dataset = tenant();
    for page_size in [1, 7, F::MAX_PAGE_SIZE] {
        let running = Running::<F>::start(dataset.clone()).await;
        let driver = running.driver(page_size);
        let check = driver
            .check()
            .await
            .unwrap_or_else(|error| panic!("check at page size {page_size}: {error}"));
        assert_eq!(check.page_size, page_size, "check reports the page size");
        let (records, outcome) = pull(driver.as_ref(), PullMode::Full)
            .await
            .unwrap_or_else(|error| panic!("pull at page size {page_size}: {error}"));
        let context = format!("page size {page_size}");
        assert!(
            outcome.complete_snapshot,
            "{context}: a full pull is complete"
        );
        assert_exact::<F>(&records, &dataset, &context);
        assert_declared_totals(&outcome, &dataset, &context);
        if page_size == 1 {
            assert!(
                records.n_pages >= dataset.users.len(),
                "page size 1 reads one user per page ({} pages)",
                records.n_pages
            );
        }
    }
}

pub async fn throttling_with_and_without_a_hint_is_waited_out<F: CompliantFake>() {
    let dataset = tenant();
    for hint in [Some(0), None] {
        let running = Running::<F>::start(dataset.clone()).await;
        running.fake.faults().update(|faults| {
            faults.throttle_next = 2;
            faults.retry_after = hint;
        });
        let (records, _) = pull(running.driver(7).as_ref(), PullMode::Full)
            .await
            .unwrap_or_else(|error| panic!("throttled (hint {hint:?}): {error}"));
        assert_exact::<F>(&records, &dataset, &format!("throttled (hint {hint:?})"));
    }
}

pub async fn a_failing_page_is_retried_and_one_that_stays_down_fails_the_pull<F: CompliantFake>() {
    let dataset = tenant();
    let running = Running::<F>::start(dataset.clone()).await;
    let driver = running.driver(7);
    running.fake.faults().update(|faults| {
        faults.fail_page = Some(PageFault::new(F::USERS_RESOURCE, 1, 1));
    });
    let (records, _) = pull(driver.as_ref(), PullMode::Full)
        .await
        .unwrap_or_else(|error| panic!("one 500 on users page 1: {error}"));
    assert_exact::<F>(&records, &dataset, "after one 500");

    running.fake.faults().update(|faults| {
        faults.fail_page = Some(PageFault::new(F::USERS_RESOURCE, 1, u32::MAX));
    });
    match pull(driver.as_ref(), PullMode::Full).await {
        Err(DriverError::Transient(_)) => {}
        other => panic!("a page that stays down fails the pull as transient, got {other:?}"),
    }
}

pub async fn a_truncated_or_malformed_page_fails_the_pull<F: CompliantFake>() {
    let running = Running::<F>::start(tenant()).await;
    let driver = running.driver(7);
    running.fake.faults().update(|faults| {
        faults.truncate_page = Some(PageFault::new(F::USERS_RESOURCE, 1, 1));
    });
    match pull(driver.as_ref(), PullMode::Full).await {
        Err(DriverError::Protocol(_)) => {}
        other => panic!("a truncated page is a protocol error, got {other:?}"),
    }
    running.fake.faults().update(|faults| {
        faults.malformed_page = Some(PageFault::new(F::USERS_RESOURCE, 0, 1));
    });
    match pull(driver.as_ref(), PullMode::Full).await {
        Err(DriverError::Protocol(_)) => {}
        other => panic!("a page that is not JSON is a protocol error, got {other:?}"),
    }
}

pub async fn a_token_that_expires_mid_pull_is_renewed<F: CompliantFake>() {
    let dataset = tenant();
    let running = Running::<F>::start(dataset.clone()).await;
    let Some(tokens) = running.fake.tokens() else {
        // A static API key does not expire: what is left to hold is that
        // the one key carries every page of a pull (the fake refuses a
        // request without it).
        let (records, _) = pull(running.driver(7).as_ref(), PullMode::Full)
            .await
            .unwrap_or_else(|error| panic!("with the API key on every page: {error}"));
        assert_exact::<F>(&records, &dataset, "the API key on every page");
        assert!(records.n_pages > 1, "the tenant spans several pages");
        return;
    };
    *tokens
        .uses_per_token
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(3);
    let (records, _) = pull(running.driver(7).as_ref(), PullMode::Full)
        .await
        .unwrap_or_else(|error| panic!("with tokens good for 3 requests: {error}"));
    assert_exact::<F>(&records, &dataset, "tokens expiring");
    assert!(
        tokens.issued() >= 2,
        "an expired token was replaced ({} issued)",
        tokens.issued()
    );
}

/// Whether `id` is gone after the pull that gave `records`.
fn gone(records: &CollectedRecords, outcome: &PullOutcome, id: &str) -> bool {
    let listed = records.users.iter().any(|u| u.external_id == id)
        || records.user_updates.iter().any(|u| u.external_id == id);
    if outcome.complete_snapshot {
        return !listed;
    }
    let removed = records.removed_users.iter().any(|removed| removed == id);
    let absent_from_presence = records
        .present_users
        .as_ref()
        .is_some_and(|present| !present.iter().any(|p| p == id));
    // A delta may carry the user's final state (deprovisioned) before the
    // removal; it must not leave them present.
    (removed || absent_from_presence)
        && records
            .users
            .iter()
            .all(|u| u.external_id != id || !u.active)
}

pub async fn a_deleted_user_is_gone_from_the_next_scheduled_pull<F: CompliantFake>() {
    let dataset = tenant();
    let running = Running::<F>::start(dataset.clone()).await;
    let driver = running.driver(7);
    let (_, first) = pull(driver.as_ref(), PullMode::Full)
        .await
        .expect("first pull");
    let deleted = &dataset.users[3];
    assert!(deleted.active, "the suite deletes an active user");
    running.fake.delete_user(&deleted.id);

    let (records, outcome) = next_scheduled_pull(driver.as_ref(), &first)
        .await
        .expect("the pull after a deletion");
    assert!(
        gone(&records, &outcome, &deleted.id),
        "{} is gone after the next pull (complete: {}, removed: {:?})",
        deleted.id,
        outcome.complete_snapshot,
        records.removed_users
    );
    if outcome.complete_snapshot {
        assert_eq!(records.users.len(), dataset.users.len() - 1);
    }
}

pub async fn a_name_reused_by_a_new_account_is_a_new_user<F: CompliantFake>() {
    let dataset = tenant();
    let running = Running::<F>::start(dataset.clone()).await;
    let driver = running.driver(7);
    let (_, first) = pull(driver.as_ref(), PullMode::Full)
        .await
        .expect("first pull");
    let old = dataset.users[6].clone();
    assert!(old.active, "the suite reuses an active user's name");
    running.fake.delete_user(&old.id);
    let new = FakeUser {
        id: format!("{}-rehired", old.id),
        active: true,
        ..old.clone()
    };
    running.fake.create_user(new.clone());

    let (records, outcome) = next_scheduled_pull(driver.as_ref(), &first)
        .await
        .expect("the pull after the name was reused");
    assert!(
        gone(&records, &outcome, &old.id),
        "the old account {} is gone",
        old.id
    );
    let reported = records
        .users
        .iter()
        .find(|u| u.external_id == new.id)
        .unwrap_or_else(|| panic!("the new account {} is reported", new.id));
    assert_eq!(
        reported.user_name.to_lowercase(),
        F::expected_user_name(&old).to_lowercase(),
        "under the reused name"
    );
    assert!(reported.active);
}

pub async fn an_empty_tenant_is_an_empty_complete_listing<F: CompliantFake>() {
    let running = Running::<F>::start(Dataset::default()).await;
    let (records, outcome) = pull(running.driver(7).as_ref(), PullMode::Full)
        .await
        .unwrap_or_else(|error| panic!("an empty tenant pulls: {error}"));
    assert!(outcome.complete_snapshot);
    assert!(records.users.is_empty() && records.groups.is_empty());
    assert!(records.memberships.is_empty());
    assert_declared_totals(&outcome, &Dataset::default(), "empty tenant");
}

pub async fn settings_errors_name_the_key<F: CompliantFake>() {
    let running = Running::<F>::start(tenant()).await;
    let good = running.fake.settings(&running.server.base_url, 7);
    let factory = F::kind();
    let validate = |settings: &serde_json::Value| DriverFactory::validate(&factory, settings);
    validate(&good).expect("the fake's settings are valid");

    let named = |result: Result<(), DriverError>, key: &str, what: &str| match result {
        Err(DriverError::InvalidConfig {
            key: named,
            message,
        }) => assert!(
            named == key || message.contains(key),
            "{what}: the error names `{key}`: {named}: {message}"
        ),
        other => panic!("{what}: expected a settings error naming `{key}`, got {other:?}"),
    };

    let mut unknown = good.clone();
    unknown["colour"] = "blue".into();
    named(validate(&unknown), "colour", "an unknown key");

    for size in [0, F::MAX_PAGE_SIZE + 1] {
        let mut bad = good.clone();
        bad["page_size"] = size.into();
        named(validate(&bad), "page_size", &format!("page_size {size}"));
    }

    let keys: Vec<String> = good
        .as_object()
        .expect("settings are a table")
        .keys()
        .cloned()
        .collect();
    for key in &keys {
        let mut missing = good.clone();
        missing.as_object_mut().expect("a table").remove(key);
        if validate(&missing).is_err() {
            named(validate(&missing), key, &format!("without `{key}`"));
        }
        let mut mistyped = good.clone();
        mistyped[key.as_str()] = serde_json::json!([[]]);
        named(
            validate(&mistyped),
            key,
            &format!("`{key}` of the wrong type"),
        );
    }
}
