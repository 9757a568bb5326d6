//! Login-code de-duplication. WeChat accepts a code once; a client that
//! retries a login (a lost response, a double tap, a proxy retry) would get
//! 40163 "code been used". Instead, the first exchange of a code is shared:
//! concurrent requests with the same code wait for it, and later ones within
//! the replay window reuse its outcome. Only the identity is kept (user id
//! and whether it was new), never a token or the session_key; each request
//! still gets its own session. Codes are keyed by a hash, never stored.
//!
//! Expiry is a queue in arrival order: each call drops the expired entries
//! at its front, so the work per login is constant however many codes the
//! window holds (no sweep of the whole map). A busy window holds many
//! codes (30 s at 5,000 logins/s is 150,000), so an answered entry keeps
//! its identity compactly (see [`Slot`]).

use std::collections::{HashMap, VecDeque};
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

/// Key of a code in the window: the first 16 bytes of SHA-256(appid, code)
/// (128 bits: no collision among the codes of any window).
type CodeKey = [u8; 16];

/// A code's state. Answered entries are most of a busy window, so they are
/// kept small: a UUID user id as 16 plain bytes (no 16-byte alignment, as a
/// u128 would need), anything else boxed. An entry with its key is 48
/// bytes (it was 96 with a 32-byte key, a u128 and its padding).
enum Slot {
    /// The exchange runs (others wait on the cell), or failed.
    Pending(Arc<OnceCell<LoginIdentity>>),
    /// Answered; the user id is a UUID (every id wxauth makes).
    Done { user: [u8; 16], new_user: bool },
    /// Answered with an id that is not a canonical UUID.
    DoneText(Box<(Box<str>, bool)>),
}

impl Slot {
    fn done(identity: &LoginIdentity) -> Self {
        match uuid::Uuid::parse_str(&identity.user_id) {
            // Only the canonical form, so it prints back identically.
            Ok(u) if u.hyphenated().to_string() == identity.user_id => Slot::Done {
                user: u.into_bytes(),
                new_user: identity.new_user,
            },
            _ => Slot::DoneText(Box::new((
                identity.user_id.as_str().into(),
                identity.new_user,
            ))),
        }
    }

    fn answer(&self) -> Option<LoginIdentity> {
        match self {
            Slot::Pending(_) => None,
            Slot::Done { user, new_user } => Some(LoginIdentity {
                user_id: uuid::Uuid::from_bytes(*user).hyphenated().to_string(),
                new_user: *new_user,
            }),
            Slot::DoneText(done) => Some(LoginIdentity {
                user_id: done.0.to_string(),
                new_user: done.1,
            }),
        }
    }
}

struct Entry {
    created_ms: i64,
    slot: Slot,
}

impl Entry {
    /// Answered, or failed with nobody waiting: nothing needs it any more.
    fn finished(&self) -> bool {
        match &self.slot {
            Slot::Done { .. } | Slot::DoneText(_) => true,
            Slot::Pending(cell) => cell.initialized() || Arc::strong_count(cell) == 1,
        }
    }
}

/// Shared first outcomes of login codes.
pub struct LoginCodes {
    ttl_ms: i64,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_key: HashMap<CodeKey, Entry>,
    /// (created_ms, key) in arrival order, for expiry.
    order: VecDeque<(i64, CodeKey)>,
}

impl Entries {
    /// Drops entries older than the window whose exchange has finished
    /// (one still in flight is kept: its waiters need it).
    fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        while let Some(&(created, key)) = self.order.front() {
            if now_ms - created <= ttl_ms {
                break;
            }
            self.order.pop_front();
            let current = self.by_key.get(&key);
            // A newer entry may have replaced this key: leave it. An entry
            // is done when answered, or when nobody holds its cell (its
            // exchange failed and no one waits).
            if current.is_some_and(|e| e.created_ms == created && e.finished()) {
                self.by_key.remove(&key);
            } else if current.is_some_and(|e| e.created_ms == created) {
                // Still in flight: look again later.
                self.order.push_back((now_ms, key));
                if let Some(e) = self.by_key.get_mut(&key) {
                    e.created_ms = now_ms;
                }
                break;
            }
        }
    }
}

impl std::fmt::Debug for LoginCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCodes")
            .field("ttl_ms", &self.ttl_ms)
            .finish_non_exhaustive()
    }
}

impl LoginCodes {
    /// Remembers each code's outcome for `ttl_ms` (the replay window).
    pub fn new(ttl_ms: i64) -> Self {
        Self {
            ttl_ms,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn key(appid: &str, code: &str) -> CodeKey {
        let mut h = Sha256::new();
        h.update(appid.as_bytes());
        h.update([0]);
        h.update(code.as_bytes());
        let digest = h.finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        key
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
        let key = Self::key(appid, code);
        let cell = {
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            entries.expire(now_ms, self.ttl_ms);
            let within = |e: &Entry| now_ms - e.created_ms <= self.ttl_ms;
            match entries.by_key.get(&key) {
                // Answered within the window: its identity.
                Some(e) if within(e) => {
                    if let Some(identity) = e.slot.answer() {
                        return Ok((identity, false));
                    }
                }
                _ => {}
            }
            // In flight (others wait for it) or answered within the window.
            let shared = entries.by_key.get(&key).and_then(|e| match &e.slot {
                Slot::Pending(cell) if !cell.initialized() || within(e) => Some(cell.clone()),
                _ => None,
            });
            match shared {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    entries.by_key.insert(
                        key,
                        Entry {
                            created_ms: now_ms,
                            slot: Slot::Pending(cell.clone()),
                        },
                    );
                    entries.order.push_back((now_ms, key));
                    cell
                }
            }
        };
        let ran = std::sync::atomic::AtomicBool::new(false);
        let identity = cell
            .get_or_try_init(|| {
                ran.store(true, std::sync::atomic::Ordering::SeqCst);
                first()
            })
            .await?
            .clone();
        let ran = ran.load(std::sync::atomic::Ordering::SeqCst);
        if ran {
            // Keep the answer compactly; waiters still hold the cell.
            let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = entries.by_key.get_mut(&key) {
                if matches!(&e.slot, Slot::Pending(c) if Arc::ptr_eq(c, &cell)) {
                    e.slot = Slot::done(&identity);
                }
            }
        }
        Ok((identity, ran))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn who(id: &str) -> LoginIdentity {
        LoginIdentity {
            user_id: id.into(),
            new_user: true,
        }
    }

    fn len(codes: &LoginCodes) -> usize {
        codes
            .entries
            .lock()
            .map(|e| e.by_key.len())
            .unwrap_or(usize::MAX)
    }

    #[tokio::test]
    async fn a_repeat_within_the_window_shares_the_first_outcome_and_expires_after() {
        let codes = LoginCodes::new(1000);
        let first = codes.once("a", "c1", 0, || async { Ok(who("u1")) }).await;
        assert!(matches!(first, Ok((ref i, true)) if i.user_id == "u1"));
        let again = codes.once("a", "c1", 999, || async { Ok(who("u2")) }).await;
        assert!(matches!(again, Ok((ref i, false)) if i.user_id == "u1"));
        // Past the window the code is new again (WeChat will refuse it).
        let later = codes
            .once("a", "c1", 2001, || async { Ok(who("u3")) })
            .await;
        assert!(matches!(later, Ok((ref i, true)) if i.user_id == "u3"));
    }

    #[tokio::test]
    async fn failures_are_not_remembered_and_entries_do_not_pile_up() {
        let codes = LoginCodes::new(1000);
        for n in 0..500 {
            let r = codes
                .once("a", &format!("bad{n}"), n, || async {
                    Err(Error::InvalidCode("no".into()))
                })
                .await;
            assert!(r.is_err());
        }
        let retried = codes
            .once("a", "bad1", 600, || async { Ok(who("u1")) })
            .await;
        assert!(matches!(retried, Ok((_, true))));
        // Far later, one call sweeps what expired ahead of it.
        let _ = codes
            .once("a", "fresh", 10_000, || async { Ok(who("u9")) })
            .await;
        assert_eq!(len(&codes), 1);
    }

    #[tokio::test]
    async fn answered_entries_are_compact_and_answer_the_same() {
        let codes = LoginCodes::new(1000);
        let id = uuid::Uuid::now_v7().to_string();
        let first = codes
            .once("a", "c", 0, || async { Ok(who(&id)) })
            .await
            .unwrap();
        assert_eq!((first.0.user_id.as_str(), first.1), (id.as_str(), true));
        let compact = {
            let entries = codes.entries.lock().unwrap();
            matches!(
                entries.by_key.values().next().unwrap().slot,
                Slot::Done { new_user: true, .. }
            )
        };
        assert!(compact);
        assert_eq!(std::mem::size_of::<(CodeKey, Entry)>(), 48);
        let again = codes
            .once("a", "c", 10, || async { Ok(who("other")) })
            .await
            .unwrap();
        assert_eq!((again.0.user_id.as_str(), again.1), (id.as_str(), false));
        for other in ["u1".to_owned(), id.to_uppercase()] {
            let slot = Slot::done(&who(&other));
            assert!(matches!(slot, Slot::DoneText(_)));
            assert_eq!(slot.answer().unwrap().user_id, other);
        }
    }
}
