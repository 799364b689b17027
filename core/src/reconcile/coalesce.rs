//! Group commit for small writes: concurrent deltas of one connection (SCIM
//! requests, typically an IdP pushing a burst) are merged into one
//! reconciliation, one transaction and one commit, instead of queueing one
//! transaction each behind the single writer.
//!
//! The result is the one sequential application would give:
//! * deltas are taken in arrival order, and a batch only holds deltas that
//!   touch disjoint users and groups (a delta that touches what an earlier one
//!   in the batch touches starts the next batch);
//! * if the merged delta fails (bad input, a constraint) or is held by the
//!   safety gate, each delta of the batch is reconciled on its own, so every
//!   caller gets the error or hold its own delta earns, and the others apply.
//!
//! Each caller gets, with the outcome, the rows of what its delta upserted as
//! the transaction left them ([`Written`]), so a SCIM write answers without
//! reading them again.
//!
//! There is no background task. A caller queues its delta, then waits for
//! either its answer or the leader lock; the caller that gets the lock takes
//! everything queued and reconciles it in a spawned task that holds the lock
//! (so a caller that goes away does not cancel the others' writes), then
//! whatever queued meanwhile, until the queue is empty. Callers queue while
//! a batch is under way, so the busier the writer, the bigger the next
//! batch.

use super::input::{Delta, Edits, SourceInput};
use super::{Outcome, ReconcileError, Reconciler, Result, SubmitOptions, Trigger, UpsertedRows};
use idpsync_driver::{MemberRef, MembershipEdge};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Most deltas merged into one reconciliation: bounds one transaction.
const MAX_BATCH: usize = 256;

/// One caller's delta waiting for a batch.
struct Pending {
    connection_id: String,
    delta: Delta,
    edits: Edits,
    trigger: Trigger,
    reply: oneshot::Sender<Result<Written>>,
}

/// What a coalesced write did.
#[derive(Debug)]
pub struct Written {
    /// The batch's outcome, or this delta's own (see
    /// [`Reconciler::submit_coalesced`]).
    pub outcome: Outcome,
    /// The users and groups this delta upserted, as committed; empty
    /// unless the outcome is `Applied` or `Unchanged`.
    pub rows: UpsertedRows,
}

/// The queue shared by the clones of one [`Reconciler`].
#[derive(Default)]
pub(crate) struct Coalescer {
    queue: std::sync::Mutex<Vec<Pending>>,
    /// Held by the task reconciling a batch: one batch at a time.
    leader: Arc<tokio::sync::Mutex<()>>,
    /// Deltas queued or being reconciled; watched by
    /// [`Reconciler::writes_in_flight_reach`].
    in_flight: tokio::sync::watch::Sender<usize>,
}

impl Coalescer {
    /// The queue, locked (a panic elsewhere while it was held leaves it as
    /// it was, still usable).
    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Everything queued so far, leaving the queue empty.
    fn take_queued(&self) -> Vec<Pending> {
        std::mem::take(&mut *self.queue())
    }
}

impl Reconciler {
    /// Reconciles a small delta, merged with other callers' concurrent
    /// deltas into one transaction (see the module docs). `edits` change
    /// (or check) stored users and groups from their rows inside that
    /// transaction. The outcome is the batch's: `Applied` or `Unchanged`
    /// when the merged delta went through, or this delta's own when it had
    /// to be reconciled alone.
    pub async fn submit_coalesced(
        &self,
        connection_id: &str,
        delta: Delta,
        edits: Edits,
        trigger: Trigger,
    ) -> Result<Written> {
        let coalescer = &self.coalescer;
        let (reply, mut answer) = oneshot::channel();
        coalescer.in_flight.send_modify(|n| *n += 1);
        coalescer.queue().push(Pending {
            connection_id: connection_id.to_string(),
            delta,
            edits,
            trigger,
            reply,
        });
        // Lead the next batch, unless a batch under way answers first.
        let leader = tokio::select! {
            biased;
            outcome = &mut answer => return received(outcome),
            leader = coalescer.leader.clone().lock_owned() => leader,
        };
        let taken = coalescer.take_queued();
        if taken.is_empty() {
            // The batch that took this delta has answered.
            drop(leader);
        } else {
            let reconciler = self.clone();
            tokio::spawn(async move {
                let mut taken = taken;
                // The leader goes on with what queued meanwhile: handing
                // over to a waiting caller cost each batch two wake-ups.
                while !taken.is_empty() {
                    for batch in batches(taken) {
                        reconciler.reconcile_batch(batch).await;
                    }
                    taken = reconciler.coalescer.take_queued();
                }
                drop(leader);
            });
        }
        received(answer.await)
    }

    /// Deltas queued or being reconciled by [`Reconciler::submit_coalesced`].
    pub fn writes_in_flight(&self) -> usize {
        *self.coalescer.in_flight.borrow()
    }

    /// Returns once at least `n` deltas are queued or being reconciled
    /// (woken by each change of the count, not by polling).
    pub async fn writes_in_flight_reach(&self, n: usize) {
        let mut count = self.coalescer.in_flight.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail.
        let _ = count.wait_for(|in_flight| *in_flight >= n).await;
    }

    async fn reconcile_batch(&self, mut batch: Vec<Pending>) {
        if batch.len() > 1 {
            let merged = merge(batch.iter().map(|pending| &pending.delta));
            let mut edits = Edits::default();
            for pending in &batch {
                edits.extend(&pending.edits);
            }
            let connection_id = batch[0].connection_id.clone();
            let trigger = batch[0].trigger;
            match self
                .reconcile(
                    &connection_id,
                    SourceInput::Delta(merged),
                    &edits,
                    SubmitOptions {
                        unrecorded_hold: true,
                        ..SubmitOptions::new(trigger)
                    },
                    true,
                )
                .await
            {
                Ok((outcome @ (Outcome::Applied(_) | Outcome::Unchanged(_)), mut rows)) => {
                    for pending in batch {
                        let written = Written {
                            outcome: outcome.clone(),
                            rows: rows.take_for(&pending.delta, &pending.edits),
                        };
                        self.answer(pending.reply, Ok(written));
                    }
                    return;
                }
                Ok(_) | Err(_) => {
                    tracing::debug!(
                        connection = %connection_id,
                        deltas = batch.len(),
                        "merged writes did not apply as one; reconciling each alone"
                    );
                }
            }
        }
        for pending in batch.drain(..) {
            let written = self
                .reconcile(
                    &pending.connection_id,
                    SourceInput::Delta(pending.delta),
                    &pending.edits,
                    SubmitOptions::new(pending.trigger),
                    true,
                )
                .await
                .map(|(outcome, rows)| Written { outcome, rows });
            self.answer(pending.reply, written);
        }
    }

    fn answer(&self, reply: oneshot::Sender<Result<Written>>, outcome: Result<Written>) {
        self.coalescer.in_flight.send_modify(|n| *n -= 1);
        // The caller may have gone away; its write stands either way.
        let _ = reply.send(outcome);
    }
}

fn received(answer: Result<Result<Written>, oneshot::error::RecvError>) -> Result<Written> {
    answer.unwrap_or_else(|_| {
        Err(ReconcileError::Apply(
            "the write was interrupted before it was reconciled".into(),
        ))
    })
}

/// Splits queued deltas, in arrival order, into batches of one connection
/// and one trigger whose deltas touch disjoint users and groups.
fn batches(queued: Vec<Pending>) -> Vec<Vec<Pending>> {
    struct Open {
        connection_id: String,
        trigger: Trigger,
        touched: Touched,
        deltas: Vec<Pending>,
    }
    let mut closed = Vec::new();
    let mut open: Vec<Open> = Vec::new();
    for pending in queued {
        let touched = Touched::of(&pending.delta, &pending.edits);
        let slot = open.iter().position(|batch| {
            batch.connection_id == pending.connection_id && batch.trigger == pending.trigger
        });
        match slot {
            Some(index)
                if open[index].deltas.len() < MAX_BATCH
                    && open[index].touched.is_disjoint(&touched) =>
            {
                open[index].touched.extend(touched);
                open[index].deltas.push(pending);
            }
            _ => {
                // Whatever is open for this connection applies first.
                if let Some(index) = open
                    .iter()
                    .position(|batch| batch.connection_id == pending.connection_id)
                {
                    closed.push(open.remove(index).deltas);
                }
                open.push(Open {
                    connection_id: pending.connection_id.clone(),
                    trigger: pending.trigger,
                    touched,
                    deltas: vec![pending],
                });
            }
        }
    }
    closed.extend(open.into_iter().map(|batch| batch.deltas));
    closed
}

/// The external ids a delta reads or writes.
#[derive(Default)]
struct Touched {
    users: HashSet<String>,
    groups: HashSet<String>,
}

impl Touched {
    fn of(delta: &Delta, edits: &Edits) -> Self {
        let mut touched = Touched::default();
        touched
            .users
            .extend(delta.upsert_users.iter().map(|u| u.external_id.clone()));
        touched.users.extend(edits.user_ids().map(str::to_string));
        touched.groups.extend(edits.group_ids().map(str::to_string));
        touched.users.extend(delta.remove_users.iter().cloned());
        touched
            .groups
            .extend(delta.upsert_groups.iter().map(|g| g.external_id.clone()));
        touched.groups.extend(delta.remove_groups.iter().cloned());
        for edge in delta
            .add_memberships
            .iter()
            .chain(&delta.remove_memberships)
        {
            touched.edge(edge);
        }
        for (group, members) in &delta.replace_members {
            touched.groups.insert(group.clone());
            for member in members {
                touched.member(member);
            }
        }
        touched
    }

    fn edge(&mut self, edge: &MembershipEdge) {
        self.groups.insert(edge.group_external_id.to_string());
        self.member(&edge.member);
    }

    fn member(&mut self, member: &MemberRef) {
        match member {
            MemberRef::User(id) => self.users.insert(id.to_string()),
            MemberRef::Group(id) => self.groups.insert(id.to_string()),
        };
    }

    fn is_disjoint(&self, other: &Touched) -> bool {
        self.users.is_disjoint(&other.users) && self.groups.is_disjoint(&other.groups)
    }

    fn extend(&mut self, other: Touched) {
        self.users.extend(other.users);
        self.groups.extend(other.groups);
    }
}

/// One delta doing what `deltas` do, for deltas touching disjoint ids.
fn merge<'a>(deltas: impl Iterator<Item = &'a Delta>) -> Delta {
    let mut merged = Delta::default();
    for delta in deltas {
        merged
            .upsert_users
            .extend(delta.upsert_users.iter().cloned());
        merged
            .remove_users
            .extend(delta.remove_users.iter().cloned());
        merged
            .upsert_groups
            .extend(delta.upsert_groups.iter().cloned());
        merged
            .remove_groups
            .extend(delta.remove_groups.iter().cloned());
        merged
            .add_memberships
            .extend(delta.add_memberships.iter().cloned());
        merged
            .remove_memberships
            .extend(delta.remove_memberships.iter().cloned());
        merged.replace_members.extend(
            delta
                .replace_members
                .iter()
                .map(|(group, members)| (group.clone(), members.clone())),
        );
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use idpsync_driver::SourceUser;

    fn pending(connection: &str, delta: Delta) -> Pending {
        Pending {
            connection_id: connection.into(),
            delta,
            edits: Edits::default(),
            trigger: Trigger::Scim,
            reply: oneshot::channel().0,
        }
    }

    fn upsert(id: &str) -> Delta {
        Delta {
            upsert_users: vec![SourceUser::new(id, format!("{id}@example.test"))],
            ..Default::default()
        }
    }

    fn remove(id: &str) -> Delta {
        Delta {
            remove_users: vec![id.into()],
            ..Default::default()
        }
    }

    fn add_to_group(group: &str, user: &str) -> Delta {
        Delta {
            add_memberships: vec![MembershipEdge {
                group_external_id: group.into(),
                member: MemberRef::User(user.into()),
            }],
            ..Default::default()
        }
    }

    fn shape(batches: &[Vec<Pending>]) -> Vec<Vec<(String, Vec<String>)>> {
        batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|p| {
                        let touched = Touched::of(&p.delta, &p.edits);
                        let mut ids: Vec<String> =
                            touched.users.into_iter().chain(touched.groups).collect();
                        ids.sort();
                        (p.connection_id.clone(), ids)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn deltas_on_different_users_form_one_batch() {
        let queued = vec![
            pending("okta", upsert("u1")),
            pending("okta", upsert("u2")),
            pending("okta", remove("u3")),
        ];
        let batches = batches(queued);
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].len(), 3);
    }

    #[test]
    fn a_delta_touching_an_earlier_one_starts_the_next_batch_in_order() {
        let queued = vec![
            pending("okta", upsert("u1")),
            pending("okta", upsert("u2")),
            pending("okta", remove("u1")),
            pending("okta", upsert("u4")),
        ];
        let shape = shape(&batches(queued));
        assert_eq!(
            shape,
            vec![
                vec![
                    ("okta".into(), vec!["u1".into()]),
                    ("okta".into(), vec!["u2".into()])
                ],
                vec![
                    ("okta".into(), vec!["u1".into()]),
                    ("okta".into(), vec!["u4".into()])
                ],
            ]
        );
    }

    #[test]
    fn a_membership_touches_its_group_and_its_member() {
        let queued = vec![
            pending("okta", upsert("u1")),
            pending("okta", add_to_group("g1", "u1")),
            pending("okta", add_to_group("g1", "u2")),
        ];
        assert_eq!(
            batches(queued).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 1, 1]
        );
    }

    #[test]
    fn connections_batch_separately() {
        let queued = vec![
            pending("okta", upsert("u1")),
            pending("entra", upsert("u1")),
            pending("okta", upsert("u2")),
        ];
        let shape = shape(&batches(queued));
        assert_eq!(shape.len(), 2);
        assert!(shape.iter().all(|batch| {
            batch
                .iter()
                .all(|(connection, _)| connection == &batch[0].0)
        }));
    }

    #[test]
    fn batches_are_bounded() {
        let queued = (0..MAX_BATCH + 1)
            .map(|i| pending("okta", upsert(&format!("u{i}"))))
            .collect();
        let sizes: Vec<usize> = batches(queued).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![MAX_BATCH, 1]);
    }

    #[test]
    fn merging_keeps_every_change() {
        let deltas = [upsert("u1"), remove("u2"), add_to_group("g1", "u3")];
        let merged = merge(deltas.iter());
        assert_eq!(merged.upsert_users.len(), 1);
        assert_eq!(merged.remove_users, vec!["u2".to_string()]);
        assert_eq!(merged.add_memberships.len(), 1);
    }
}
