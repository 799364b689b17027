//! The reconciler on SQLite and PostgreSQL, as DESIGN.md's rules state it:
//! idempotence, deprovisioning, the safety gate, dry runs, atomicity and
//! nested groups.

use idpsync_core::config::{self, Config};
use idpsync_core::devices::{self, DeviceStatus, NewDevice};
use idpsync_core::events::{self, EventBus};
use idpsync_core::reconcile::{
    Delta, Edits, FailPoint, Outcome, ReconcileError, Reconciler, Snapshot, SourceInput,
    SubmitOptions, Trigger, Written,
};
use idpsync_core::store::Store;
use idpsync_core::store::entity::{
    acl_group, acl_group_member, connection, device, effective_membership, group_membership,
    source_group, source_user, sync_run, user_membership,
};
use idpsync_core::store_test;
use idpsync_core::testing::{self, TestStore};
use idpsync_driver::{Access, MemberRef, MembershipEdge, SourceGroup, SourceUser};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder};

const CONFIG: &str = r#"
[[connections]]
id = "okta"
kind = "scim"
[connections.safety]
max_deletions = 1

[[acl_groups]]
name = "engineering"
[[acl_groups.from]]
connection = "okta"
group = "Engineering"

[[acl_groups]]
name = "everyone"
[[acl_groups.from]]
connection = "okta"
group_glob = "Every*"
"#;

async fn reconciler(store: &Store, text: &str) -> Reconciler {
    let config: Config =
        config::load_str(text, "test.toml", &["scim"], &|_| None).unwrap_or_else(|e| panic!("{e}"));
    store
        .register_config(&config.connections, &config.acl_groups)
        .await
        .unwrap();
    Reconciler::new(store.clone(), &config, EventBus::default())
}

/// The fixture tenant: alice, bob, carol, dave; Engineering holds alice and
/// the nested group Platform (bob); Everyone holds all four.
fn tenant() -> Snapshot {
    let users = ["alice", "bob", "carol", "dave"]
        .iter()
        .enumerate()
        .map(|(index, name)| {
            let mut user = SourceUser::new(format!("u{}", index + 1), *name);
            user.display_name = Some(name.to_uppercase());
            user
        })
        .collect();
    Snapshot {
        users,
        groups: vec![
            SourceGroup::new("g1", "Engineering"),
            SourceGroup::new("g2", "Platform"),
            SourceGroup::new("g3", "Everyone"),
        ],
        memberships: vec![
            MembershipEdge::user("g1", "u1"),
            MembershipEdge::group("g1", "g2"),
            MembershipEdge::user("g2", "u2"),
            MembershipEdge::user("g3", "u1"),
            MembershipEdge::user("g3", "u2"),
            MembershipEdge::user("g3", "u3"),
            MembershipEdge::user("g3", "u4"),
        ]
        .into(),
        ..Snapshot::default()
    }
}

async fn submit(reconciler: &Reconciler, snapshot: Snapshot) -> Outcome {
    reconciler
        .submit(
            "okta",
            SourceInput::Snapshot(snapshot),
            SubmitOptions::new(Trigger::Manual),
        )
        .await
        .unwrap()
}

/// Every data row of the store, as text, to compare states.
/// The stored tenant and the effective members of g1 and g3: what a
/// migration must keep.
async fn memberships_state(store: &Store) -> (String, Vec<String>, Vec<String>) {
    (
        dump(store).await,
        effective_members(store, "g1").await,
        effective_members(store, "g3").await,
    )
}

async fn dump(store: &Store) -> String {
    let db = store.db();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}",
        source_user::Entity::find()
            .order_by_asc(source_user::Column::Id)
            .all(db)
            .await
            .unwrap(),
        source_group::Entity::find()
            .order_by_asc(source_group::Column::Id)
            .all(db)
            .await
            .unwrap(),
        user_membership::Entity::find()
            .order_by_asc(user_membership::Column::GroupId)
            .order_by_asc(user_membership::Column::UserId)
            .all(db)
            .await
            .unwrap(),
        group_membership::Entity::find()
            .order_by_asc(group_membership::Column::GroupId)
            .order_by_asc(group_membership::Column::MemberGroupId)
            .all(db)
            .await
            .unwrap(),
        effective_membership::Entity::find()
            .order_by_asc(effective_membership::Column::GroupId)
            .order_by_asc(effective_membership::Column::UserId)
            .all(db)
            .await
            .unwrap(),
        acl_group::Entity::find()
            .order_by_asc(acl_group::Column::Id)
            .all(db)
            .await
            .unwrap(),
        acl_group_member::Entity::find()
            .order_by_asc(acl_group_member::Column::Id)
            .all(db)
            .await
            .unwrap(),
        device::Entity::find()
            .order_by_asc(device::Column::Id)
            .all(db)
            .await
            .unwrap(),
        connection::Entity::find().all(db).await.unwrap(),
        events::read_after(db, 0, 100_000).await.unwrap(),
    )
}

async fn event_kinds_after(store: &Store, cursor: i64) -> Vec<String> {
    events::read_after(store.db(), cursor, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

async fn last_cursor(store: &Store) -> i64 {
    events::read_after(store.db(), 0, 1_000_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |e| e.id)
}

async fn acl_members(store: &Store, acl: &str) -> Vec<String> {
    let acl = acl_group::Entity::find()
        .filter(acl_group::Column::Name.eq(acl))
        .one(store.db())
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<i64> = acl_group_member::Entity::find()
        .filter(acl_group_member::Column::AclGroupId.eq(acl.id))
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect();
    user_names(store, ids).await
}

/// The sorted userNames of these user row ids.
async fn user_names(store: &Store, ids: Vec<i64>) -> Vec<String> {
    user_names_where(
        store,
        Condition::all().add(source_user::Column::Id.is_in(ids)),
    )
    .await
}

/// Every stored userName, sorted.
async fn stored_user_names(store: &Store) -> Vec<String> {
    user_names_where(store, Condition::all()).await
}

async fn user_names_where(store: &Store, condition: Condition) -> Vec<String> {
    let mut names: Vec<String> = source_user::Entity::find()
        .filter(condition)
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.user_name)
        .collect();
    names.sort();
    names
}

async fn effective_members(store: &Store, group_external_id: &str) -> Vec<String> {
    user_names(store, effective_member_ids(store, group_external_id).await).await
}

/// The user ids of a group's effective membership rows, one per row.
async fn effective_member_ids(store: &Store, group_external_id: &str) -> Vec<i64> {
    let group = source_group::Entity::find()
        .filter(source_group::Column::ExternalId.eq(group_external_id))
        .one(store.db())
        .await
        .unwrap()
        .unwrap();
    effective_membership::Entity::find()
        .filter(effective_membership::Column::GroupId.eq(group.id))
        .all(store.db())
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.user_id)
        .collect()
}

async fn register_device(reconciler: &Reconciler, owner: &str, key: &str) -> i64 {
    let (store, bus) = (reconciler.store(), reconciler.bus());
    testing::approved_device(store, bus, "okta", owner, key).await
}

async fn device_status(store: &Store, id: i64) -> String {
    testing::device_status(store, id).await
}

store_test!(
    applying_the_same_snapshot_twice_writes_nothing_the_second_time,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let first = submit(&reconciler, tenant()).await;
            let Outcome::Applied(report) = first else {
                panic!("{first:?}")
            };
            assert_eq!(report.changes.users_created, 4);
            assert_eq!(report.changes.memberships_added, 7);
            assert_eq!(
                report.effects.acl_members_added, 6,
                "engineering: alice, bob; everyone: 4"
            );

            let before = dump(&store).await;
            let second = submit(&reconciler, tenant()).await;
            assert!(
                matches!(second, Outcome::Unchanged(ref r) if r.n_events == 0),
                "{second:?}"
            );
            assert_eq!(
                dump(&store).await,
                before,
                "no row written, no event emitted"
            );
        }
    }
);

/// The direct edges stored, as "group>user" and "group>>nested group" by
/// external ids, sorted.
async fn direct_edges(store: &Store) -> Vec<String> {
    let db = store.db();
    let users: std::collections::HashMap<i64, String> = source_user::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|user| (user.id, user.external_id))
        .collect();
    let groups: std::collections::HashMap<i64, String> = source_group::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|group| (group.id, group.external_id))
        .collect();
    let mut edges: Vec<String> = user_membership::Entity::find()
        .all(db)
        .await
        .unwrap()
        .into_iter()
        .map(|edge| format!("{}>{}", groups[&edge.group_id], users[&edge.user_id]))
        .collect();
    edges.extend(
        group_membership::Entity::find()
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|edge| {
                format!(
                    "{}>>{}",
                    groups[&edge.group_id], groups[&edge.member_group_id]
                )
            }),
    );
    edges.sort();
    edges
}

store_test!(
    a_full_pull_takes_away_exactly_the_stored_edges_it_no_longer_lists,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let rerun = reconciler(&store, &config_with_limit("100%")).await;
            submit(&rerun, tenant()).await;

            // u1 leaves g3 (both ends still listed elsewhere); u3 stays but
            // loses its only edge (no listed edge names it); dave (u4) and
            // Platform (g2) are gone, with their edges; u2 joins g1; and
            // an edge names a user the source does not have.
            let mut next = tenant();
            next.users.retain(|user| user.external_id != "u4");
            next.groups.retain(|group| group.external_id != "g2");
            next.memberships = vec![
                MembershipEdge::user("g1", "u1"),
                MembershipEdge::user("g1", "u2"),
                MembershipEdge::user("g3", "u2"),
                MembershipEdge::user("g3", "ghost"),
                // Listed twice: one edge.
                MembershipEdge::user("g1", "u1"),
            ]
            .into();
            rerun.set_aside_unchanged("okta", &mut next).await.unwrap();
            let cursor = last_cursor(&store).await;
            let outcome = submit(&rerun, next.clone()).await;
            let Outcome::Applied(report) = outcome else {
                panic!("{outcome:?}")
            };
            // The deleted say who they were.
            let deleted: Vec<(String, serde_json::Value)> =
                events::read_after(store.db(), cursor, 1_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|event| event.kind.ends_with(".deleted"))
                    .map(|event| (event.kind, event.payload))
                    .collect();
            assert_eq!(
                deleted,
                [
                    (
                        "user.deleted".to_string(),
                        serde_json::json!({"external_id": "u4", "user_name": "dave"})
                    ),
                    (
                        "group.deleted".to_string(),
                        serde_json::json!({"external_id": "g2", "display_name": "Platform"})
                    ),
                ]
            );
            assert_eq!(report.changes.memberships_added, 1, "g1>u2");
            assert_eq!(
                report.changes.memberships_removed, 2,
                "g3>u1 and g3>u3; dave's and Platform's go with them"
            );
            assert_eq!(report.changes.memberships_skipped, 1, "g3>ghost");
            assert_eq!(report.changes.users_deleted, 1);
            assert_eq!(report.changes.groups_deleted, 1);
            assert_eq!(direct_edges(&store).await, ["g1>u1", "g1>u2", "g3>u2"]);
            assert_eq!(effective_members(&store, "g1").await, ["alice", "bob"]);

            // The same snapshot into an empty store stores the same edges.
            let fresh = testing::TestStore::sqlite().await;
            let fresh_reconciler = reconciler(&fresh.store, &config_with_limit("100%")).await;
            let mut first = tenant();
            first.users.retain(|user| user.external_id != "u4");
            first.groups.retain(|group| group.external_id != "g2");
            first.memberships = next.memberships.clone();
            submit(&fresh_reconciler, first).await;
            assert_eq!(direct_edges(&fresh.store).await, direct_edges(&store).await);
            fresh.cleanup().await;

            // And a re-run of it changes nothing.
            let again = submit(&rerun, next).await;
            assert!(matches!(again, Outcome::Unchanged(_)), "{again:?}");
        }
    }
);

store_test!(
    a_full_pull_sets_aside_only_the_users_stored_as_it_has_them,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let mut first = tenant();
            let set_aside = reconciler.set_aside_unchanged("okta", &mut first).await;
            assert_eq!(set_aside.unwrap(), 0, "nothing stored yet");
            assert_eq!(first, tenant());
            submit(&reconciler, first).await;
            let before = dump(&store).await;

            let mut again = tenant();
            let set_aside = reconciler.set_aside_unchanged("okta", &mut again).await;
            assert_eq!(set_aside.unwrap(), 4);
            assert!(again.users.is_empty());
            // Sorted before the stored hashes were read beside them, at
            // half the memory an edge; the same edges.
            let mut edges = tenant().memberships;
            edges.sort_and_dedup();
            assert!(again.memberships.is_sorted());
            assert_eq!(again.memberships, edges);
            let outcome = submit(&reconciler, again).await;
            assert!(matches!(outcome, Outcome::Unchanged(_)), "{outcome:?}");
            assert_eq!(dump(&store).await, before, "nothing written");

            // Carol renamed, dave gone: alice and bob are set aside, carol
            // stays a record, and dave is still deleted.
            let mut next = tenant();
            next.users[2].display_name = Some("Carol Q".into());
            next.users.retain(|user| user.user_name != "dave");
            let set_aside = reconciler.set_aside_unchanged("okta", &mut next).await;
            assert_eq!(set_aside.unwrap(), 2);
            let kept: Vec<&str> = next.users.iter().map(|u| u.external_id.as_str()).collect();
            assert_eq!(kept, ["u3"]);
            let outcome = submit(&reconciler, next).await;
            let Outcome::Applied(report) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(report.changes.users_updated, 1);
            assert_eq!(report.changes.users_deleted, 1);
            assert_eq!(report.changes.memberships_removed, 0, "dave's go with him");
            assert_eq!(stored_user_names(&store).await, ["alice", "bob", "carol"]);
            assert_eq!(
                acl_members(&store, "everyone").await,
                ["alice", "bob", "carol"]
            );
        }
    }
);

store_test!(
    a_user_written_after_being_set_aside_fails_the_apply_which_writes_nothing,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let mut without_dave = tenant();
            without_dave.users.retain(|user| user.user_name != "dave");
            let set_aside = reconciler
                .set_aside_unchanged("okta", &mut without_dave)
                .await;
            assert_eq!(set_aside.unwrap(), 3);
            // Bob is written between the comparison and the apply.
            let mut bob = SourceUser::new("u2", "bob");
            bob.active = false;
            let delta = Delta {
                upsert_users: vec![bob],
                ..Default::default()
            };
            reconciler
                .submit(
                    "okta",
                    SourceInput::Delta(delta),
                    SubmitOptions::new(Trigger::Scim),
                )
                .await
                .unwrap();
            let before = dump(&store).await;
            let refused = reconciler
                .submit(
                    "okta",
                    SourceInput::Snapshot(without_dave),
                    SubmitOptions::new(Trigger::Manual),
                )
                .await;
            assert!(
                matches!(
                    refused,
                    Err(ReconcileError::StoredUserMoved(ref id)) if id == "u2"
                ),
                "{refused:?}"
            );
            assert_eq!(dump(&store).await, before, "dave is not deleted");
        }
    }
);

store_test!(
    removing_a_user_revokes_devices_then_removes_them_from_acl_groups,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let laptop = register_device(&reconciler, "u2", "key-bob-1").await;
            let phone = register_device(&reconciler, "u2", "key-bob-2").await;
            let alice_laptop = register_device(&reconciler, "u1", "key-alice").await;
            let cursor = last_cursor(&store).await;

            let mut without_bob = tenant();
            without_bob.users.retain(|u| u.user_name != "bob");
            let outcome = submit(&reconciler, without_bob).await;
            let Outcome::Applied(report) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(report.effects.devices_revoked, 2);

            assert_eq!(
                event_kinds_after(&store, cursor).await,
                [
                    "user.deleted",
                    "device.revoked",
                    "device.revoked",
                    "membership.removed",
                    "membership.removed",
                    "acl_group.member_removed",
                    "acl_group.member_removed",
                ]
            );
            assert_eq!(device_status(&store, laptop).await, "revoked");
            assert_eq!(device_status(&store, phone).await, "revoked");
            assert_eq!(device_status(&store, alice_laptop).await, "approved");
            assert_eq!(acl_members(&store, "engineering").await, ["alice"]);
            assert_eq!(
                acl_members(&store, "everyone").await,
                ["alice", "carol", "dave"]
            );
            let revoked = device::Entity::find_by_id(laptop)
                .one(store.db())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                revoked.revoked_reason.as_deref(),
                Some("user removed at the source (okta)")
            );
            assert_eq!(revoked.owner_external_id, "u2");
        }
    }
);

store_test!(
    a_change_for_an_unknown_connection_is_refused_and_writes_nothing,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let before = dump(&store).await;
            for dry_run in [false, true] {
                let refused = reconciler
                    .submit(
                        "nobody",
                        SourceInput::Snapshot(tenant()),
                        SubmitOptions {
                            dry_run,
                            ..SubmitOptions::new(Trigger::Manual)
                        },
                    )
                    .await;
                assert!(
                    matches!(refused, Err(ReconcileError::UnknownConnection(ref id)) if id == "nobody"),
                    "{refused:?}"
                );
            }
            assert_eq!(dump(&store).await, before);
        }
    }
);

store_test!(
    each_revoked_device_records_why_its_owner_lost_access,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, &config_with_limit("100%")).await;
            submit(&reconciler, tenant()).await;
            let alice_laptop = register_device(&reconciler, "u1", "key-alice").await;
            let bob_laptop = register_device(&reconciler, "u2", "key-bob-1").await;
            let bob_phone = register_device(&reconciler, "u2", "key-bob-2").await;

            // One change set: Alice suspended, Bob removed.
            let mut changed = tenant();
            changed.users[0].active = false;
            changed.users.retain(|u| u.user_name != "bob");
            let outcome = submit(&reconciler, changed).await;
            let Outcome::Applied(report) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(report.effects.devices_revoked, 3);

            let reason = async |id: i64| {
                let row = device::Entity::find_by_id(id)
                    .one(store.db())
                    .await
                    .unwrap()
                    .unwrap();
                (row.status, row.revoked_reason.unwrap_or_default())
            };
            let removed = "user removed at the source (okta)";
            assert_eq!(
                reason(bob_laptop).await,
                ("revoked".to_string(), removed.to_string())
            );
            assert_eq!(
                reason(bob_phone).await,
                ("revoked".to_string(), removed.to_string())
            );
            let (status, why) = reason(alice_laptop).await;
            assert_eq!(status, "revoked");
            assert!(why.ends_with("(okta)") && why != removed, "{why}");
        }
    }
);

store_test!(
    deactivation_revokes_devices_and_reactivation_does_not_restore_them,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let laptop = register_device(&reconciler, "u1", "key-alice").await;

            let mut suspended = tenant();
            suspended.users[0].active = false;
            suspended.users[0].raw_status = Some("SUSPENDED".into());
            let cursor = last_cursor(&store).await;
            submit(&reconciler, suspended).await;
            let kinds = event_kinds_after(&store, cursor).await;
            assert_eq!(kinds[..2], ["user.deactivated", "device.revoked"]);
            assert_eq!(device_status(&store, laptop).await, "revoked");
            assert!(
                !acl_members(&store, "everyone")
                    .await
                    .contains(&"alice".to_string()),
                "inactive users leave ACL groups"
            );

            let blocked = devices::set_status(
                &store,
                reconciler.bus(),
                laptop,
                DeviceStatus::Approved,
                None,
            )
            .await;
            assert!(blocked.is_err(), "a revoked device is never approved again");
            let refused = devices::register(
                &store,
                reconciler.bus(),
                NewDevice {
                    owner_connection_id: "okta".into(),
                    owner_external_id: "u1".into(),
                    name: "new".into(),
                    node_key: "k2".into(),
                },
            )
            .await;
            assert!(
                refused.is_err(),
                "a deactivated user cannot register a device"
            );

            let cursor = last_cursor(&store).await;
            submit(&reconciler, tenant()).await;
            assert_eq!(
                event_kinds_after(&store, cursor).await[..1],
                ["user.reactivated"]
            );
            assert_eq!(
                device_status(&store, laptop).await,
                "revoked",
                "reactivation does not bring devices back"
            );
            assert!(
                acl_members(&store, "everyone")
                    .await
                    .contains(&"alice".to_string())
            );
        }
    }
);

store_test!(
    a_suspension_takes_access_and_keeps_devices_until_it_clears_or_becomes_final,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let laptop = register_device(&reconciler, "u1", "key-alice").await;
            let with_alice = |access: Access, status: &str| {
                let mut tenant = tenant();
                tenant.users[0].set_access(access);
                tenant.users[0].raw_status = Some(status.into());
                tenant
            };
            let in_everyone = |store: Store| async move {
                acl_members(&store, "everyone")
                    .await
                    .contains(&"alice".to_string())
            };

            // Locked out: out of ACL groups, the laptop kept.
            let cursor = last_cursor(&store).await;
            submit(&reconciler, with_alice(Access::Suspended, "LOCKED_OUT")).await;
            let kinds = event_kinds_after(&store, cursor).await;
            assert_eq!(kinds[0], "user.suspended");
            assert!(!kinds.contains(&"device.revoked".to_string()), "{kinds:?}");
            assert_eq!(device_status(&store, laptop).await, "approved");
            assert!(!in_everyone(store.clone()).await);

            // The lockout clears: access comes back with the same laptop.
            let cursor = last_cursor(&store).await;
            submit(&reconciler, with_alice(Access::Active, "ACTIVE")).await;
            assert_eq!(
                event_kinds_after(&store, cursor).await[0],
                "user.reactivated"
            );
            assert_eq!(device_status(&store, laptop).await, "approved");
            assert!(in_everyone(store.clone()).await);

            // Locked out again, then deprovisioned: the laptop goes now.
            submit(&reconciler, with_alice(Access::Suspended, "LOCKED_OUT")).await;
            let cursor = last_cursor(&store).await;
            submit(
                &reconciler,
                with_alice(Access::Deprovisioned, "DEPROVISIONED"),
            )
            .await;
            let kinds = event_kinds_after(&store, cursor).await;
            assert_eq!(kinds[..2], ["user.deactivated", "device.revoked"]);
            assert_eq!(device_status(&store, laptop).await, "revoked");
        }
    }
);

store_test!(
    a_change_set_over_the_safety_limit_waits_for_approval,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let laptop = register_device(&reconciler, "u3", "key-carol").await;
            let before = dump(&store).await;
            let cursor = last_cursor(&store).await;

            let mut mass_removal = tenant();
            mass_removal
                .users
                .retain(|u| u.user_name == "alice" || u.user_name == "bob");
            let outcome = submit(&reconciler, mass_removal.clone()).await;
            let Outcome::Held(held) = outcome else {
                panic!("expected held, got {outcome:?}")
            };
            assert_eq!(held.changes.users_deleted, 2);
            assert_eq!(event_kinds_after(&store, cursor).await, ["sync.held"]);
            let mut after_hold = dump(&store).await;
            after_hold = after_hold.rsplit_once('\n').unwrap().0.to_string();
            assert_eq!(
                after_hold,
                before.rsplit_once('\n').unwrap().0,
                "nothing applied while held"
            );
            assert_eq!(device_status(&store, laptop).await, "approved");

            let approved = reconciler.approve(held.run_id).await.unwrap();
            let Outcome::Applied(applied) = approved else {
                panic!("{approved:?}")
            };
            assert_eq!(applied.changes.users_deleted, 2);
            assert_eq!(device_status(&store, laptop).await, "revoked");
            assert!(matches!(
                reconciler.approve(held.run_id).await,
                Err(ReconcileError::RunNotHeld { .. })
            ));
        }
    }
);

store_test!(
    a_held_run_is_superseded_when_the_state_moves_before_approval,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let mut mass_removal = tenant();
            mass_removal.users.truncate(1);
            let Outcome::Held(held) = submit(&reconciler, mass_removal).await else {
                panic!("expected held")
            };

            let mut renamed = tenant();
            renamed.users[0].display_name = Some("Alice A.".into());
            assert!(matches!(
                submit(&reconciler, renamed).await,
                Outcome::Applied(_)
            ));

            let result = reconciler.approve(held.run_id).await;
            assert!(
                matches!(result, Err(ReconcileError::StateMoved { .. })),
                "{result:?}"
            );
            assert_eq!(
                source_user::Entity::find()
                    .all(store.db())
                    .await
                    .unwrap()
                    .len(),
                4,
                "nothing deleted"
            );
        }
    }
);

store_test!(
    a_dry_run_returns_the_plan_and_writes_nothing,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            register_device(&reconciler, "u2", "key-bob").await;
            let before = dump(&store).await;

            let mut without_bob = tenant();
            without_bob.users.retain(|u| u.user_name != "bob");
            let outcome = reconciler
                .submit(
                    "okta",
                    SourceInput::Snapshot(without_bob),
                    SubmitOptions::new(Trigger::Manual).dry_run(),
                )
                .await
                .unwrap();
            let Outcome::Planned(plan) = outcome else {
                panic!("{outcome:?}")
            };
            assert_eq!(dump(&store).await, before);
            assert_eq!(plan.changes.users_deleted, 1);
            assert_eq!(plan.effects.devices_revoked, 1);
            assert!(!plan.gate.held);
            let table = plan.render_table(3);
            assert!(table.contains("device.revoked"), "{table}");
            assert!(
                table.contains(
                    "acl_group.member_removed         2  engineering -> bob, everyone -> bob"
                ),
                "{table}"
            );
            let json = serde_json::to_value(&plan).unwrap();
            assert_eq!(json["events"].as_array().unwrap().len(), plan.events.len());
        }
    }
);

store_test!(
    a_failure_mid_apply_leaves_the_store_as_it_was,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let healthy = reconciler(&store, CONFIG).await;
            submit(&healthy, tenant()).await;
            register_device(&healthy, "u2", "key-bob").await;
            let before = dump(&store).await;
            let mut without_bob = tenant();
            without_bob.users.retain(|u| u.user_name != "bob");
            without_bob
                .groups
                .push(SourceGroup::new("g4", "Everyone Else"));

            for point in [
                FailPoint::AfterSourceChanges,
                FailPoint::AfterRevocations,
                FailPoint::AfterAclGroups,
            ] {
                let failing = healthy.clone().with_fail_point(point);
                let result = failing
                    .submit(
                        "okta",
                        SourceInput::Snapshot(without_bob.clone()),
                        SubmitOptions::new(Trigger::Manual),
                    )
                    .await;
                assert!(
                    matches!(result, Err(ReconcileError::Apply(_))),
                    "{point:?}: {result:?}"
                );
                assert_eq!(
                    dump(&store).await,
                    before,
                    "nothing of a failed apply is kept ({point:?})"
                );
            }
            assert!(matches!(
                submit(&healthy, without_bob).await,
                Outcome::Applied(_)
            ));
        }
    }
);

store_test!(
    a_nested_group_cycle_terminates_with_the_right_members,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let cycle = Snapshot {
                users: vec![
                    SourceUser::new("u1", "alice"),
                    SourceUser::new("u2", "bob"),
                    SourceUser::new("u3", "carol"),
                ],
                groups: vec![
                    SourceGroup::new("a", "Engineering"),
                    SourceGroup::new("b", "Platform"),
                    SourceGroup::new("c", "Other"),
                ],
                memberships: vec![
                    MembershipEdge::group("a", "b"),
                    MembershipEdge::group("b", "a"),
                    MembershipEdge::user("a", "u1"),
                    MembershipEdge::user("b", "u2"),
                    MembershipEdge::user("c", "u3"),
                ]
                .into(),
                ..Snapshot::default()
            };
            submit(&reconciler, cycle.clone()).await;
            assert_eq!(effective_members(&store, "a").await, ["alice", "bob"]);
            assert_eq!(effective_members(&store, "b").await, ["alice", "bob"]);
            assert_eq!(effective_members(&store, "c").await, ["carol"]);
            assert_eq!(acl_members(&store, "engineering").await, ["alice", "bob"]);

            // Breaking the cycle and moving carol in keeps everything right.
            let delta = Delta {
                remove_memberships: vec![MembershipEdge::group("b", "a")],
                add_memberships: vec![MembershipEdge::group("b", "c")],
                ..Default::default()
            };
            reconciler
                .submit(
                    "okta",
                    SourceInput::Delta(delta),
                    SubmitOptions::new(Trigger::Manual),
                )
                .await
                .unwrap();
            assert_eq!(
                effective_members(&store, "a").await,
                ["alice", "bob", "carol"]
            );
            assert_eq!(effective_members(&store, "b").await, ["bob", "carol"]);
            assert_eq!(
                acl_members(&store, "engineering").await,
                ["alice", "bob", "carol"]
            );
        }
    }
);

// Without ACL rules the apply gathers no users for them, and counts the
// same effects.
store_test!(
    inherited_memberships_are_counted_without_acl_rules,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let without_acl = &CONFIG[..CONFIG.find("[[acl_groups]]").unwrap()];
            let reconciler = reconciler(&store, without_acl).await;
            let Outcome::Applied(first) = submit(&reconciler, tenant()).await else {
                panic!("the first sync applies");
            };
            // bob, in Platform, is inherited by Engineering.
            assert_eq!(first.effects.inherited_added, 1);
            assert_eq!(first.effects.acl_members_added, 0);
            let mut without_platform = tenant();
            without_platform
                .memberships
                .retain(|edge| *edge != MembershipEdge::group("g1", "g2"));
            let Outcome::Applied(second) = submit(&reconciler, without_platform).await else {
                panic!("the change applies");
            };
            assert_eq!(second.effects.inherited_removed, 1);
            assert_eq!(effective_members(&store, "g1").await, ["alice"]);
        }
    }
);

store_test!(
    a_user_inherited_through_two_nested_groups_is_one_membership,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            // Engineering holds Platform and Security; alice is in both.
            let mut snapshot = Snapshot {
                users: vec![SourceUser::new("u1", "alice"), SourceUser::new("u2", "bob")],
                groups: vec![
                    SourceGroup::new("g1", "Engineering"),
                    SourceGroup::new("g2", "Platform"),
                    SourceGroup::new("g3", "Security"),
                ],
                memberships: vec![
                    MembershipEdge::group("g1", "g2"),
                    MembershipEdge::group("g1", "g3"),
                    MembershipEdge::user("g2", "u1"),
                    MembershipEdge::user("g3", "u1"),
                ]
                .into(),
                ..Snapshot::default()
            };
            // The first sync fills Engineering's inherited members at once.
            let Outcome::Applied(first) = submit(&reconciler, snapshot.clone()).await else {
                panic!("the first sync applies");
            };
            assert_eq!(first.effects.inherited_added, 1);
            assert_eq!(effective_member_ids(&store, "g1").await.len(), 1);

            // A later change recomputes it against what is stored.
            snapshot.memberships.push(MembershipEdge::user("g3", "u2"));
            let Outcome::Applied(second) = submit(&reconciler, snapshot).await else {
                panic!("the change applies");
            };
            assert_eq!(
                (
                    second.effects.inherited_added,
                    second.effects.inherited_removed
                ),
                (1, 0)
            );
            assert_eq!(effective_members(&store, "g1").await, ["alice", "bob"]);
            assert_eq!(effective_member_ids(&store, "g1").await.len(), 2);
        }
    }
);

store_test!(
    a_user_reached_along_two_paths_is_one_effective_membership,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            // alice is in Engineering directly and through Platform, on the
            // first sync (groups with nothing inherited yet) and after it.
            let mut snapshot = tenant();
            snapshot.memberships.push(MembershipEdge::user("g2", "u1"));
            let Outcome::Applied(first) = submit(&reconciler, snapshot.clone()).await else {
                panic!("the first sync applies");
            };
            assert_eq!(effective_members(&store, "g1").await, ["alice", "bob"]);
            assert_eq!(effective_member_ids(&store, "g1").await.len(), 2);
            // bob through Platform; alice's direct membership is no
            // inherited one.
            assert_eq!(first.effects.inherited_added, 1);

            // carol joins Platform, and through it Engineering.
            snapshot.memberships.push(MembershipEdge::user("g2", "u3"));
            let Outcome::Applied(second) = submit(&reconciler, snapshot.clone()).await else {
                panic!("the change applies");
            };
            assert_eq!(
                effective_members(&store, "g1").await,
                ["alice", "bob", "carol"]
            );
            assert_eq!(second.effects.inherited_added, 1);

            // alice leaves Engineering directly and stays in it through
            // Platform...
            let alice_in_engineering = MembershipEdge::user("g1", "u1");
            snapshot
                .memberships
                .retain(|edge| *edge != alice_in_engineering);
            let Outcome::Applied(third) = submit(&reconciler, snapshot.clone()).await else {
                panic!("the change applies");
            };
            assert_eq!(
                effective_members(&store, "g1").await,
                ["alice", "bob", "carol"]
            );
            assert_eq!(effective_member_ids(&store, "g1").await.len(), 3);
            assert_eq!(
                (
                    third.effects.inherited_added,
                    third.effects.inherited_removed
                ),
                (1, 0)
            );

            // ...and joins it directly again: one row still.
            snapshot.memberships.push(alice_in_engineering);
            let Outcome::Applied(fourth) = submit(&reconciler, snapshot).await else {
                panic!("the change applies");
            };
            assert_eq!(effective_member_ids(&store, "g1").await.len(), 3);
            assert_eq!(
                (
                    fourth.effects.inherited_added,
                    fourth.effects.inherited_removed
                ),
                (0, 1)
            );
        }
    }
);

store_test!(
    a_user_who_joins_or_leaves_a_group_directly_joins_or_leaves_its_acl_group,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            assert_eq!(acl_members(&store, "engineering").await, ["alice", "bob"]);

            // Only an edge changes: no user, no group, nothing inherited.
            let mut snapshot = tenant();
            snapshot.memberships.push(MembershipEdge::user("g1", "u3"));
            submit(&reconciler, snapshot).await;
            assert_eq!(
                acl_members(&store, "engineering").await,
                ["alice", "bob", "carol"]
            );

            submit(&reconciler, tenant()).await;
            assert_eq!(acl_members(&store, "engineering").await, ["alice", "bob"]);
        }
    }
);

store_test!(
    deltas_and_renames_keep_acl_groups_in_step,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            // A group renamed so a rule stops matching empties its ACL group.
            let rename = Delta {
                upsert_groups: vec![SourceGroup::new("g1", "Engineering (old)")],
                ..Default::default()
            };
            reconciler
                .submit(
                    "okta",
                    SourceInput::Delta(rename),
                    SubmitOptions::new(Trigger::Scim),
                )
                .await
                .unwrap();
            assert!(acl_members(&store, "engineering").await.is_empty());

            // A new member of a nested group reaches the ACL group of its ancestor.
            let back = Delta {
                upsert_groups: vec![SourceGroup::new("g1", "Engineering")],
                upsert_users: vec![SourceUser::new("u9", "erin")],
                replace_members: [(
                    "g2".to_string(),
                    vec![MemberRef::User("u2".into()), MemberRef::User("u9".into())],
                )]
                .into(),
                ..Default::default()
            };
            reconciler
                .submit(
                    "okta",
                    SourceInput::Delta(back),
                    SubmitOptions::new(Trigger::Scim),
                )
                .await
                .unwrap();
            assert_eq!(
                acl_members(&store, "engineering").await,
                ["alice", "bob", "erin"]
            );
            assert_eq!(
                effective_members(&store, "g1").await,
                ["alice", "bob", "erin"]
            );

            // Removing a group removes its edges and the memberships through it.
            let drop_platform = Delta {
                remove_groups: vec!["g2".into()],
                ..Default::default()
            };
            reconciler
                .submit(
                    "okta",
                    SourceInput::Delta(drop_platform),
                    SubmitOptions::new(Trigger::Scim),
                )
                .await
                .unwrap();
            assert_eq!(effective_members(&store, "g1").await, ["alice"]);
            assert_eq!(acl_members(&store, "engineering").await, ["alice"]);
        }
    }
);

// A group renamed makes the apply recompute every user's ACL groups, by
// the path a first sync takes; leavers of that same run must lose their
// ACL groups there, each with its event, and no one else may.
store_test!(
    leavers_of_a_run_that_recomputes_every_user_lose_their_acl_groups,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let config = CONFIG.replace("max_deletions = 1", "max_deletions = 2");
            let reconciler = reconciler(&store, &config).await;
            submit(&reconciler, tenant()).await;
            assert_eq!(acl_members(&store, "engineering").await, ["alice", "bob"]);
            assert_eq!(
                acl_members(&store, "everyone").await,
                ["alice", "bob", "carol", "dave"]
            );

            // Platform renamed (no rule names it: only the path changes),
            // alice deactivated, dave gone from the IdP.
            let cursor = last_cursor(&store).await;
            let mut next = tenant();
            next.groups[1].display_name = "Platform team".into();
            next.users[0].active = false;
            next.users.retain(|user| &*user.external_id != "u4");
            next.memberships
                .retain(|edge| edge.member.external_id() != "u4");
            let outcome = submit(&reconciler, next).await;

            assert_eq!(acl_counts(&outcome), (0, 3));
            assert_eq!(acl_members(&store, "engineering").await, ["bob"]);
            assert_eq!(acl_members(&store, "everyone").await, ["bob", "carol"]);
            let mut removed: Vec<(String, String)> = events::read_after(store.db(), cursor, 1_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|event| event.kind == "acl_group.member_removed")
                .map(|event| {
                    (
                        event.subject_id,
                        event.payload["user_name"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            removed.sort();
            let expected = [
                ("engineering", "alice"),
                ("everyone", "alice"),
                ("everyone", "dave"),
            ]
            .map(|(acl, user)| (acl.to_string(), user.to_string()));
            assert_eq!(removed, expected);
            assert_eq!(
                count_events(&store, cursor, "acl_group.member_added").await,
                0
            );
        }
    }
);

/// A tenant of `n` users, all in Everyone (g3); every user in Engineering
/// (g1) but those `leave_engineering` names; every tenth user inactive.
fn crowd(n: usize, leave_engineering: impl Fn(usize) -> bool) -> Snapshot {
    let mut snapshot = Snapshot {
        groups: vec![
            SourceGroup::new("g1", "Engineering"),
            SourceGroup::new("g3", "Everyone"),
        ],
        ..Snapshot::default()
    };
    for i in 0..n {
        let mut user = SourceUser::new(format!("u{i}"), format!("user{i}"));
        user.active = i % 10 != 0;
        snapshot.users.push(user);
        snapshot
            .memberships
            .push(MembershipEdge::user("g3", format!("u{i}")));
        if !leave_engineering(i) {
            snapshot
                .memberships
                .push(MembershipEdge::user("g1", format!("u{i}")));
        }
    }
    snapshot
}

fn acl_counts(outcome: &Outcome) -> (usize, usize) {
    let Outcome::Applied(report) = outcome else {
        panic!("{outcome:?}")
    };
    (
        report.effects.acl_members_added,
        report.effects.acl_members_removed,
    )
}

async fn count_events(store: &Store, after: i64, kind: &str) -> usize {
    events::read_after(store.db(), after, 1_000_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|event| event.kind == kind)
        .count()
}

// The ACL recompute takes users a page at a time (5,000 when it recomputes
// every user, 500 of a list): this tenant spans pages of both, so a user
// at a page's edge counts as any other.
store_test!(
    acl_groups_of_thousands_of_users_are_filled_and_emptied_whole,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let config = CONFIG.replace("max_deletions = 1", "max_deletions = \"100%\"");
            let reconciler = reconciler(&store, &config).await;
            let n: usize = 5_234;
            let active = n - n.div_ceil(10);

            // A first sync: every active user in both ACL groups.
            let outcome = submit(&reconciler, crowd(n, |_| false)).await;
            assert_eq!(acl_counts(&outcome), (2 * active, 0));
            assert_eq!(acl_members(&store, "everyone").await.len(), active);
            assert_eq!(acl_members(&store, "engineering").await.len(), active);
            assert_eq!(
                count_events(&store, 0, "acl_group.member_added").await,
                2 * active
            );

            // Users leave Engineering, no group changes: only their ACL
            // membership goes. Odd users: 2,617, over five lists.
            let cursor = last_cursor(&store).await;
            let outcome = submit(&reconciler, crowd(n, |i| i % 2 == 1)).await;
            let leaving_active = (0..n).filter(|i| i % 2 == 1 && i % 10 != 0).count();
            assert_eq!(acl_counts(&outcome), (0, leaving_active));
            assert_eq!(
                acl_members(&store, "engineering").await.len(),
                active - leaving_active
            );
            assert_eq!(acl_members(&store, "everyone").await.len(), active);
            assert_eq!(
                count_events(&store, cursor, "acl_group.member_removed").await,
                leaving_active
            );

            // Everyone renamed out of its rule: every user's ACL groups
            // are recomputed, and "everyone" empties, chunk after chunk.
            let cursor = last_cursor(&store).await;
            let mut renamed = crowd(n, |i| i % 2 == 1);
            renamed.groups[1].display_name = "All staff".into();
            let outcome = submit(&reconciler, renamed).await;
            assert_eq!(acl_counts(&outcome), (0, active));
            assert!(acl_members(&store, "everyone").await.is_empty());
            assert_eq!(
                acl_members(&store, "engineering").await.len(),
                active - leaving_active
            );
            assert_eq!(
                count_events(&store, cursor, "acl_group.member_removed").await,
                active
            );
        }
    }
);

// Recomputing every user of one connection reads ACL groups whole; a
// member from another connection, whose row id lies among this
// connection's, is not this connection's to remove.
store_test!(
    an_acl_group_fed_by_two_connections_keeps_the_other_connections_members,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let config = r#"
[[connections]]
id = "okta"
kind = "scim"
[connections.safety]
max_deletions = "100%"

[[connections]]
id = "entra"
kind = "scim"

[[acl_groups]]
name = "everyone"
[[acl_groups.from]]
connection = "okta"
group_glob = "Every*"
[[acl_groups.from]]
connection = "entra"
group_glob = "Every*"
"#;
            let reconciler = reconciler(&store, config).await;
            let staff = |users: &[&str]| Snapshot {
                users: users.iter().map(|id| SourceUser::new(*id, *id)).collect(),
                groups: vec![SourceGroup::new("g1", "Everyone")],
                memberships: users
                    .iter()
                    .map(|id| MembershipEdge::user("g1", *id))
                    .collect::<Vec<_>>()
                    .into(),
                ..Snapshot::default()
            };
            // Row ids: okta's first users, then entra's, then okta's others.
            submit(&reconciler, staff(&["ann", "bob"])).await;
            reconciler
                .submit(
                    "entra",
                    SourceInput::Snapshot(staff(&["eve"])),
                    SubmitOptions::new(Trigger::Manual),
                )
                .await
                .unwrap();
            submit(&reconciler, staff(&["ann", "bob", "cid"])).await;
            assert_eq!(
                acl_members(&store, "everyone").await,
                ["ann", "bob", "cid", "eve"]
            );

            // okta's group renamed out of the rule: every okta user's ACL
            // groups are recomputed; eve stays.
            let mut renamed = staff(&["ann", "bob", "cid"]);
            renamed.groups[0].display_name = "All staff".into();
            let outcome = submit(&reconciler, renamed).await;
            assert_eq!(acl_counts(&outcome), (0, 3));
            assert_eq!(acl_members(&store, "everyone").await, ["eve"]);
        }
    }
);

store_test!(
    membership_events_list_a_groups_changed_members_a_thousand_at_a_time,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let mut snapshot = tenant();
            snapshot
                .users
                .extend((0..1500).map(|i| SourceUser::new(format!("x{i}"), format!("extra{i}"))));
            snapshot.groups.push(SourceGroup::new("g4", "Large"));
            snapshot
                .memberships
                .extend((0..1500).map(|i| MembershipEdge::user("g4", format!("x{i}"))));
            submit(&reconciler, snapshot.clone()).await;

            let large: Vec<_> = events::read_after(store.db(), 0, 100_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.kind == "membership.added" && e.subject_id == "g4")
                .collect();
            let sizes: Vec<usize> = large
                .iter()
                .map(|e| e.payload["members"].as_array().unwrap().len())
                .collect();
            assert_eq!(sizes, [1000, 500]);
            assert_eq!(large[0].payload["group_name"], "Large");
            assert_eq!(
                large[0].payload["members"][0],
                serde_json::json!({"type": "user", "external_id": "x0"})
            );

            // Two members leave: one event for the group, naming both.
            let cursor = last_cursor(&store).await;
            snapshot.memberships.retain(|e| {
                !(&*e.group_external_id == "g4"
                    && (e.member == MemberRef::User("x3".into())
                        || e.member == MemberRef::User("x7".into())))
            });
            submit(&reconciler, snapshot).await;
            let removed: Vec<_> = events::read_after(store.db(), cursor, 100)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.kind == "membership.removed")
                .collect();
            assert_eq!(removed.len(), 1);
            let names: Vec<&str> = removed[0].payload["members"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["external_id"].as_str().unwrap())
                .collect();
            assert_eq!(names, ["x3", "x7"]);
        }
    }
);

/// Submits `deltas` concurrently through the group-commit path while the
/// writer is busy, so that they queue together in the order given; returns
/// each answer, in that order.
async fn submit_together(
    reconciler: &Reconciler,
    store: &Store,
    deltas: Vec<Delta>,
) -> Vec<Result<Written, ReconcileError>> {
    let busy_writer = store.begin_write().await.unwrap();
    let mut tasks = Vec::new();
    for (queued, delta) in deltas.into_iter().enumerate() {
        let caller = reconciler.clone();
        tasks.push(tokio::spawn(async move {
            caller
                .submit_coalesced("okta", delta, Edits::default(), Trigger::Scim)
                .await
        }));
        // Queued in the order given.
        while reconciler.writes_in_flight() <= queued {
            tokio::task::yield_now().await;
        }
    }
    drop(busy_writer);
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(reconciler.writes_in_flight(), 0);
    answers
}

async fn scim_runs(store: &Store) -> usize {
    sync_run::Entity::find()
        .filter(sync_run::Column::Trigger.eq("scim"))
        .all(store.db())
        .await
        .unwrap()
        .len()
}

fn remove_users(ids: &[&str]) -> Delta {
    Delta {
        remove_users: ids.iter().map(|id| id.to_string()).collect(),
        ..Default::default()
    }
}

fn create_user(id: &str, user_name: &str) -> Delta {
    Delta {
        upsert_users: vec![SourceUser::new(id, user_name)],
        ..Default::default()
    }
}

store_test!(
    concurrent_small_writes_are_committed_together,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let deltas = (0..20)
                .map(|i| create_user(&format!("n{i}"), &format!("new{i}")))
                .collect();
            let answers = submit_together(&reconciler, &store, deltas).await;

            assert!(answers.iter().all(|answer| matches!(
                answer,
                Ok(Written {
                    outcome: Outcome::Applied(_),
                    ..
                })
            )));
            let stored = source_user::Entity::find().all(store.db()).await.unwrap();
            assert_eq!(stored.len(), 20);
            // The first caller's batch may have been cut before the others
            // queued; everything after it went in one transaction.
            let runs = scim_runs(&store).await;
            assert!((1..=2).contains(&runs), "{runs} runs for 20 writes");
        }
    }
);

store_test!(
    each_batched_write_is_answered_with_the_rows_it_wrote_as_committed,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            // Users n0..n7 named with `prefix`, each by its own caller.
            let name_all = |prefix: &'static str| {
                let deltas = (0..8)
                    .map(|i| create_user(&format!("n{i}"), &format!("{prefix}{i}")))
                    .collect();
                submit_together(&reconciler, &store, deltas)
            };
            let created = name_all("new").await;
            let renamed = name_all("renamed").await;
            // The same records again: nothing changes, the rows still come.
            let again = name_all("renamed").await;

            for (i, ((created, renamed), again)) in
                created.into_iter().zip(renamed).zip(again).enumerate()
            {
                let id = format!("n{i}");
                let created = created.unwrap().rows;
                let renamed = renamed.unwrap().rows;
                let again = again.unwrap();
                assert!(matches!(again.outcome, Outcome::Unchanged(_)));
                // Only its own user, nothing of the others in its batch.
                assert_eq!(created.users.keys().collect::<Vec<_>>(), [&id]);
                assert!(created.groups.is_empty());
                assert_eq!(created.users[&id].user_name, format!("new{i}"));
                assert_eq!(created.users[&id].version, 1);
                let stored = source_user::Entity::find()
                    .filter(source_user::Column::ExternalId.eq(&id))
                    .one(store.db())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(renamed.users[&id], stored);
                assert_eq!(again.rows.users[&id], stored);
                assert_eq!(stored.user_name, format!("renamed{i}"));
                assert_eq!(stored.version, 2);
            }
        }
    }
);

store_test!(
    a_write_of_thousands_of_users_is_answered_with_every_row_and_event,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            // More users than one INSERT holds, and more events than the
            // apply buffers: the rows of later statements come back after
            // earlier events went to the database.
            let users: Vec<SourceUser> = (0..25_000)
                .map(|i| SourceUser::new(format!("n{i}"), format!("new{i}")))
                .collect();
            let delta = Delta {
                upsert_users: users,
                ..Default::default()
            };
            // A liveness guard, not a speed target: a statement left in
            // flight while the connection is used directly waits forever.
            let written = tokio::time::timeout(
                std::time::Duration::from_secs(120),
                reconciler.submit_coalesced("okta", delta, Edits::default(), Trigger::Scim),
            )
            .await
            .expect("the write finishes")
            .unwrap();

            let stored = source_user::Entity::find().all(store.db()).await.unwrap();
            assert_eq!(stored.len(), 25_000);
            assert_eq!(written.rows.users.len(), 25_000);
            for row in &stored {
                assert_eq!(written.rows.users[&row.external_id], *row);
            }
            let created = events::read_after(store.db(), 0, 30_000)
                .await
                .unwrap()
                .into_iter()
                .filter(|event| event.kind == "user.created")
                .count();
            assert_eq!(created, 25_000);
        }
    }
);

store_test!(
    a_bad_write_in_a_batch_fails_alone,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            let mut deltas: Vec<Delta> = (0..6)
                .map(|i| create_user(&format!("n{i}"), &format!("new{i}")))
                .collect();
            // Another id with a userName already asked for in this batch.
            deltas.push(create_user("clash", "NEW2"));
            let answers = submit_together(&reconciler, &store, deltas).await;

            assert!(answers[..6].iter().all(|answer| answer.is_ok()));
            assert!(answers[6].is_err(), "{:?}", answers[6]);
            assert_eq!(
                stored_user_names(&store).await,
                ["new0", "new1", "new2", "new3", "new4", "new5"]
            );
        }
    }
);

store_test!(
    batched_removals_are_judged_one_write_at_a_time_by_the_safety_gate,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            // The connection allows one removal per change set.
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            // However the three are cut into batches, one batch holds two.
            let removals = ["u2", "u3", "u4"]
                .iter()
                .map(|id| remove_users(&[id]))
                .collect();
            let answers = submit_together(&reconciler, &store, removals).await;

            assert!(
                answers.iter().all(|answer| matches!(
                    answer,
                    Ok(Written {
                        outcome: Outcome::Applied(_),
                        ..
                    })
                )),
                "{answers:?}"
            );
            let held = sync_run::Entity::find()
                .filter(sync_run::Column::Status.eq("held"))
                .all(store.db())
                .await
                .unwrap();
            assert!(held.is_empty());
            assert_eq!(
                source_user::Entity::find()
                    .all(store.db())
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
    }
);

store_test!(
    a_write_touching_an_earlier_one_applies_after_it,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit_together(&reconciler, &store, vec![create_user("n1", "new1")]).await;
            // Removed, then created again: in one delta the removal would win.
            let deltas = vec![
                remove_users(&["n1"]),
                create_user("n1", "again1"),
                create_user("n2", "new2"),
            ];
            let answers = submit_together(&reconciler, &store, deltas).await;

            assert!(answers.iter().all(|answer| answer.is_ok()), "{answers:?}");
            assert_eq!(stored_user_names(&store).await, ["again1", "new2"]);
        }
    }
);

store_test!(
    memberships_survive_their_rekeying_migrations_both_ways,
    async |test_store: &TestStore| {
        let store = test_store.store.clone();
        {
            use idpsync_migrations::{Migrator, MigratorTrait};
            use sea_orm::{ConnectionTrait, Statement};
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let before = memberships_state(&store).await;
            assert_eq!(before.1, ["alice", "bob"]);

            // Back before migrations 4, 5 and 6 (and 7, the suspended
            // column, 8, the hook tables, and 9, SQLite's scratch tables),
            // to one `memberships` table and an effective table keyed by
            // id, both with a connection column...
            let migrating = test_store.outside_connection().await;
            Migrator::down(&migrating, Some(6)).await.unwrap();
            let backend = store.db().get_database_backend();
            for (table, rows) in [("memberships", 7), ("effective_memberships", 7)] {
                let connections = store
                    .db()
                    .query_all_raw(Statement::from_string(
                        backend,
                        format!("SELECT connection_id FROM {table}"),
                    ))
                    .await
                    .unwrap();
                assert_eq!(connections.len(), rows, "{table}");
                assert!(
                    connections
                        .iter()
                        .all(|row| row.try_get::<String>("", "connection_id").unwrap() == "okta"),
                    "{table}"
                );
            }
            let nested = store
                .db()
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT group_id FROM memberships WHERE member_group_id IS NOT NULL",
                ))
                .await
                .unwrap();
            assert_eq!(nested.len(), 1);
            // ...and forward again: the same edges and memberships.
            Migrator::up(&migrating, None).await.unwrap();
            migrating.close().await.unwrap();
            let after = memberships_state(&store).await;
            assert_eq!(after, before);
        }
    }
);

store_test!(
    a_store_with_data_at_every_earlier_schema_version_migrates_forward_intact,
    async |test_store: &TestStore| {
        let store = test_store.store.clone();
        {
            use idpsync_migrations::{Migrator, MigratorTrait};
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            let before = memberships_state(&store).await;
            // Every version after the first (which creates the store): the
            // data taken back to it, then forward to the latest.
            let steps = Migrator::migrations().len() as u32;
            let migrating = test_store.outside_connection().await;
            for back in 1..steps {
                Migrator::down(&migrating, Some(back)).await.unwrap();
                assert_eq!(
                    Migrator::get_pending_migrations(&migrating)
                        .await
                        .unwrap()
                        .len() as u32,
                    back
                );
                let applied = store.migrate().await.unwrap();
                assert_eq!(applied.len() as u32, back);
                let after = memberships_state(&store).await;
                assert_eq!(after, before, "forward from {back} step(s) back");
            }
            migrating.close().await.unwrap();
        }
    }
);

store_test!(
    a_removed_user_or_group_leaves_no_membership_behind,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, CONFIG).await;
            submit(&reconciler, tenant()).await;
            // dave leaves, and the nested group Platform is deleted.
            let mut snapshot = tenant();
            snapshot.users.retain(|user| user.external_id != "u4");
            snapshot.groups.retain(|group| group.external_id != "g2");
            submit(&reconciler, snapshot).await;

            let users: Vec<i64> = source_user::Entity::find()
                .all(store.db())
                .await
                .unwrap()
                .into_iter()
                .map(|user| user.id)
                .collect();
            let groups: Vec<i64> = source_group::Entity::find()
                .all(store.db())
                .await
                .unwrap()
                .into_iter()
                .map(|group| group.id)
                .collect();
            let effective: Vec<(i64, i64)> = effective_membership::Entity::find()
                .all(store.db())
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.group_id, row.user_id))
                .collect();
            let direct: Vec<(i64, i64)> = user_membership::Entity::find()
                .all(store.db())
                .await
                .unwrap()
                .into_iter()
                .map(|row| (row.group_id, row.user_id))
                .collect();
            for rows in [&effective, &direct] {
                assert!(!rows.is_empty());
                assert!(
                    rows.iter()
                        .all(|(group, user)| users.contains(user) && groups.contains(group)),
                    "{rows:?}"
                );
            }
            let nested = group_membership::Entity::find()
                .all(store.db())
                .await
                .unwrap();
            assert!(
                nested.is_empty(),
                "the only nested group is gone: {nested:?}"
            );
            assert_eq!(effective_members(&store, "g1").await, ["alice"]);
        }
    }
);

/// The tenant's connection with `max_deletions` set to `limit`.
fn config_with_limit(limit: &str) -> String {
    CONFIG.replace("max_deletions = 1", &format!("max_deletions = \"{limit}\""))
}

fn removal(ids: &[&str]) -> SourceInput {
    SourceInput::Delta(remove_users(ids))
}

store_test!(
    a_percentage_limit_judges_removals_against_the_stored_users,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            // 25% of the tenant's four users: one removal at a time.
            let reconciler = reconciler(&store, &config_with_limit("25%")).await;
            submit(&reconciler, tenant()).await;
            let options = || SubmitOptions::new(Trigger::Scim);
            let two = reconciler
                .submit("okta", removal(&["u3", "u4"]), options())
                .await
                .unwrap();
            assert!(matches!(two, Outcome::Held(_)), "{two:?}");
            let one = reconciler
                .submit("okta", removal(&["u4"]), options())
                .await
                .unwrap();
            assert!(matches!(one, Outcome::Applied(_)), "{one:?}");
        }
    }
);

store_test!(
    a_dry_run_reports_the_exact_allowance,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            // An apply under 100% need not count the users; a plan does.
            let reconciler = reconciler(&store, &config_with_limit("100%")).await;
            submit(&reconciler, tenant()).await;
            let Outcome::Planned(plan) = reconciler
                .submit(
                    "okta",
                    removal(&["u4"]),
                    SubmitOptions::new(Trigger::Manual).dry_run(),
                )
                .await
                .unwrap()
            else {
                panic!("expected a plan")
            };
            assert_eq!((plan.gate.removals, plan.gate.allowed), (1, 4));
        }
    }
);

store_test!(
    a_zero_percent_limit_holds_even_one_removal,
    |test_store: &TestStore| {
        let store = test_store.store.clone();
        async move {
            let reconciler = reconciler(&store, &config_with_limit("0%")).await;
            submit(&reconciler, tenant()).await;
            let outcome = reconciler
                .submit("okta", removal(&["u4"]), SubmitOptions::new(Trigger::Scim))
                .await
                .unwrap();
            assert!(matches!(outcome, Outcome::Held(_)), "{outcome:?}");
        }
    }
);

/// A tenant of 1,000 users, each a member of every one of `groups` groups:
/// 1,000 edges a group, 100,000 from 100 groups on (a bulk insert).
/// 1000 users, each a direct member of every one of `groups` groups, and
/// a group "all" with those groups nested in it and no direct member: it
/// inherits every user.
fn bulk_tenant(groups: usize) -> Snapshot {
    let n_users = 1000;
    Snapshot {
        users: (0..n_users)
            .map(|i| SourceUser::new(format!("u{i}"), format!("user{i}")))
            .collect(),
        groups: (0..groups)
            .map(|g| SourceGroup::new(format!("g{g}"), format!("Group {g}")))
            .chain([SourceGroup::new("all", "Everyone")])
            .collect(),
        memberships: (0..groups)
            .flat_map(|g| {
                (0..n_users).map(move |i| MembershipEdge::user(format!("g{g}"), format!("u{i}")))
            })
            .chain((0..groups).map(|g| MembershipEdge::group("all", format!("g{g}"))))
            .collect::<Vec<_>>()
            .into(),
        ..Snapshot::default()
    }
}

/// A first sync of 100k edges or more on SQLite builds the by-user edge
/// index after inserting the edges rather than during; the index is there
/// afterwards, as the migration made it, and holds every edge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_first_sync_on_sqlite_leaves_the_by_user_index_whole() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let test_store = TestStore::sqlite().await;
    let store = test_store.store.clone();
    let index_sql = || async {
        store
            .db()
            .query_one_raw(Statement::from_string(
                DatabaseBackend::Sqlite,
                "SELECT sql FROM sqlite_master WHERE name = 'ix_user_memberships_user'",
            ))
            .await
            .unwrap()
            .map(|row| row.try_get::<String>("", "sql").unwrap())
    };
    let before = index_sql().await;
    assert!(before.is_some(), "the migration made the index");

    let reconciler = reconciler(&store, CONFIG).await;
    assert!(matches!(
        submit(&reconciler, bulk_tenant(100)).await,
        Outcome::Applied(_)
    ));

    assert_eq!(index_sql().await, before, "the index is back, unchanged");
    let through_index = store
        .db()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "SELECT count(*) AS n FROM user_memberships \
             INDEXED BY ix_user_memberships_user WHERE user_id > 0",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(through_index, 100 * 1000);
    let check = store
        .db()
        .query_one_raw(Statement::from_string(
            DatabaseBackend::Sqlite,
            "PRAGMA integrity_check",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index::<String>(0)
        .unwrap();
    assert_eq!(check, "ok");
    test_store.cleanup().await;
}

/// The by-user edge index a bulk first sync builds again sorts its keys in
/// temporary files on SQLite, not on the heap (ten million keys: the
/// 1M-user first sync's peak). SQLite switches `temp_store` inside a
/// transaction only on a connection that never opened its temporary
/// database, so neither the migrations of a new store (`ALTER TABLE` reads
/// the temporary schema) nor the nesting walk, run by every sync with
/// nested groups, may open it on a pooled connection; and the switch is
/// undone before the connection goes back to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_an_index_build_after_nested_syncs_sorts_in_temporary_files() {
    use idpsync_core::store::index_build::{IndexSort, build_indexes};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    // A new store whose pool has one connection; its writer's connections
    // run the delta syncs and the builds below.
    let store = Store::open_with(&url, 1, config::Durability::Full)
        .await
        .unwrap();
    let reconciler = reconciler(&store, CONFIG).await;
    assert!(matches!(
        submit(&reconciler, tenant()).await,
        Outcome::Applied(_)
    ));
    // A re-run that moves carol into Platform: Engineering, which has
    // inherited rows, is compared through every scratch table.
    let mut moved = tenant();
    moved.memberships = moved
        .memberships
        .refs()
        .map(|edge| edge.to_edge())
        .chain([MembershipEdge::user("g2", "u3")])
        .collect::<Vec<_>>()
        .into();
    assert!(matches!(
        submit(&reconciler, moved).await,
        Outcome::Applied(_)
    ));
    assert!(
        effective_members(&store, "g1")
            .await
            .contains(&"carol".to_string()),
        "carol is in Engineering through Platform: the nesting walk ran"
    );

    for round in 0..2 {
        let write = store.begin_write().await.unwrap();
        let sort = build_indexes(
            &write.tx,
            &[format!(
                "CREATE INDEX ix_probe_{round} ON source_users (display_name)"
            )],
        )
        .await
        .unwrap();
        assert_eq!(sort, IndexSort::TemporaryFiles, "round {round}");
        assert_eq!(
            temp_store(&write.tx).await,
            2,
            "back to memory after the build"
        );
        assert_eq!(
            cache_size(&write.tx).await,
            -16384,
            "the connection's own cache"
        );
        write.commit().await.unwrap();
    }
    // A failed build puts the setting back too.
    let write = store.begin_write().await.unwrap();
    let failed = build_indexes(
        &write.tx,
        &["CREATE INDEX ix_probe ON no_such_table (x)".into()],
    )
    .await;
    assert!(failed.is_err());
    assert_eq!(temp_store(&write.tx).await, 2);
    assert_eq!(cache_size(&write.tx).await, -16384);
    drop(write);
    drop(store);
}

/// Should a connection have opened its temporary database, an index build
/// still runs (its sort in memory) and says so: a sync never fails for
/// where a sort goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sqlite_a_connection_with_a_temporary_table_still_builds_indexes_in_memory() {
    use idpsync_core::store::index_build::{IndexSort, build_indexes};
    use sea_orm::ConnectionTrait;
    let test_store = TestStore::sqlite().await;
    let store = Store::open_with(&test_store.url, 1, config::Durability::Full)
        .await
        .unwrap();
    let write = store.begin_write().await.unwrap();
    write
        .tx
        .execute_unprepared("CREATE TEMPORARY TABLE opened (x INTEGER)")
        .await
        .unwrap();
    let sort = build_indexes(
        &write.tx,
        &["CREATE INDEX ix_probe ON source_users (display_name)".into()],
    )
    .await
    .unwrap();
    assert_eq!(sort, IndexSort::Memory);
    assert_eq!(temp_store(&write.tx).await, 2);
    write.commit().await.unwrap();
    let built = store
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DatabaseBackend::Sqlite,
            "SELECT count(*) AS n FROM sqlite_master WHERE name = 'ix_probe'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(built, 1);
    test_store.cleanup().await;
}

/// SQLite's `temp_store` on `db`'s connection (1 file, 2 memory).
async fn temp_store(db: &impl sea_orm::ConnectionTrait) -> i64 {
    pragma(db, "temp_store").await
}

/// The connection's page cache: negative in KiB, as idpsync sets it.
async fn cache_size(db: &impl sea_orm::ConnectionTrait) -> i64 {
    pragma(db, "cache_size").await
}

async fn pragma(db: &impl sea_orm::ConnectionTrait, name: &str) -> i64 {
    db.query_one_raw(sea_orm::Statement::from_string(
        sea_orm::DatabaseBackend::Sqlite,
        format!("PRAGMA {name}"),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get_by_index::<i64>(0)
    .unwrap()
}

/// On PostgreSQL `DROP INDEX` locks the table against every reader until
/// the transaction ends, so the by-user edge index is built after a bulk
/// insert only into an empty table: a first sync rebuilds it, as the
/// migration made it; a bulk sync into a table that holds edges leaves it
/// in place. The inherited memberships' by-user index goes the same way,
/// and so does the edge table's primary key, which comes back a primary
/// key. A first sync that fails leaves all of them as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_only_a_bulk_sync_into_an_empty_table_rebuilds_the_by_user_indexes() {
    use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
    let Some(test_store) = testing::postgres_or_skip(
        "on_postgresql_only_a_bulk_sync_into_an_empty_table_rebuilds_the_by_user_indexes",
    )
    .await
    else {
        return;
    };
    let store = test_store.store.clone();
    let query = |sql: &'static str| {
        let store = store.clone();
        async move {
            store
                .db()
                .query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql))
                .await
                .unwrap()
                .expect("one row")
        }
    };
    let index = |name: &'static str| {
        let store = store.clone();
        async move {
            let row = store
                .db()
                .query_one_raw(Statement::from_sql_and_values(
                    DatabaseBackend::Postgres,
                    "SELECT c.oid::int8 AS oid, pg_get_indexdef(c.oid) AS definition, \
                     i.indisvalid AS valid FROM pg_class c \
                     JOIN pg_index i ON i.indexrelid = c.oid \
                     WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace",
                    [name.into()],
                ))
                .await
                .unwrap()
                .expect("the index");
            (
                row.try_get::<i64>("", "oid").unwrap(),
                row.try_get::<String>("", "definition").unwrap(),
                row.try_get::<bool>("", "valid").unwrap(),
            )
        }
    };
    let indexes = [
        "ix_user_memberships_user",
        "ix_inherited_memberships_user",
        "user_memberships_pkey",
    ];
    let mut migrated = Vec::new();
    for name in indexes {
        migrated.push(index(name).await);
    }
    let reconciler = reconciler(&store, CONFIG).await;
    let primary_keys = || {
        query(
            "SELECT count(*) AS n FROM pg_constraint \
             WHERE conrelid = to_regclass('user_memberships') AND contype = 'p'",
        )
    };

    let failed = reconciler
        .clone()
        .with_fail_point(FailPoint::AfterAclGroups)
        .submit(
            "okta",
            SourceInput::Snapshot(bulk_tenant(100)),
            SubmitOptions::new(Trigger::Manual),
        )
        .await;
    assert!(
        matches!(failed, Err(ReconcileError::Apply(_))),
        "{failed:?}"
    );
    for (name, migrated) in indexes.into_iter().zip(&migrated) {
        assert_eq!(&index(name).await, migrated, "a failed sync keeps {name}");
    }

    assert!(matches!(
        submit(&reconciler, bulk_tenant(100)).await,
        Outcome::Applied(_)
    ));
    let mut after_first = Vec::new();
    for (name, (migrated, definition, _)) in indexes.into_iter().zip(&migrated) {
        let (built, first_definition, valid) = index(name).await;
        assert_ne!(built, *migrated, "the first sync built {name} anew");
        assert_eq!(&first_definition, definition, "as the migration made it");
        assert!(valid, "{name}");
        after_first.push(built);
    }
    assert_eq!(
        primary_keys().await.try_get::<i64>("", "n").unwrap(),
        1,
        "the edge table's key is its primary key again"
    );

    assert!(matches!(
        submit(&reconciler, bulk_tenant(300)).await,
        Outcome::Applied(_)
    ));
    for (name, first) in indexes.into_iter().zip(after_first) {
        let (after_second, _, valid) = index(name).await;
        assert_eq!(after_second, first, "the table held rows: {name} kept");
        assert!(valid, "{name}");
    }
    let count =
        |sql: &'static str| async move { query(sql).await.try_get::<i64>("", "n").unwrap() };
    assert_eq!(
        count("SELECT count(*) AS n FROM user_memberships").await,
        300 * 1000
    );
    // "all" inherits every user, through the groups nested in it.
    assert_eq!(
        count("SELECT count(*) AS n FROM inherited_memberships").await,
        1000
    );
    assert_eq!(
        count(
            "SELECT count(DISTINCT user_id) AS n FROM inherited_memberships \
             WHERE user_id IN (SELECT id FROM source_users)"
        )
        .await,
        1000
    );
    test_store.cleanup().await;
}

/// A full pull's apply on a SQLite file runs on a connection of its own
/// (`Store::begin_bulk_write`), so it leaves nothing in the pools: it
/// applies while every pooled connection, the readers' and the writer's,
/// is taken. A delta uses the writer's and waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pull_applies_on_sqlite_without_a_pooled_connection() {
    let test_store = TestStore::sqlite().await;
    let store = &test_store.store;
    let reconciler = reconciler(store, CONFIG).await;
    let taken = test_store.take_every_pooled_connection().await;

    let applied = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        submit(&reconciler, tenant()),
    )
    .await
    .expect("a full pull's apply needs no pooled connection");
    assert!(matches!(applied, Outcome::Applied { .. }), "{applied:?}");

    let delta = reconciler.submit(
        "okta",
        SourceInput::Delta(Delta::default()),
        SubmitOptions::new(Trigger::Manual),
    );
    let waited = tokio::time::timeout(std::time::Duration::from_millis(200), delta).await;
    assert!(waited.is_err(), "a delta waits for a pooled connection");
    drop(taken);
    let users = source_user::Entity::find().all(store.db()).await.unwrap();
    assert_eq!(users.len(), 4, "the full pull's users are committed");
    test_store.cleanup().await;
}
