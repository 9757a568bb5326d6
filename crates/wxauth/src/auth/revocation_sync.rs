//! Keeps an instance's revocation set in step with the database, whatever
//! the instances' clocks say.
//!
//! Every revocation is numbered by the database as it is written (the
//! `revocation_log` table, filled by triggers). Each instance reads the
//! entries numbered after the last it has read, every
//! [`REVOCATION_RESYNC`](super::REVOCATION_RESYNC) and at once when its
//! channel to the others was joined again, so a revocation whose broadcast
//! was lost is refused here within that interval. No timestamp takes part
//! in choosing what to read: an instance whose clock runs minutes behind
//! or ahead is seen like any other.
//!
//! PostgreSQL takes numbers at insert time, so a transaction can commit
//! after a later-numbered one is read. A number skipped over is a gap: it
//! is read again from there until it appears or [`GAP_WAIT`] has passed (a
//! rolled-back transaction leaves a gap for good).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wechat_miniapp::Clock;

use crate::cache::Revocations;
use crate::store::{LoggedRevocation, Store};

/// How long a skipped number is waited for.
pub const GAP_WAIT: Duration = Duration::from_secs(30);
/// Gaps tracked at most (a larger jump is a pruned or restored log: its
/// numbers are not waited for).
const MAX_GAPS: i64 = 10_000;
/// Entries read at once.
const PAGE: i64 = 5_000;
/// How often the log is pruned, and how long past a token's lifetime an
/// entry is kept (generous: the revoking instance's clock may lag).
const PRUNE_EVERY: Duration = Duration::from_secs(600);
const KEEP_PAST_TTL_MS: i64 = 3_600_000;

/// Where reading the log goes on from.
#[derive(Debug, Default)]
pub struct LogCursor {
    /// The highest number read.
    read_up_to: i64,
    /// Numbers below it not seen yet, with when they were noticed.
    gaps: BTreeMap<i64, Instant>,
}

impl LogCursor {
    /// A cursor that has read everything up to `seq`.
    pub fn at(seq: i64) -> Self {
        Self {
            read_up_to: seq,
            gaps: BTreeMap::new(),
        }
    }

    /// The number to read after: just below the oldest gap still waited
    /// for, else the highest read.
    pub fn read_after(&mut self, now: Instant) -> i64 {
        self.gaps
            .retain(|_, noticed| now.duration_since(*noticed) < GAP_WAIT);
        match self.gaps.keys().next() {
            Some(&gap) => gap - 1,
            None => self.read_up_to,
        }
    }

    /// Takes a page of entries (in order). Returns those not seen before.
    pub fn advance<'a>(
        &mut self,
        entries: &'a [LoggedRevocation],
        now: Instant,
    ) -> Vec<&'a LoggedRevocation> {
        let mut fresh = Vec::new();
        for entry in entries {
            if entry.seq <= self.read_up_to {
                if self.gaps.remove(&entry.seq).is_some() {
                    fresh.push(entry);
                }
                continue;
            }
            let skipped = entry.seq - self.read_up_to - 1;
            if skipped > 0 && skipped <= MAX_GAPS && self.read_up_to > 0 {
                for gap in self.read_up_to + 1..entry.seq {
                    self.gaps.insert(gap, now);
                }
            }
            self.read_up_to = entry.seq;
            fresh.push(entry);
        }
        fresh
    }
}

/// Reads the log into `revocations` until the store is closed.
pub fn spawn(store: Store, revocations: Arc<dyn Revocations>, clock: Arc<dyn Clock>, ttl_ms: i64) {
    let Some(wanted) = revocations.resync_wanted() else {
        return;
    };
    tokio::spawn(async move {
        // Everything still in the log once (it holds a token lifetime and
        // a margin), then onwards from there.
        let mut cursor = LogCursor::at(0);
        let mut last_prune = Instant::now();
        loop {
            let started = Instant::now();
            loop {
                let after = cursor.read_after(Instant::now());
                let page = match store.revocations_after(after, PAGE).await {
                    Ok(page) => page,
                    Err(_) if store.is_closed() => return,
                    Err(e) => {
                        tracing::warn!(error = ?e, "revocation resync from the database failed");
                        break;
                    }
                };
                let now_ms = clock.now_ms();
                for entry in cursor.advance(&page, Instant::now()) {
                    // Kept a token lifetime from whichever is later, the
                    // revoking instance's time or ours: a lagging clock
                    // must not shorten it.
                    let until = entry.revoked_at.max(now_ms) + ttl_ms;
                    revocations.remember(&entry.session_id, until, now_ms);
                }
                if i64::try_from(page.len()).unwrap_or(PAGE) < PAGE {
                    break;
                }
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                let before = clock.now_ms() - ttl_ms - KEEP_PAST_TTL_MS;
                if let Err(e) = store.prune_revocation_log(before).await {
                    if store.is_closed() {
                        return;
                    }
                    tracing::warn!(error = ?e, "pruning the revocation log failed");
                }
            }
            let wait = super::REVOCATION_RESYNC.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(wait, wanted.notified()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64) -> LoggedRevocation {
        LoggedRevocation {
            seq,
            session_id: format!("s{seq}"),
            revoked_at: 0,
        }
    }

    fn seqs(fresh: &[&LoggedRevocation]) -> Vec<i64> {
        fresh.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn a_number_committed_late_is_still_read() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::at(0);
        assert_eq!(cursor.read_after(t0), 0);
        // 1, 2 and 4 committed; 3 not yet.
        let page = [entry(1), entry(2), entry(4)];
        assert_eq!(seqs(&cursor.advance(&page, t0)), [1, 2, 4]);
        assert_eq!(cursor.read_after(t0), 2, "read again from the gap");
        // 3 commits; the re-read returns 3 and 4, only 3 is new.
        let page = [entry(3), entry(4), entry(5)];
        assert_eq!(seqs(&cursor.advance(&page, t0)), [3, 5]);
        assert_eq!(cursor.read_after(t0), 5);
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up_after_a_while() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::at(0);
        cursor.advance(&[entry(1), entry(3)], t0);
        assert_eq!(cursor.read_after(t0 + GAP_WAIT / 2), 1);
        assert_eq!(cursor.read_after(t0 + GAP_WAIT), 3);
    }

    #[test]
    fn the_first_read_and_large_jumps_make_no_gaps() {
        let t0 = Instant::now();
        let mut cursor = LogCursor::at(0);
        cursor.advance(&[entry(500)], t0);
        assert_eq!(cursor.read_after(t0), 500);
        cursor.advance(&[entry(500 + MAX_GAPS + 2)], t0);
        assert_eq!(cursor.read_after(t0), 500 + MAX_GAPS + 2);
    }
}
