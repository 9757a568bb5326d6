//! Integration tests of the client against the simulator over real sockets.
//! One test binary with modules (each test file would be another binary to
//! link, which is slow on two cores).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod code2session;
mod common;
mod crypto_sim;
mod phone;
mod session;
mod tokens;
mod transport;
