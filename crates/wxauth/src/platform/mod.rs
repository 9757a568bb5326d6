//! WeChat's platform services around the user (issue 32): message push
//! (WeChat calling this service) and what its events do (revoked
//! authorization), with content security and subscribe messages to
//! follow. Protocol facts:
//! `docs/wechat-platform.md`.

pub mod actions;
pub mod content;
pub mod push;
