//! Short-lived shared state that must be fast to read: session revocations
//! and login-code de-duplication. In-process here, behind interfaces a
//! shared (Redis) implementation can take over for several instances.

mod login_codes;
mod revocations;

pub use login_codes::{LoginCodes, LoginIdentity};
pub use revocations::{MemoryRevocations, Revocations};
