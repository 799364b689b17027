//! SCIM 2.0 protocol code, pure (no IO): the filter language, PATCH, schemas
//! and discovery documents, errors, attribute projection and the mapping
//! between SCIM resources and the reconciler's records. The HTTP endpoint is
//! `api::scim`; list queries are translated to SQL in `store::scim_query`.

pub mod error;
pub mod filter;
pub mod patch;
pub mod resource;
pub mod schema;

pub use error::{ScimError, ScimResult, ScimType};
