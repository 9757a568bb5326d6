//! The hot user rows, kept in memory so `GET /v1/me`, the gateway and
//! every profile read skip the database (on SQLite each query is a hand-off
//! to the driver's thread and back, the largest cost of those routes).
//!
//! Kept correct by the writer: every committed write that changes a user
//! row puts the new row or forgets the old one, in commit order, on the
//! writer's task. A read that missed fills the cache only if no change was
//! recorded since it began (the generation check), so a slow read can
//! never put back a row older than one already written.
//!
//! Only this process's writer is seen, so the cache is enabled only when
//! this process is the only one writing (no `redis_url`: one instance).
//! With several instances it stays off and every read goes to the database.
//! A row is also read again once it is `MAX_AGE` old, which bounds how long
//! a change made outside the service (an operator's SQL) can go unseen.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use rand::Rng;

use super::rows::UserRecord;

/// Rows kept at most: about 300 bytes each, so a few MB.
pub(super) const CAPACITY: usize = 8192;
/// How long a row is served before it is read again.
const MAX_AGE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Rows {
    map: IndexMap<String, (Instant, Arc<UserRecord>)>,
    generation: u64,
}

/// A bounded map of user rows with a change generation.
#[derive(Default)]
pub(super) struct UserCache {
    enabled: AtomicBool,
    rows: Mutex<Rows>,
}

/// Taken before a read from the database; filling with it succeeds only
/// if nothing changed meanwhile.
#[derive(Clone, Copy)]
pub(super) struct Ticket(u64);

impl UserCache {
    pub(super) fn enable(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
        if !on {
            self.with(|rows| rows.map.clear());
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Rows) -> T) -> Option<T> {
        if !self.enabled.load(Ordering::Relaxed) {
            return None;
        }
        // A poisoned lock only means a panic elsewhere mid-update: start over.
        let mut rows = self.rows.lock().unwrap_or_else(|p| {
            let mut rows = p.into_inner();
            rows.map.clear();
            rows
        });
        Some(f(&mut rows))
    }

    pub(super) fn get(&self, id: &str) -> Option<UserRecord> {
        let found = self.with(|rows| match rows.map.get(id) {
            Some((at, u)) if at.elapsed() < MAX_AGE => Some(UserRecord::clone(u)),
            _ => None,
        })?;
        let outcome = if found.is_some() { "hit" } else { "miss" };
        metrics::counter!("wxauth_user_cache_reads_total", "outcome" => outcome).increment(1);
        found
    }

    pub(super) fn ticket(&self) -> Ticket {
        Ticket(self.with(|rows| rows.generation).unwrap_or(0))
    }

    /// Keeps a row read from the database, unless a change came first.
    pub(super) fn fill(&self, ticket: Ticket, user: &UserRecord) {
        self.with(|rows| {
            if rows.generation == ticket.0 {
                insert(rows, user);
            }
        });
    }

    /// Keeps a row a committed write returned.
    pub(super) fn put(&self, user: &UserRecord) {
        self.with(|rows| {
            rows.generation += 1;
            insert(rows, user);
        });
    }

    /// Forgets a row a committed write changed.
    pub(super) fn forget(&self, id: &str) {
        self.with(|rows| {
            rows.generation += 1;
            rows.map.swap_remove(id);
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.with(|rows| rows.map.len()).unwrap_or(0)
    }
}

fn insert(rows: &mut Rows, user: &UserRecord) {
    if rows.map.len() >= CAPACITY && !rows.map.contains_key(&user.id) {
        // Random eviction, truly random: a hot row is rarely the victim.
        // (Evicting "the first key in hash order" is not random: the slots
        // emptied by earlier evictions fill with the newest rows, so it
        // evicts recent, hot rows first; on a full cache every read missed.)
        let victim = rand::rng().random_range(0..rows.map.len());
        rows.map.swap_remove_index(victim);
    }
    rows.map
        .insert(user.id.clone(), (Instant::now(), Arc::new(user.clone())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, profile: &str) -> UserRecord {
        UserRecord {
            id: id.into(),
            appid: "wx1".into(),
            openid: "o".into(),
            unionid: None,
            session_key_enc: vec![],
            phone_enc: None,
            profile: profile.into(),
            profile_version: 0,
            created_at: 0,
            last_login_at: 0,
        }
    }

    #[test]
    fn a_read_that_began_before_a_write_cannot_put_back_the_old_row() {
        let cache = UserCache::default();
        cache.enable(true);
        let ticket = cache.ticket();
        cache.put(&user("a", "new"));
        cache.fill(ticket, &user("a", "old"));
        assert_eq!(cache.get("a").map(|u| u.profile).as_deref(), Some("new"));
        let ticket = cache.ticket();
        cache.forget("a");
        cache.fill(ticket, &user("a", "old"));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn bounded_and_off_when_disabled() {
        let cache = UserCache::default();
        cache.put(&user("a", "{}"));
        assert!(cache.get("a").is_none(), "disabled: keeps nothing");
        cache.enable(true);
        for i in 0..CAPACITY + 100 {
            cache.put(&user(&i.to_string(), "{}"));
        }
        assert_eq!(cache.len(), CAPACITY);
    }

    #[test]
    fn hot_rows_stay_when_the_cache_is_full() {
        let cache = UserCache::default();
        cache.enable(true);
        for i in 0..CAPACITY * 3 {
            cache.put(&user(&format!("cold{i}"), "{}"));
        }
        let (mut reads, mut misses) = (0, 0);
        for _ in 0..200 {
            for h in 0..64 {
                let id = format!("hot{h}");
                reads += 1;
                if cache.get(&id).is_none() {
                    misses += 1;
                    cache.fill(cache.ticket(), &user(&id, "{}"));
                }
            }
        }
        // 64 first reads miss; after that a fill evicts a hot row with
        // probability 64/8192, so a few more at most.
        assert!(misses < 64 + reads / 50, "{misses} misses in {reads} reads");
    }
}
