//! `idpsync-core`: the engine. It knows no particular IdP: drivers feed it
//! records through `idpsync-driver`, the SCIM endpoint feeds it requests, and
//! it keeps the store, applies change sets and serves the admin API.
//!
//! Modules, one responsibility each:
//! * [`config`]: the TOML schema, `${ENV}` interpolation, validation.
//! * [`store`]: the database (sea-orm entities and the only code that runs SQL).
//! * [`auth`]: API tokens: generation, hashing, constant-time verification.
//! * [`reconcile`]: change sets, effects, safety gate, dry runs.
//! * [`devices`]: device registration and status, revocation is final.
//! * [`scim`]: SCIM 2.0 protocol (filter, PATCH, schemas), pure.
//! * [`events`]: the ordered event log, its feed and wake-ups.
//! * [`webhooks`]: signed, ordered, at-least-once delivery of events.
//! * [`sync`]: driver registry, pull runs, the cron scheduler.
//! * [`hooks`]: IdP change notifications: deliveries, coalesced runs,
//!   subscriptions kept alive.
//! * [`daemon`]: what the configuration builds (the engine), its reload,
//!   and the background workers of each configuration.
//! * [`process`]: this process's memory and open files, from `/proc/self`.
//! * [`api`]: the HTTP surface (health, readiness, metrics).
//! * [`console`]: the admin console in the browser, server-rendered HTML.

pub mod api;
pub mod auth;
pub mod config;
pub mod console;
pub mod daemon;
pub mod devices;
pub mod events;
pub mod hooks;
pub mod process;
pub mod reconcile;
pub mod scim;
pub mod store;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod webhooks;
