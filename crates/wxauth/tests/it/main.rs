//! wxauth's integration tests, in one binary with modules: each test file
//! would be another binary to link, which is slow on two cores.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod app;
mod arrows;
mod cli;
mod cluster;
mod connections;
mod content_check;
mod db;
mod docs;
mod files;
mod fuzz_regressions;
mod gateway;
mod hardening;
mod hardening_round2;
mod http_data;
mod http_me;
mod http_misc;
mod http_query;
mod http_session;
mod http_upstream;
mod identity;
mod image_check;
mod import;
mod matching;
mod openapi;
mod operate;
mod process;
mod query_plan;
mod revoked;
mod s3;
mod secrets_in_types;
mod spawn;
mod store;
mod subscriptions;
mod watch;
mod wechat_push;
