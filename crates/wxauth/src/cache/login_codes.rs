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
//! a whole map). A busy window holds many codes (30 s at 14,000 logins/s
//! is 420,000), so an answered code is kept in 35 bytes (see [`Answer`])
//! and the window holds at most [`MAX_CODES`]: past that its oldest codes
//! go early, and a retry of one of them gets WeChat's answer (the code was
//! used), as it would after the window.

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

/// The most codes one instance holds: the window's memory stays bounded
/// (about 15 MB with the maps' spare room) whatever the login rate. The
/// default 30 s window reaches it above about 8,700 logins/s; then a code
/// is answered again for 262,144 logins' time instead (19 s at 14,000/s),
/// still far longer than a client's retry takes.
pub const MAX_CODES: usize = 1 << 18;

/// How many slices a window is cut into (see [`Entries`]).
const SLICES_PER_WINDOW: usize = 10;

/// An answered code whose user id is a UUID (every id wxauth makes): most
/// of a busy window, so it is 19 bytes with no padding (35 with its key):
/// the id, whether the login created the user, and when the code arrived
/// (milliseconds after its slice began, little-endian; a slice is at most
/// 60 s). An entry with an `i64` time and an enum for every state was 48.
#[derive(Clone, Copy)]
struct Answer {
    user: [u8; 16],
    new_user: bool,
    after_start_ms: [u8; 2],
}

impl Answer {
    /// The compact form of `identity`, if its id is a canonical UUID (so it
    /// prints back identically).
    fn of(identity: &LoginIdentity, after_start_ms: i64) -> Option<Self> {
        let u = uuid::Uuid::parse_str(&identity.user_id).ok()?;
        if u.hyphenated().to_string() != identity.user_id {
            return None;
        }
        let after = u16::try_from(after_start_ms.clamp(0, i64::from(u16::MAX))).unwrap_or(u16::MAX);
        Some(Self {
            user: u.into_bytes(),
            new_user: identity.new_user,
            after_start_ms: after.to_le_bytes(),
        })
    }

    fn identity(&self) -> LoginIdentity {
        LoginIdentity {
            user_id: uuid::Uuid::from_bytes(self.user).hyphenated().to_string(),
            new_user: self.new_user,
        }
    }

    fn created_ms(&self, slice_start_ms: i64) -> i64 {
        slice_start_ms + i64::from(u16::from_le_bytes(self.after_start_ms))
    }
}

/// A code whose exchange runs (others wait on the cell) or failed, or
/// whose answer has an id that is not a canonical UUID (the cell holds it).
struct Exchange {
    created_ms: i64,
    cell: Arc<OnceCell<LoginIdentity>>,
}

impl Exchange {
    /// Answered, or failed with nobody waiting: nothing needs it any more.
    fn finished(&self) -> bool {
        self.cell.initialized() || Arc::strong_count(&self.cell) == 1
    }
}

/// Shared first outcomes of login codes.
pub struct LoginCodes {
    ttl_ms: i64,
    entries: Mutex<Entries>,
}

/// The window's codes, in slices of arrival time, oldest first. A slice
/// is dropped whole once its newest code is past the window (or the window
/// holds more than [`MAX_CODES`]), and its map is kept (cleared) for a
/// later slice. One map holding the whole window would fill with the
/// tombstones of removed keys and, with more than half its capacity live,
/// double to get rid of them: at 4,600 logins/s it settled at 524,288
/// buckets (25 MB) for 140,000 codes. Slices never remove an answered
/// key, so they hold only what arrived in their time. A lookup tries each
/// slice, newest first.
struct Entries {
    /// [`MAX_CODES`], or fewer in tests.
    max_codes: usize,
    slices: VecDeque<Slice>,
    /// Answer maps of dropped slices, cleared, for the next slices.
    spare: Vec<HashMap<CodeKey, Answer>>,
}

struct Slice {
    start_ms: i64,
    answered: HashMap<CodeKey, Answer>,
    /// Few: exchanges in flight or failed, and answers with other ids.
    exchanges: HashMap<CodeKey, Exchange>,
}

impl Slice {
    fn len(&self) -> usize {
        self.answered.len() + self.exchanges.len()
    }
}

/// The newest state of a code in the window.
enum Found {
    Answered(LoginIdentity, i64),
    Exchange(Arc<OnceCell<LoginIdentity>>, i64),
}

impl Entries {
    fn slice_ms(ttl_ms: i64) -> i64 {
        (ttl_ms / SLICES_PER_WINDOW as i64).clamp(100, 60_000)
    }

    /// Drops the slices whose every code is past the window, and the
    /// oldest while the window holds more than [`MAX_CODES`]. An exchange
    /// still in flight moves to the newest slice: its waiters need it.
    fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        let slice_ms = Self::slice_ms(ttl_ms);
        while let Some(front) = self.slices.front() {
            let past = now_ms - (front.start_ms + slice_ms) > ttl_ms;
            let over = self.slices.len() > 1 && self.held() > self.max_codes;
            if !(past || over) {
                break;
            }
            let Some(mut old) = self.slices.pop_front() else {
                break;
            };
            let in_flight: Vec<(CodeKey, Exchange)> = old
                .exchanges
                .drain()
                .filter(|(_, e)| !e.finished())
                .collect();
            for (key, mut exchange) in in_flight {
                exchange.created_ms = now_ms;
                self.current(now_ms, ttl_ms).exchanges.insert(key, exchange);
            }
            if self.spare.len() < 2 {
                old.answered.clear();
                self.spare.push(old.answered);
            }
        }
    }

    /// The slice new codes go to: a new one each slice of time, or sooner
    /// when the current one holds its share of [`MAX_CODES`].
    fn current(&mut self, now_ms: i64, ttl_ms: i64) -> &mut Slice {
        let slice_ms = Self::slice_ms(ttl_ms);
        let fresh = self.slices.back().is_none_or(|s| {
            now_ms >= s.start_ms + slice_ms || s.len() >= self.max_codes / SLICES_PER_WINDOW
        });
        if fresh {
            let answered = self.spare.pop().unwrap_or_default();
            self.slices.push_back(Slice {
                start_ms: now_ms,
                answered,
                exchanges: HashMap::new(),
            });
        }
        match self.slices.back_mut() {
            Some(s) => s,
            None => unreachable!("a slice was just pushed"),
        }
    }

    /// The newest state of `key`, with the time its code arrived.
    /// Within a slice an exchange is newer than an answer: one is started
    /// beside an answer only once the answer is past the window (which a
    /// slice can outlast when the window is shorter than it, as with
    /// replays off), and the answer is then dropped.
    fn get(&self, key: &CodeKey) -> Option<Found> {
        self.slices.iter().rev().find_map(|s| {
            if let Some(e) = s.exchanges.get(key) {
                return Some(Found::Exchange(e.cell.clone(), e.created_ms));
            }
            s.answered
                .get(key)
                .map(|a| Found::Answered(a.identity(), a.created_ms(s.start_ms)))
        })
    }

    /// Codes in all slices.
    fn held(&self) -> usize {
        self.slices.iter().map(Slice::len).sum()
    }

    fn insert_exchange(
        &mut self,
        key: CodeKey,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Arc<OnceCell<LoginIdentity>> {
        let cell = Arc::new(OnceCell::new());
        let slice = self.current(now_ms, ttl_ms);
        slice.answered.remove(&key);
        slice.exchanges.insert(
            key,
            Exchange {
                created_ms: now_ms,
                cell: cell.clone(),
            },
        );
        cell
    }

    /// Keeps the answer of `cell`'s exchange compactly, in its slice.
    fn answered(
        &mut self,
        key: &CodeKey,
        cell: &Arc<OnceCell<LoginIdentity>>,
        identity: &LoginIdentity,
    ) {
        for slice in self.slices.iter_mut().rev() {
            let Some(e) = slice.exchanges.get(key) else {
                continue;
            };
            if !Arc::ptr_eq(&e.cell, cell) {
                return;
            }
            if let Some(answer) = Answer::of(identity, e.created_ms - slice.start_ms) {
                slice.exchanges.remove(key);
                slice.answered.insert(*key, answer);
            }
            return;
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
        Self::holding_at_most(ttl_ms, MAX_CODES)
    }

    fn holding_at_most(ttl_ms: i64, max_codes: usize) -> Self {
        Self {
            ttl_ms,
            entries: Mutex::new(Entries {
                max_codes,
                slices: VecDeque::new(),
                spare: Vec::new(),
            }),
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
            let within = |created_ms: i64| now_ms - created_ms <= self.ttl_ms;
            match entries.get(&key) {
                // Answered within the window: its identity.
                Some(Found::Answered(identity, created)) if within(created) => {
                    return Ok((identity, false));
                }
                // In flight (others wait for it) or answered within the window.
                Some(Found::Exchange(cell, created)) if !cell.initialized() || within(created) => {
                    cell
                }
                _ => entries.insert_exchange(key, now_ms, self.ttl_ms),
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
            entries.answered(&key, &cell, &identity);
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
        codes.entries.lock().unwrap().held()
    }

    type Outcome = tokio::task::JoinHandle<Result<(LoginIdentity, bool)>>;

    /// A login with `code` at `now_ms`, on a task of its own.
    fn spawn_once(
        codes: &Arc<LoginCodes>,
        code: &'static str,
        now_ms: i64,
        id: &'static str,
    ) -> Outcome {
        let codes = codes.clone();
        tokio::spawn(async move {
            codes
                .once("a", code, now_ms, || async { Ok(who(id)) })
                .await
        })
    }

    /// A login whose exchange answers `id` only once the returned sender
    /// fires; returns when that exchange is in flight.
    async fn held_exchange(
        codes: &Arc<LoginCodes>,
        code: &'static str,
        now_ms: i64,
        id: &'static str,
    ) -> (tokio::sync::oneshot::Sender<()>, Outcome) {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let outcome = {
            let codes = codes.clone();
            tokio::spawn(async move {
                codes
                    .once("a", code, now_ms, || async move {
                        let _ = released.await;
                        Ok(who(id))
                    })
                    .await
            })
        };
        let in_flight = || {
            let entries = codes.entries.lock().unwrap();
            entries.slices.iter().any(|s| !s.exchanges.is_empty())
        };
        while !in_flight() {
            tokio::task::yield_now().await;
        }
        (release, outcome)
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
        let (release, slow) = held_exchange(&codes, "slow", 0, "u-slow").await;
        // Far later: other codes expire every old slice.
        for n in 0..50 {
            let _ = codes
                .once("a", &format!("other{n}"), 5_000 + n, || async {
                    Ok(who("x"))
                })
                .await;
        }
        let repeat = spawn_once(&codes, "slow", 5_100, "u-again");
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
            let slice = &entries.slices[0];
            slice.exchanges.is_empty() && slice.answered.values().next().is_some_and(|a| a.new_user)
        };
        assert!(compact);
        assert_eq!(std::mem::size_of::<(CodeKey, Answer)>(), 35);
        assert_eq!(std::mem::align_of::<(CodeKey, Answer)>(), 1);
        let again = codes
            .once("a", "c", 10, || async { Ok(who("other")) })
            .await
            .unwrap();
        assert_eq!((again.0.user_id.as_str(), again.1), (id.as_str(), false));
        // Ids that are not canonical UUIDs stay in their cell, answered the same.
        for (n, other) in ["u1".to_owned(), id.to_uppercase()].into_iter().enumerate() {
            let code = format!("text{n}");
            let first = codes
                .once("a", &code, 20, || async { Ok(who(&other)) })
                .await
                .unwrap();
            let again = codes
                .once("a", &code, 30, || async { Ok(who("x")) })
                .await
                .unwrap();
            assert_eq!((first.1, again.1), (true, false));
            assert_eq!(again.0.user_id, other);
        }
        assert_eq!(len(&codes), 3);
    }

    /// An answer keeps the time its code arrived, not its slice's start:
    /// the window is the same length for every code.
    #[tokio::test]
    async fn the_window_counts_from_each_codes_own_arrival() {
        let codes = LoginCodes::new(10_000); // slices of 1 s
        let id = uuid::Uuid::now_v7().to_string();
        let _ = codes.once("a", "early", 0, || async { Ok(who("e")) }).await;
        let _ = codes
            .once("a", "late", 900, || async { Ok(who(&id)) })
            .await;
        let repeat = codes
            .once("a", "late", 10_900, || async { Ok(who("x")) })
            .await
            .unwrap();
        assert_eq!((repeat.0.user_id.as_str(), repeat.1), (id.as_str(), false));
        let past = codes
            .once("a", "late", 10_901, || async { Ok(who("y")) })
            .await
            .unwrap();
        assert_eq!((past.0.user_id.as_str(), past.1), ("y", true));
    }

    /// However fast codes come, the window holds at most its bound (plus
    /// one slice being filled); past it the oldest codes go first.
    #[tokio::test]
    async fn the_window_holds_at_most_its_bound_and_drops_the_oldest_first() {
        let codes = LoginCodes::holding_at_most(30_000, 1000);
        let id = uuid::Uuid::now_v7().to_string();
        let mut most = 0;
        for n in 0..5000 {
            let _ = codes
                .once("a", &format!("c{n}"), n / 10, || async { Ok(who(&id)) })
                .await;
            most = most.max(len(&codes));
        }
        assert!((1000..=1100).contains(&most), "held at most {most}");
        // All within 500 ms of a 30 s window: the newest are answered
        // again, the oldest went to make room.
        let newest = codes
            .once("a", "c4999", 500, || async { Ok(who("x")) })
            .await
            .unwrap();
        assert!(!newest.1);
        let oldest = codes
            .once("a", "c0", 500, || async { Ok(who("x")) })
            .await
            .unwrap();
        assert!(oldest.1);
    }

    /// With replays off a used code is exchanged again, but a repeat that
    /// arrives while that exchange runs still waits for it (one call to
    /// WeChat per code at a time), however short the window.
    #[tokio::test]
    async fn with_replays_off_a_repeat_still_shares_the_exchange_in_flight() {
        let codes = Arc::new(LoginCodes::new(0));
        let id = uuid::Uuid::now_v7().to_string();
        let first = codes
            .once("a", "c", 0, || async { Ok(who(&id)) })
            .await
            .unwrap();
        assert!(first.1);
        let (release, again) = held_exchange(&codes, "c", 5, "second").await;
        let repeat = spawn_once(&codes, "c", 6, "third");
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        let (second, ran) = again.await.unwrap().unwrap();
        assert_eq!((second.user_id.as_str(), ran), ("second", true));
        let (third, ran) = repeat.await.unwrap().unwrap();
        assert_eq!((third.user_id.as_str(), ran), ("second", false));
        assert_eq!(len(&codes), 1);
    }
}
