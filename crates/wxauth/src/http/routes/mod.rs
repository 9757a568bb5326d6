//! Route handlers: extract, call one rule, shape the answer.

pub(crate) mod admin;
pub(crate) mod data;
pub(crate) mod files;
pub(crate) mod gateway;
pub(crate) mod health;
pub(crate) mod introspect;
pub(crate) mod me;
pub(crate) mod session;
pub(crate) mod watch;
pub(crate) mod wechat_push;
pub(crate) mod well_known;
