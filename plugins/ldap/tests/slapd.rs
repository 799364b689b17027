//! The LDAP driver against a real OpenLDAP server (slapd on loopback): paged
//! reads past the server's size limit, nested groups, disabled people, Active
//! Directory shaped entries, incremental pulls by modifyTimestamp that see
//! deletions, LDAPS and StartTLS against a private CA, and errors that say
//! what to fix.

use idpsync_driver::{
    CollectedRecords, DeltaCursor, Driver, DriverError, MemberRef, PullMode, PullOutcome,
};
use idpsync_plugin_ldap::LdapDriver;
use idpsync_plugin_ldap::settings::LdapSettings;
use idpsync_plugin_ldap::testing::{
    GROUPS, Group, PEOPLE, Person, SERVICE_DN, SERVICE_PASSWORD, Seed, Slapd, SlapdOptions,
    group_dn, person_dn,
};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

fn people(n: usize) -> Vec<Person> {
    (0..n)
        .map(|i| {
            Person::new(
                &format!("p{i}"),
                &format!("Given{i}"),
                &format!("Family{i}"),
            )
        })
        .collect()
}

/// 120 people; engineering = p0..p39 plus the platform group; platform =
/// p40..p59; everyone = engineering plus p60..p119.
fn company() -> Seed {
    let dns = |range: std::ops::Range<usize>| {
        range
            .map(|i| person_dn(&format!("p{i}")))
            .collect::<Vec<_>>()
    };
    let mut engineering = dns(0..40);
    engineering.push(group_dn("platform"));
    let mut everyone = dns(60..120);
    everyone.push(group_dn("engineering"));
    Seed {
        people: people(120),
        groups: vec![
            Group {
                cn: "platform".into(),
                members: dns(40..60),
            },
            Group {
                cn: "engineering".into(),
                members: engineering,
            },
            Group {
                cn: "everyone".into(),
                members: everyone,
            },
        ],
        extra_ldif: String::new(),
    }
}

fn settings(url: &str) -> Value {
    json!({
        "url": url,
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_base_dn": PEOPLE,
        "group_base_dn": GROUPS,
        "page_size": 25,
        "attributes": {"disabled": "employeeType", "disabled_values": ["disabled"]},
    })
}

fn driver(settings: &Value) -> LdapDriver {
    LdapDriver::new(LdapSettings::parse(settings).unwrap())
}

async fn pull(driver: &LdapDriver, mode: PullMode) -> (CollectedRecords, PullOutcome) {
    let mut records = CollectedRecords::default();
    let outcome = driver.pull(mode, &mut records).await.unwrap();
    (records, outcome)
}

/// user name -> external id, group name -> external id.
fn names(records: &CollectedRecords) -> (HashMap<String, String>, HashMap<String, String>) {
    (
        records
            .users
            .iter()
            .map(|u| (u.user_name.clone(), u.external_id.clone()))
            .collect(),
        records
            .groups
            .iter()
            .map(|g| (g.display_name.clone(), g.external_id.clone()))
            .collect(),
    )
}

#[tokio::test]
async fn a_full_pull_pages_past_the_size_limit_and_keeps_nested_groups() {
    let slapd = Slapd::start(
        &company(),
        &SlapdOptions {
            size_limit: Some(50),
            tls: false,
        },
    );
    let (records, outcome) = pull(&driver(&settings(&slapd.url)), PullMode::Full).await;

    assert!(outcome.complete_snapshot);
    assert_eq!(
        records.users.len(),
        120,
        "every person, though the server stops plain searches at 50"
    );
    assert!(
        records.n_pages >= 5,
        "users arrive page by page: {}",
        records.n_pages
    );
    let (users, groups) = names(&records);
    let p7 = records.users.iter().find(|u| u.user_name == "p7").unwrap();
    assert_eq!(p7.display_name.as_deref(), Some("Given7 Family7"));
    assert_eq!(p7.primary_email(), Some("p7@example.com"));
    assert!(p7.active);
    assert_eq!(groups.len(), 3);

    let members = |group: &str| -> BTreeSet<MemberRef> {
        records
            .memberships
            .iter()
            .filter(|e| &*e.group_external_id == groups[group].as_str())
            .map(|e| e.member.clone())
            .collect()
    };
    assert_eq!(members("platform").len(), 20);
    let engineering = members("engineering");
    assert_eq!(engineering.len(), 41);
    assert!(engineering.contains(&MemberRef::Group(groups["platform"].as_str().into())));
    assert!(engineering.contains(&MemberRef::User(users["p0"].as_str().into())));
    assert!(members("everyone").contains(&MemberRef::Group(groups["engineering"].as_str().into())));
    let cursor = outcome.next_cursor.expect("a cursor for the next delta");
    assert!(cursor.0.starts_with("v1:20"), "{cursor:?}");
}

#[tokio::test]
async fn a_person_marked_disabled_is_inactive_with_the_reason() {
    let mut seed = company();
    seed.people[3].employee_type = Some("disabled".into());
    seed.people[4].employee_type = Some("contractor".into());
    let slapd = Slapd::start(&seed, &SlapdOptions::default());
    let (records, _) = pull(&driver(&settings(&slapd.url)), PullMode::Full).await;
    let by_name: HashMap<&str, _> = records
        .users
        .iter()
        .map(|u| (u.user_name.as_str(), u))
        .collect();
    assert!(!by_name["p3"].active);
    assert_eq!(
        by_name["p3"].raw_status.as_deref(),
        Some("employeeType=disabled")
    );
    assert!(by_name["p4"].active);
}

#[tokio::test]
async fn a_delta_reads_only_entries_modified_since_the_cursor_and_lists_who_is_present() {
    let slapd = Slapd::start(&company(), &SlapdOptions::default());
    let driver = driver(&settings(&slapd.url));
    let (full, outcome) = pull(&driver, PullMode::Full).await;
    let (users, groups) = names(&full);

    // The seed shares one modifyTimestamp; a cursor is inclusive (an entry
    // changed in the cursor's second must not be missed), so step past it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd
        .replace(&person_dn("p1"), "cn", &["Renamed One"])
        .await;
    let (first, outcome) = pull(&driver, PullMode::Delta(outcome.next_cursor.unwrap())).await;
    assert!(!outcome.complete_snapshot);
    assert!(
        first
            .users
            .iter()
            .any(|u| u.display_name.as_deref() == Some("Renamed One"))
    );

    tokio::time::sleep(Duration::from_millis(1100)).await;
    slapd
        .replace(&person_dn("p5"), "employeeType", &["disabled"])
        .await;
    slapd.delete(&person_dn("p2")).await;
    let engineering_dn = group_dn("engineering");
    slapd
        .modify(
            &engineering_dn,
            vec![ldap3::Mod::Delete(
                "member".into(),
                [person_dn("p3")].into(),
            )],
        )
        .await;
    let (delta, outcome) = pull(&driver, PullMode::Delta(outcome.next_cursor.unwrap())).await;

    let read: BTreeSet<&str> = delta.users.iter().map(|u| u.user_name.as_str()).collect();
    // p1 was changed in the previous cursor's second, so it is read again.
    assert_eq!(read, BTreeSet::from(["p1", "p5"]));
    assert!(
        !delta
            .users
            .iter()
            .find(|u| u.user_name == "p5")
            .unwrap()
            .active
    );
    let present: BTreeSet<&String> = delta.present_users.as_ref().unwrap().iter().collect();
    assert_eq!(present.len(), 119);
    assert!(!present.contains(&users["p2"]), "p2 is gone");
    assert_eq!(delta.present_groups.as_ref().unwrap().len(), 3);
    // The changed group comes whole, and replaces its stored members.
    assert_eq!(delta.replaced_members, vec![groups["engineering"].clone()]);
    let engineering: BTreeSet<MemberRef> = delta
        .memberships
        .iter()
        .filter(|e| &*e.group_external_id == groups["engineering"].as_str())
        .map(|e| e.member)
        .collect();
    assert_eq!(engineering.len(), 39, "p3 left; the platform group stays");
    assert!(!engineering.contains(&MemberRef::User(users["p3"].as_str().into())));
    assert!(outcome.next_cursor.is_some());

    // A cursor this driver did not write starts over with a full pull.
    let (again, outcome) = pull(&driver, PullMode::Delta(DeltaCursor("garbage".into()))).await;
    assert!(outcome.complete_snapshot);
    assert_eq!(again.users.len(), 119);
}

#[tokio::test]
async fn active_directory_entries_map_guids_the_disable_bit_and_members() {
    // AD-shaped entries (Debian's msuser schema); objectGUIDs as AD stores them.
    let ad = "dn: ou=corp,dc=example,dc=com\nobjectClass: organizationalUnit\nou: corp\n\n\
dn: cn=Ann Admin,ou=corp,dc=example,dc=com\nobjectClass: user\nobjectClass: extensibleObject\ncn: Ann Admin\nsn: Admin\n\
sAMAccountName: ann\ndisplayName: Ann Admin\nmail: ann@corp.example.com\nuserAccountControl: 512\n\
objectGUID:: eFY0EjQSeFaavN7wEjRWeA==\ninstanceType: 4\nnTSecurityDescriptor:: AA==\n\
objectCategory: cn=Person,cn=Schema,cn=Configuration,dc=example,dc=com\n\n\
dn: cn=Bob Gone,ou=corp,dc=example,dc=com\nobjectClass: user\nobjectClass: extensibleObject\ncn: Bob Gone\nsn: Gone\n\
sAMAccountName: bob\nuserAccountControl: 514\nobjectGUID:: AAECAwQFBgcICQoLDA0ODw==\ninstanceType: 4\n\
nTSecurityDescriptor:: AA==\nobjectCategory: cn=Person,cn=Schema,cn=Configuration,dc=example,dc=com\n\n\
dn: cn=VPN Users,ou=corp,dc=example,dc=com\nobjectClass: group\nobjectClass: extensibleObject\ncn: VPN Users\n\
groupType: -2147483646\ninstanceType: 4\nnTSecurityDescriptor:: AA==\n\
objectCategory: cn=Group,cn=Schema,cn=Configuration,dc=example,dc=com\nobjectGUID:: EBESExQVFhcYGRobHB0eHw==\n\
member: CN=Ann Admin,OU=corp,DC=example,DC=com\nmember: cn=Bob Gone,ou=corp,dc=example,dc=com\n\n";
    let seed = Seed {
        extra_ldif: ad.into(),
        ..Seed::default()
    };
    let slapd = Slapd::start(&seed, &SlapdOptions::default());
    let settings = json!({
        "url": slapd.url, "bind_dn": SERVICE_DN, "bind_password": SERVICE_PASSWORD,
        "flavor": "active_directory",
        "user_base_dn": "ou=corp,dc=example,dc=com", "group_base_dn": "ou=corp,dc=example,dc=com",
        // In AD objectCategory=person is shorthand; here it is a plain DN.
        "user_filter": "(objectClass=user)",
    });
    let (records, _) = pull(&driver(&settings), PullMode::Full).await;
    let by_name: HashMap<&str, _> = records
        .users
        .iter()
        .map(|u| (u.user_name.as_str(), u))
        .collect();
    assert_eq!(by_name.len(), 2);
    assert_eq!(
        by_name["ann"].external_id,
        "12345678-1234-5678-9abc-def012345678"
    );
    assert_eq!(by_name["ann"].display_name.as_deref(), Some("Ann Admin"));
    assert!(by_name["ann"].active);
    assert_eq!(
        by_name["bob"].external_id,
        "03020100-0504-0706-0809-0a0b0c0d0e0f"
    );
    assert!(
        !by_name["bob"].active,
        "userAccountControl 514 has ACCOUNTDISABLE"
    );
    assert_eq!(records.groups.len(), 1);
    assert_eq!(
        records.groups[0].external_id,
        "13121110-1514-1716-1819-1a1b1c1d1e1f"
    );
    // Member DNs match whatever their case.
    assert_eq!(records.memberships.len(), 2);
}

#[tokio::test]
async fn ldaps_and_starttls_trust_the_configured_ca_and_only_it() {
    let seed = Seed {
        people: people(3),
        ..Seed::default()
    };
    let slapd = Slapd::start(
        &seed,
        &SlapdOptions {
            size_limit: None,
            tls: true,
        },
    );
    let ca = slapd.ca_file.clone().unwrap();
    let ldaps = slapd.ldaps_url.clone().unwrap();

    let mut over_ldaps = settings(&ldaps);
    over_ldaps["ca_file"] = json!(ca);
    let (records, _) = pull(&driver(&over_ldaps), PullMode::Full).await;
    assert_eq!(records.users.len(), 3);

    let mut over_starttls = settings(&slapd.url);
    over_starttls["starttls"] = json!(true);
    over_starttls["ca_file"] = json!(ca);
    let capabilities = driver(&over_starttls).check().await.unwrap();
    assert!(
        capabilities.summary.contains(PEOPLE),
        "{}",
        capabilities.summary
    );

    // Without the private CA the server's certificate is not trusted.
    let error = driver(&settings(&ldaps)).check().await.unwrap_err();
    assert!(matches!(error, DriverError::Transient(_)), "{error:?}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn a_refused_bind_or_a_missing_base_says_what_to_fix() {
    let slapd = Slapd::start(
        &Seed {
            people: people(2),
            ..Seed::default()
        },
        &SlapdOptions::default(),
    );
    let mut wrong = settings(&slapd.url);
    wrong["bind_password"] = json!("not-the-password");
    let error = driver(&wrong).check().await.unwrap_err();
    assert_eq!(
        error,
        DriverError::Unauthorized(format!(
            "the directory refused the bind as {SERVICE_DN} (invalidCredentials)"
        ))
    );
    assert!(!error.to_string().contains("not-the-password"));

    let mut missing = settings(&slapd.url);
    missing["user_base_dn"] = json!("ou=staff,dc=example,dc=com");
    let error = driver(&missing).check().await.unwrap_err();
    assert!(
        matches!(&error, DriverError::InvalidConfig { key, .. } if key == "user_base_dn"),
        "{error:?}"
    );
    let mut records = CollectedRecords::default();
    let error = driver(&missing)
        .pull(PullMode::Full, &mut records)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DriverError::InvalidConfig { key, .. } if key == "user_base_dn"),
        "{error:?}"
    );

    let down = settings("ldap://127.0.0.1:1");
    assert!(driver(&down).check().await.unwrap_err().is_transient());
}

/// A server that takes the connection and then drops it in the middle of
/// an operation (a restarting DC, a load balancer's idle cut) is named as
/// such, not as the client library's internal channel error.
#[tokio::test]
async fn a_server_that_drops_the_connection_mid_read_says_so() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ldap://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let mut stream = stream.unwrap();
            // Read the bind request, answer nothing, hang up.
            let mut buffer = [0u8; 512];
            let _ = std::io::Read::read(&mut stream, &mut buffer);
            drop(stream);
        }
    });
    let error = driver(&settings(&url)).check().await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("closed the connection") || message.contains("the connection failed"),
        "{message}"
    );
    assert!(!message.contains("op send error"), "{message}");
    assert!(!message.contains("recv error"), "{message}");
}
