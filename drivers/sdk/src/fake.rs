//! The fake-server kit (feature `fake`): what every driver's faithful fake
//! of an IdP API is built from. A seeded [`Dataset`] of people, groups
//! (some nested) and memberships; a [`FaultInjector`] for 429 bursts with
//! `Retry-After`, 5xx on page k, truncated or malformed JSON, slow answers and
//! tokens that expire mid-pull; [`FakeTokens`] for bearer tokens; and
//! [`serve`] on 127.0.0.1 only.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How big and how shaped a generated tenant is.
#[derive(Debug, Clone)]
pub struct DatasetSpec {
    pub users: usize,
    pub groups: usize,
    /// Of the groups, how many are nested inside an earlier group.
    pub nested_groups: usize,
    /// Direct group memberships per user.
    pub memberships_per_user: usize,
    /// Every n-th user is suspended/disabled (0: none).
    pub inactive_every: usize,
    pub seed: u64,
}

impl Default for DatasetSpec {
    fn default() -> Self {
        DatasetSpec {
            users: 100,
            groups: 10,
            nested_groups: 3,
            memberships_per_user: 2,
            inactive_every: 10,
            seed: 7,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeUser {
    pub id: String,
    pub user_name: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FakeGroup {
    pub id: String,
    pub name: String,
    /// Index of the group this one is nested in.
    pub parent: Option<usize>,
}

/// A tenant: users, groups and direct user memberships (group index, user index).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub users: Vec<FakeUser>,
    pub groups: Vec<FakeGroup>,
    pub members: Vec<(usize, usize)>,
}

const GIVEN: &[&str] = &[
    "Ada", "Ben", "Cleo", "Dev", "Eva", "Finn", "Gia", "Hugo", "Iris", "Jon", "Kai", "Lena",
];
const FAMILY: &[&str] = &[
    "Ng", "Okafor", "Park", "Quinn", "Rossi", "Sato", "Tran", "Ueda", "Varga", "Weber",
];
const DEPARTMENTS: &[&str] = &[
    "Engineering",
    "Sales",
    "Support",
    "Finance",
    "People",
    "Legal",
    "Design",
    "Security",
];

impl Dataset {
    /// A deterministic tenant for `spec`.
    pub fn generate(spec: &DatasetSpec) -> Dataset {
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let users: Vec<FakeUser> = (0..spec.users)
            .map(|i| {
                let given = GIVEN[i % GIVEN.len()];
                let family = FAMILY[(i / GIVEN.len()) % FAMILY.len()];
                let user_name = format!(
                    "{}.{}{}@acme.test",
                    given.to_lowercase(),
                    family.to_lowercase(),
                    i
                );
                FakeUser {
                    id: format!("u{:06x}{:04x}", i, rng.random::<u16>()),
                    email: user_name.clone(),
                    user_name,
                    given_name: given.into(),
                    family_name: family.into(),
                    active: spec.inactive_every == 0 || (i + 1) % spec.inactive_every != 0,
                }
            })
            .collect();
        let groups: Vec<FakeGroup> = (0..spec.groups)
            .map(|i| {
                let nested = i > 0 && i <= spec.nested_groups;
                FakeGroup {
                    id: format!("g{:05x}{:04x}", i, rng.random::<u16>()),
                    name: format!("{} {}", DEPARTMENTS[i % DEPARTMENTS.len()], i),
                    parent: nested.then(|| rng.random_range(0..i)),
                }
            })
            .collect();
        let mut members = Vec::new();
        if !groups.is_empty() {
            for user in 0..users.len() {
                let mut chosen = Vec::new();
                for _ in 0..spec.memberships_per_user.min(groups.len()) {
                    let mut group = rng.random_range(0..groups.len());
                    while chosen.contains(&group) {
                        group = (group + 1) % groups.len();
                    }
                    chosen.push(group);
                    members.push((group, user));
                }
            }
        }
        members.sort();
        Dataset {
            users,
            groups,
            members,
        }
    }

    /// User indexes of a group's direct members, in order.
    pub fn members_of(&self, group: usize) -> Vec<usize> {
        let start = self.members.partition_point(|(g, _)| *g < group);
        self.members[start..]
            .iter()
            .take_while(|(g, _)| *g == group)
            .map(|(_, u)| *u)
            .collect()
    }

    /// Deletes user `index` and their memberships, the way an IdP's
    /// listing forgets a deleted user: the indexes of later users shift.
    pub fn remove_user(&mut self, index: usize) -> FakeUser {
        let user = self.users.remove(index);
        self.members.retain(|&(_, member)| member != index);
        for (_, member) in &mut self.members {
            if *member > index {
                *member -= 1;
            }
        }
        user
    }

    /// Deletes the user with this id, if there is one ([`Dataset::remove_user`]).
    pub fn remove_user_by_id(&mut self, id: &str) -> Option<FakeUser> {
        let index = self.users.iter().position(|user| user.id == id)?;
        Some(self.remove_user(index))
    }

    /// Adds a user with no memberships; returns their index.
    pub fn add_user(&mut self, user: FakeUser) -> usize {
        self.users.push(user);
        self.users.len() - 1
    }

    /// Each group's directly nested groups, by group index, in one pass:
    /// for listing every group's members (asking [`Dataset::children_of`]
    /// of each of 100,000 groups would read all of them 100,000 times).
    pub fn children_by_group(&self) -> Vec<Vec<usize>> {
        let mut children = vec![Vec::new(); self.groups.len()];
        for (index, group) in self.groups.iter().enumerate() {
            if let Some(parent) = group.parent {
                children[parent].push(index);
            }
        }
        children
    }

    /// Groups nested directly in `group`.
    pub fn children_of(&self, group: usize) -> Vec<usize> {
        self.groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.parent == Some(group))
            .map(|(i, _)| i)
            .collect()
    }
}

/// Faults to inject; change them while the fake runs.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next this-many requests are throttled (429, or the API's own
    /// quota answer).
    pub throttle_next: u32,
    /// `Some(seconds)`: the throttled answer says when to retry
    /// (`Retry-After`, or the API's own rate-limit reset header); `None`:
    /// it gives no hint, and the client must back off on its own.
    pub retry_after: Option<u64>,
    /// Answer 500 to page `page` (0-based) of `resource`, `times` times.
    pub fail_page: Option<PageFault>,
    /// Cut the JSON body of this page in half.
    pub truncate_page: Option<PageFault>,
    /// Send this page as something that is not JSON.
    pub malformed_page: Option<PageFault>,
    /// Added to every answer.
    pub delay: Duration,
}

/// A fault on one page of one resource listing.
#[derive(Debug, Clone, PartialEq)]
pub struct PageFault {
    pub resource: String,
    pub page: usize,
    /// How many times it happens (`u32::MAX`: always).
    pub times: u32,
}

impl PageFault {
    pub fn new(resource: &str, page: usize, times: u32) -> Self {
        PageFault {
            resource: resource.into(),
            page,
            times,
        }
    }
}

/// Shared fault state, cheap to clone into handlers.
#[derive(Debug, Clone, Default)]
pub struct FaultInjector {
    faults: Arc<Mutex<Faults>>,
    requests: Arc<Mutex<u64>>,
}

impl FaultInjector {
    pub fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut self.faults.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call first in every handler: waits the delay, and answers instead of
    /// the handler when a throttle or a 500 is due.
    pub async fn before(
        &self,
        resource: &str,
        page: usize,
        throttled: impl Fn(Option<u64>) -> Response,
    ) -> Option<Response> {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let (delay, answer) = {
            let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
            let answer = if faults.throttle_next > 0 {
                faults.throttle_next -= 1;
                Some(throttled(faults.retry_after))
            } else if take(&mut faults.fail_page, resource, page) {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response())
            } else {
                None
            };
            (faults.delay, answer)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        answer
    }

    /// Call on a page's JSON body before sending it: truncates or garbles it
    /// when a fault is due.
    pub fn mangle(&self, resource: &str, page: usize, body: String) -> String {
        let mut faults = self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if take(&mut faults.truncate_page, resource, page) {
            return body[..body.len() / 2].to_string();
        }
        if take(&mut faults.malformed_page, resource, page) {
            return "<html>502 Bad Gateway</html>".into();
        }
        body
    }
}

fn take(fault: &mut Option<PageFault>, resource: &str, page: usize) -> bool {
    let Some(due) = fault else { return false };
    if due.resource != resource || due.page != page || due.times == 0 {
        return false;
    }
    if due.times != u32::MAX {
        due.times -= 1;
    }
    true
}

/// A JSON response with a body that went through [`FaultInjector::mangle`].
pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Bearer tokens a fake issues; each is good for `uses` requests (to
/// simulate expiry mid-pull) or forever.
#[derive(Debug, Clone, Default)]
pub struct FakeTokens {
    live: Arc<Mutex<HashMap<String, Option<u32>>>>,
    issued: Arc<Mutex<u64>>,
    /// Requests each new token is good for; `None`: unlimited.
    pub uses_per_token: Arc<Mutex<Option<u32>>>,
}

impl FakeTokens {
    pub fn issue(&self) -> String {
        let mut issued = self.issued.lock().unwrap_or_else(|e| e.into_inner());
        *issued += 1;
        let token = format!("fake-token-{}-{}", *issued, rand::random::<u32>());
        let uses = *self
            .uses_per_token
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), uses);
        token
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> u64 {
        *self.issued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the `Authorization: Bearer` header carries a live token (and
    /// uses it once).
    pub fn check(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get_mut(token) {
            Some(None) => true,
            Some(Some(0)) | None => false,
            Some(Some(left)) => {
                *left -= 1;
                true
            }
        }
    }
}

/// The RSA key pair of the fakes' service accounts (Okta service apps,
/// Google service accounts): the private key as PEM for the driver's
/// settings, the public key as PKCS#1 DER for the fake to verify with.
/// For tests only; it is public.
pub const TEST_PRIVATE_KEY_PEM: &str = include_str!("../tests/data/test-rsa-key.pem");
pub const TEST_PUBLIC_KEY_DER: &[u8] = include_bytes!("../tests/data/test-rsa-public.der");

/// An HTTP kit for tests against fakes: the real retry logic with
/// millisecond backoffs, so throttling faults cost no test time.
pub fn test_kit() -> crate::http::HttpKit {
    use crate::http::{HttpKit, HttpOptions, RetryPolicy};
    HttpKit::new(HttpOptions {
        retry: RetryPolicy {
            max_attempts: 4,
            first_backoff: std::time::Duration::from_millis(5),
            max_backoff: std::time::Duration::from_millis(20),
            max_wait: std::time::Duration::from_secs(5),
        },
        ..HttpOptions::default()
    })
    .expect("an HTTP client builds")
}

/// A fake listening on 127.0.0.1; stops when dropped.
pub struct FakeServer {
    pub base_url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on a free loopback port.
pub async fn serve(router: axum::Router) -> std::io::Result<FakeServer> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(FakeServer { base_url, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datasets_are_deterministic_and_shaped_as_asked() {
        let spec = DatasetSpec {
            users: 50,
            groups: 6,
            nested_groups: 2,
            memberships_per_user: 2,
            inactive_every: 5,
            seed: 1,
        };
        let first = Dataset::generate(&spec);
        let second = Dataset::generate(&spec);
        assert_eq!(first.users, second.users);
        assert_eq!(first.members, second.members);
        assert_eq!(first.users.len(), 50);
        assert_eq!(first.users.iter().filter(|u| !u.active).count(), 10);
        assert_eq!(
            first.groups.iter().filter(|g| g.parent.is_some()).count(),
            2
        );
        assert_eq!(first.members.len(), 100);
        let total: usize = (0..first.groups.len())
            .map(|g| first.members_of(g).len())
            .sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn a_removed_user_takes_their_memberships_and_later_users_keep_theirs() {
        let mut dataset = Dataset::generate(&DatasetSpec::default());
        let last = dataset.users.last().unwrap().id.clone();
        let last_groups: Vec<usize> = dataset
            .members
            .iter()
            .filter(|&&(_, u)| u == dataset.users.len() - 1)
            .map(|&(g, _)| g)
            .collect();
        let removed = dataset.remove_user(3);
        assert!(dataset.users.iter().all(|u| u.id != removed.id));
        assert_eq!(dataset.members.len(), 200 - 2);
        let index = dataset.users.iter().position(|u| u.id == last).unwrap();
        let groups: Vec<usize> = dataset
            .members
            .iter()
            .filter(|&&(_, u)| u == index)
            .map(|&(g, _)| g)
            .collect();
        assert_eq!(groups, last_groups);
    }
}

/// What an IdP's notification deliveries got back, in order: the status of
/// each answered attempt (`None`: no answer in time, or no connection).
#[derive(Clone, Default)]
pub struct DeliveryLog(Arc<Mutex<Vec<Option<u16>>>>);

impl DeliveryLog {
    /// Every attempt's answer so far.
    pub fn answers(&self) -> Vec<Option<u16>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn push(&self, answer: Option<u16>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(answer);
    }
}

/// How an IdP delivers one notification.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long the IdP waits for an answer (Okta and Graph: 3 s).
    pub deadline: Duration,
    /// Attempts after the first when the answer is not a 2xx in time.
    pub retries: u32,
}

/// Calls a subscriber back and waits (a verification or validation
/// handshake the IdP makes before it answers its own API call): the status
/// and body, or why there was none.
pub async fn call_back(
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    deadline: Duration,
) -> Result<(u16, String), String> {
    let client = reqwest::Client::builder()
        .timeout(deadline)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.request(method, url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// Sends `delivery` from a task, as an IdP does after the change is made
/// (never inside the admin's request), retrying as the IdP does; each
/// attempt's answer goes to `log`. Without a tokio runtime nothing is sent.
pub fn deliver(delivery: Delivery, log: DeliveryLog) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        for attempt in 0..=delivery.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
            }
            let headers: Vec<(&str, &str)> = delivery
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let answer = call_back(
                reqwest::Method::POST,
                &delivery.url,
                &headers,
                Some(delivery.body.clone()),
                delivery.deadline,
            )
            .await
            .ok()
            .map(|(status, _)| status);
            log.push(answer);
            if answer.is_some_and(|status| (200..300).contains(&status)) {
                return;
            }
        }
    });
}
