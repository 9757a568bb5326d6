//! The rules of user data: the caller's own profile and documents. The
//! owner always comes from the caller's token, never from the request.

pub mod documents;
pub mod profile;
