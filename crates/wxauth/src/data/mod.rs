//! The rules of user data: the caller's own profile (and, next, documents).

pub mod profile;
