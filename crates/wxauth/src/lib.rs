//! wxauth: the login and user-data backend for WeChat Mini Programs.

pub mod config;
pub mod error;
pub mod store;

pub use error::{Error, Result};
