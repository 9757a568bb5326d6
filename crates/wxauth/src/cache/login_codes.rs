//! Login-code de-duplication. WeChat accepts a code once; a client that
//! retries a login (a lost response, a double tap, a proxy retry) would get
//! 40163 "code been used". Instead, the first exchange of a code is shared:
//! concurrent requests with the same code wait for it, and later ones within
//! the replay window reuse its outcome. Only the identity is kept (user id
//! and whether it was new), never a token or the session_key; each request
//! still gets its own session. Codes are keyed by a hash, never stored.
//!
//! Expiry drops whole slices of arrival time (see [`Entries`]): the work
//! per login is constant however many codes the window holds (no sweep of
//! a whole map). A busy window holds many codes (30 s at 5,000 logins/s is
//! 150,000), so an answered entry keeps its identity compactly (see [`Slot`]).

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

/// How many slices a window is cut into (see [`Entries`]).
const SLICES_PER_WINDOW: i64 = 10;

/// The window's entries, in slices of arrival time, oldest first. A slice
/// is dropped whole once its newest entry is past the window, and its map
/// is kept (cleared) for a later slice. One map holding the whole window
/// would fill with the tombstones of removed keys and, with more than half
/// its capacity live, double to get rid of them: at 4,600 logins/s it
/// settled at 524,288 buckets (25 MB) for 140,000 codes. Slices never
/// remove a key, so they hold only what arrived in their time (a tenth of
/// the window, 1.2 MB each at that rate). A lookup tries each slice,
/// newest first.
#[derive(Default)]
struct Entries {
    slices: VecDeque<Slice>,
    /// Maps of dropped slices, cleared, for the next slices.
    spare: Vec<HashMap<CodeKey, Entry>>,
}

struct Slice {
    start_ms: i64,
    by_key: HashMap<CodeKey, Entry>,
}

impl Entries {
    fn slice_ms(ttl_ms: i64) -> i64 {
        (ttl_ms / SLICES_PER_WINDOW).max(100)
    }

    /// Drops the slices whose every entry is past the window. An exchange
    /// still in flight moves to the newest slice: its waiters need it.
    fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        let slice_ms = Self::slice_ms(ttl_ms);
        while self
            .slices
            .front()
            .is_some_and(|s| now_ms - (s.start_ms + slice_ms) > ttl_ms)
        {
            let Some(mut old) = self.slices.pop_front() else {
                break;
            };
            let in_flight: Vec<(CodeKey, Entry)> =
                old.by_key.drain().filter(|(_, e)| !e.finished()).collect();
            for (key, mut entry) in in_flight {
                entry.created_ms = now_ms;
                self.current(now_ms, ttl_ms).insert(key, entry);
            }
            if self.spare.len() < 2 {
                self.spare.push(old.by_key);
            }
        }
    }

    /// The slice new entries go to.
    fn current(&mut self, now_ms: i64, ttl_ms: i64) -> &mut HashMap<CodeKey, Entry> {
        let slice_ms = Self::slice_ms(ttl_ms);
        let fresh = self
            .slices
            .back()
            .is_none_or(|s| now_ms >= s.start_ms + slice_ms);
        if fresh {
            let by_key = self.spare.pop().unwrap_or_default();
            self.slices.push_back(Slice {
                start_ms: now_ms,
                by_key,
            });
        }
        match self.slices.back_mut() {
            Some(s) => &mut s.by_key,
            None => unreachable!("a slice was just pushed"),
        }
    }

    /// The newest entry for `key`.
    fn get(&self, key: &CodeKey) -> Option<&Entry> {
        self.slices.iter().rev().find_map(|s| s.by_key.get(key))
    }

    fn get_mut(&mut self, key: &CodeKey) -> Option<&mut Entry> {
        self.slices
            .iter_mut()
            .rev()
            .find_map(|s| s.by_key.get_mut(key))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slices.iter().map(|s| s.by_key.len()).sum()
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
            match entries.get(&key) {
                // Answered within the window: its identity.
                Some(e) if within(e) => {
                    if let Some(identity) = e.slot.answer() {
                        return Ok((identity, false));
                    }
                }
                _ => {}
            }
            // In flight (others wait for it) or answered within the window.
            let shared = entries.get(&key).and_then(|e| match &e.slot {
                Slot::Pending(cell) if !cell.initialized() || within(e) => Some(cell.clone()),
                _ => None,
            });
            match shared {
                Some(cell) => cell,
                None => {
                    let cell = Arc::new(OnceCell::new());
                    entries.current(now_ms, self.ttl_ms).insert(
                        key,
                        Entry {
                            created_ms: now_ms,
                            slot: Slot::Pending(cell.clone()),
                        },
                    );
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
            if let Some(e) = entries.get_mut(&key) {
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
        codes.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX)
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

    /// An exchange still running when its slice leaves the window stays
    /// shared: a repeat of its code waits for it instead of exchanging again.
    #[tokio::test]
    async fn an_exchange_in_flight_outlives_its_slice() {
        let codes = Arc::new(LoginCodes::new(1000));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = {
            let codes = codes.clone();
            tokio::spawn(async move {
                codes
                    .once("a", "slow", 0, || async move {
                        let _ = released.await;
                        Ok(who("u-slow"))
                    })
                    .await
            })
        };
        tokio::task::yield_now().await;
        while len(&codes) == 0 {
            tokio::task::yield_now().await;
        }
        // Far later: other codes expire every old slice.
        for n in 0..50 {
            let _ = codes
                .once("a", &format!("other{n}"), 5_000 + n, || async {
                    Ok(who("x"))
                })
                .await;
        }
        let repeat = {
            let codes = codes.clone();
            tokio::spawn(async move {
                codes
                    .once("a", "slow", 5_100, || async { Ok(who("u-again")) })
                    .await
            })
        };
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        let (first, ran) = slow.await.unwrap().unwrap();
        assert_eq!((first.user_id.as_str(), ran), ("u-slow", true));
        let (again, ran) = repeat.await.unwrap().unwrap();
        assert_eq!((again.user_id.as_str(), ran), ("u-slow", false));
        // Much later still, everything has gone (the maps are kept for reuse).
        let _ = codes
            .once("a", "last", 100_000, || async { Ok(who("z")) })
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
                entries.slices[0].by_key.values().next().unwrap().slot,
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
