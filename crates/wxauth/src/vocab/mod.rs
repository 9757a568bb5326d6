//! The shared vocabulary: the types and checks every layer speaks, which
//! depend on nothing else in the crate (but its error type). `config`,
//! `auth`, `data`, `store` and `http` point down to it; it points to none
//! of them (`tests/it/arrows.rs` checks the arrows).

pub mod audit;
pub mod caller;
pub mod collections;
pub mod operator;
pub mod query;
pub mod time;

pub use audit::AuditQuery;
pub use caller::{Caller, Owner};
pub use collections::{Access, CollectionRule, check_collection};
pub use operator::{Actor, RevokeReason, ServiceScope, Target};
