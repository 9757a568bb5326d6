//! WeChat's platform services around the user (issue 32): message push
//! (WeChat calling this service), with content security, subscribe
//! messages and revoked authorization to follow. Protocol facts:
//! `docs/wechat-platform.md`.

pub mod push;
