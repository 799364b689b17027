//! `idpsync-driver`: what a driver needs and nothing more.
//!
//! Today this crate holds the records that cross the driver boundary: a
//! [`SourceUser`], a [`SourceGroup`] and a [`MembershipEdge`] exactly as an
//! identity provider reports them. Core turns them into change sets; a driver
//! never sees the database. The `Driver` trait, the HTTP kit and the fake-server
//! kit join this crate with the "Driver SDK" issue.

pub mod records;

pub use records::{Email, MemberRef, MembershipEdge, SourceGroup, SourceUser};
