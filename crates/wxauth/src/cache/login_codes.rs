//! Login-code de-duplication. WeChat accepts a code once; a client that
//! retries a login (a lost response, a double tap, a proxy retry) would get
//! 40163 "code been used". Instead, the first exchange of a code is shared:
//! concurrent requests with the same code wait for it, and later ones within
//! the code's lifetime reuse its outcome. Only the identity is kept (user id
//! and whether it was new), never a token or the session_key; each request
//! still gets its own session. Codes are keyed by a hash, never stored.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use crate::error::Result;

/// Who a login code turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginIdentity {
    /// The user id.
    pub user_id: String,
    /// Whether the first login with this code created the user.
    pub new_user: bool,
}

struct Entry {
    created_ms: i64,
    cell: Arc<OnceCell<LoginIdentity>>,
}

/// Shared first outcomes of login codes.
pub struct LoginCodes {
    ttl_ms: i64,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl std::fmt::Debug for LoginCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCodes")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl LoginCodes {
    /// Remembers each code's outcome for `ttl_ms` (a code's lifetime).
    pub fn new(ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(appid: &str, code: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(appid.as_bytes());
        h.update([0]);
        h.update(code.as_bytes());
        h.finalize().into()
    }

    /// Runs `first` for the first request with this code, or waits for and
    /// shares its outcome. Returns the identity and whether this call ran
    /// `first` (whose own result then holds its session). A failed `first`
    /// is not remembered: the next request tries again.
    pub async fn once<F, Fut>(
        &self,
        appid: &str,
        code: &str,
        now_ms: i64,
        first: F,
    ) -> Result<(LoginIdentity, bool)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<LoginIdentity>>,
    {
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if entries.len() > 1024 {
                entries.retain(|_, e| now_ms - e.created_ms <= self.ttl_ms);
            }
            let key = Self::key(appid, code);
            let fresh = entries
                .get(&key)
                .is_some_and(|e| now_ms - e.created_ms <= self.ttl_ms);
            if !fresh {
                entries.insert(
                    key,
                    Entry {
                        created_ms: now_ms,
                        cell: Arc::new(OnceCell::new()),
                    },
                );
            }
            entries
                .get(&key)
                .map(|e| e.cell.clone())
                .unwrap_or_default()
        };
        let ran = std::sync::atomic::AtomicBool::new(false);
        let identity = cell
            .get_or_try_init(|| {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                first()
            })
            .await?
            .clone();
        Ok((identity, ran.load(std::sync::atomic::Ordering::SeqCst)))
    }
}
