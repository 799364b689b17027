//! Identity churn on SQLite and PostgreSQL: a userName that moves from one
//! account to another within one change set (a deleted account's name
//! reused by a new hire, a rename that frees a name for someone else, two
//! accounts swapping names, chains of renames) commits, in snapshots and in
//! deltas, and every device stays with the person who owns it.

use idpsync_core::config::{self, Config};
use idpsync_core::events::EventBus;
use idpsync_core::reconcile::{
    Delta, InputError, Outcome, ReconcileError, Reconciler, Snapshot, SourceInput, SubmitOptions,
    Trigger,
};
use idpsync_core::store::Store;
use idpsync_core::store::entity::source_user;
use idpsync_core::store_test;
use idpsync_core::testing::{self, TestStore};
use idpsync_driver::SourceUser;
use sea_orm::{EntityTrait, QueryOrder};

const CONFIG: &str = r#"
[[connections]]
id = "idp"
kind = "scim"
[connections.safety]
max_deletions = "100%"
"#;

async fn reconciler(store: &Store) -> Reconciler {
    let config: Config = config::load_str(CONFIG, "test.toml", &["scim"], &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    store
        .register_config(&config.connections, &config.acl_groups)
        .await
        .unwrap();
    Reconciler::new(store.clone(), &config, EventBus::default())
}

fn user(id: &str, name: &str) -> SourceUser {
    SourceUser::new(id, name)
}

async fn submit(reconciler: &Reconciler, input: SourceInput) -> Result<Outcome, ReconcileError> {
    reconciler
        .submit("idp", input, SubmitOptions::new(Trigger::Schedule))
        .await
}

async fn snapshot(reconciler: &Reconciler, users: Vec<SourceUser>) {
    let outcome = submit(
        reconciler,
        SourceInput::Snapshot(Snapshot {
            users,
            ..Snapshot::default()
        }),
    )
    .await;
    assert!(
        matches!(outcome, Ok(Outcome::Applied(_) | Outcome::Unchanged(_))),
        "{outcome:?}"
    );
}

/// Every stored user as `external id=userName`, by external id.
async fn stored(store: &Store) -> Vec<String> {
    let mut users: Vec<String> = source_user::Entity::find()
        .order_by_asc(source_user::Column::ExternalId)
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|row| {
            assert_eq!(row.user_name_key, row.user_name.to_lowercase());
            format!("{}={}", row.external_id, row.user_name)
        })
        .collect();
    users.sort();
    users
}

async fn approved_device(reconciler: &Reconciler, owner: &str) -> i64 {
    let (store, bus) = (reconciler.store(), reconciler.bus());
    testing::approved_device(store, bus, "idp", owner, &format!("key-{owner}")).await
}

async fn device_status(store: &Store, id: i64) -> String {
    testing::device_status(store, id).await
}

store_test!(
    a_deleted_accounts_name_reused_by_a_new_hire_in_one_period_commits,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            snapshot(&reconciler, vec![user("u1", "Alice"), user("u2", "bob")]).await;
            let leaver = approved_device(&reconciler, "u1").await;
            let stayer = approved_device(&reconciler, "u2").await;

            // u1 left, u3 was hired as "alice"; bob was suspended meanwhile.
            let mut bob = user("u2", "bob");
            bob.active = false;
            snapshot(&reconciler, vec![user("u3", "alice"), bob]).await;

            assert_eq!(stored(&store).await, ["u2=bob", "u3=alice"]);
            assert_eq!(device_status(&store, leaver).await, "revoked");
            assert_eq!(
                device_status(&store, stayer).await,
                "revoked",
                "the unrelated suspension in the same period is applied"
            );
        }
    }
);

store_test!(
    a_rename_frees_a_name_for_a_new_hire_and_the_renamed_keeps_their_device,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            snapshot(&reconciler, vec![user("u1", "jsmith")]).await;
            let device = approved_device(&reconciler, "u1").await;

            snapshot(
                &reconciler,
                vec![user("u1", "john.smith"), user("u2", "jsmith")],
            )
            .await;

            assert_eq!(stored(&store).await, ["u1=john.smith", "u2=jsmith"]);
            assert_eq!(device_status(&store, device).await, "approved");
        }
    }
);

store_test!(
    two_accounts_swapping_names_commit_in_a_snapshot_and_in_a_delta,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            snapshot(&reconciler, vec![user("u1", "a"), user("u2", "b")]).await;
            snapshot(&reconciler, vec![user("u1", "B"), user("u2", "A")]).await;
            assert_eq!(stored(&store).await, ["u1=B", "u2=A"]);

            let swap_back = Delta {
                upsert_users: vec![user("u1", "a"), user("u2", "b")],
                ..Delta::default()
            };
            submit(&reconciler, SourceInput::Delta(swap_back))
                .await
                .unwrap();
            assert_eq!(stored(&store).await, ["u1=a", "u2=b"]);
        }
    }
);

store_test!(
    a_chain_of_renames_with_a_deletion_and_a_new_hire_commits_as_a_delta,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            snapshot(
                &reconciler,
                vec![user("u1", "a"), user("u2", "b"), user("u3", "c")],
            )
            .await;
            let leaver = approved_device(&reconciler, "u3").await;

            // u1 takes b, u2 takes c, u3 leaves, u4 is hired as a.
            let delta = Delta {
                upsert_users: vec![user("u4", "a"), user("u1", "b"), user("u2", "c")],
                remove_users: vec!["u3".into()],
                ..Delta::default()
            };
            submit(&reconciler, SourceInput::Delta(delta))
                .await
                .unwrap();

            assert_eq!(stored(&store).await, ["u1=b", "u2=c", "u4=a"]);
            assert_eq!(device_status(&store, leaver).await, "revoked");
        }
    }
);

store_test!(
    every_permutation_of_names_between_stored_and_incoming_users_commits,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            let names = ["ann", "ben", "cat", "dan"];
            let mut permutations = vec![names.to_vec()];
            // Heap's algorithm: every order of the four names.
            let mut order = names.to_vec();
            let mut counters = [0usize; 4];
            let mut i = 1;
            while i < order.len() {
                if counters[i] < i {
                    let j = if i % 2 == 0 { 0 } else { counters[i] };
                    order.swap(j, i);
                    permutations.push(order.clone());
                    counters[i] += 1;
                    i = 1;
                } else {
                    counters[i] = 0;
                    i += 1;
                }
            }
            assert_eq!(permutations.len(), 24);
            // Each round, three stored accounts take three of the names in
            // the permutation's order; the fourth name goes to a new hire
            // (a new id every round), whose predecessor leaves.
            for (round, permutation) in permutations.iter().enumerate() {
                let mut users: Vec<SourceUser> = ["u1", "u2", "u3"]
                    .iter()
                    .zip(permutation)
                    .map(|(id, name)| user(id, name))
                    .collect();
                users.push(user(&format!("new{round}"), permutation[3]));
                let mut expected: Vec<String> = users
                    .iter()
                    .map(|u| format!("{}={}", u.external_id, u.user_name))
                    .collect();
                expected.sort();
                snapshot(&reconciler, users).await;
                assert_eq!(stored(&store).await, expected, "round {round}");
            }
        }
    }
);

store_test!(
    a_name_still_held_by_an_untouched_user_is_refused_and_nothing_is_applied,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            snapshot(&reconciler, vec![user("u1", "a"), user("u2", "b")]).await;
            // A delta that gives u2's name to u3 without touching u2.
            let delta = Delta {
                upsert_users: vec![user("u3", "B"), user("u1", "z")],
                ..Delta::default()
            };
            let refused = submit(&reconciler, SourceInput::Delta(delta)).await;
            assert!(refused.is_err(), "{refused:?}");
            assert_eq!(stored(&store).await, ["u1=a", "u2=b"]);
        }
    }
);

store_test!(
    a_user_name_with_a_control_character_is_refused,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store).await;
            let refused = submit(
                &reconciler,
                SourceInput::Snapshot(Snapshot {
                    users: vec![user("u1", "a\u{1}b")],
                    ..Snapshot::default()
                }),
            )
            .await;
            assert!(
                matches!(
                    refused,
                    Err(ReconcileError::Input(InputError::ControlCharacterInUserName(ref id))) if id == "u1"
                ),
                "{refused:?}"
            );
        }
    }
);
