//! The sweep of bytes without a file row: what an upload leaves when the
//! process stops between storing its bytes and committing its row, or a
//! deletion whose bytes the store refused to delete. A row is written only
//! after its bytes, so bytes older than the grace period (longer than any
//! upload may take) with no row are nobody's file.

use std::time::{Duration, SystemTime};

use futures_util::StreamExt;

use super::Files;
use crate::error::Result;
use crate::store::IDS_PER_LOOKUP;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Blobs looked at.
    pub seen: usize,
    /// Blobs without a row, older than the grace period, deleted.
    pub removed: usize,
    /// The local store's half-written files removed.
    pub partials_removed: usize,
}

/// Whether `key` is one wxauth writes (a file id, a UUID): anything else
/// under the store's prefix is left alone, whoever put it there.
fn is_file_id(key: &str) -> bool {
    uuid::Uuid::try_parse(key).is_ok()
}

impl Files {
    /// Deletes bytes that have no file row and were written before
    /// `grace` ago; the store is listed and rows looked up in batches.
    pub async fn sweep_orphans(&self, grace: Duration) -> Result<SweepReport> {
        let before = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = SweepReport {
            partials_removed: self.blobs.remove_stale_partials(before).await,
            ..SweepReport::default()
        };
        let mut listing = self.blobs.list().chunks(IDS_PER_LOOKUP);
        while let Some(page) = listing.next().await {
            let mut old = Vec::new();
            for entry in page {
                let entry = entry?;
                report.seen += 1;
                if entry.modified < before && is_file_id(&entry.key) {
                    old.push(entry.key);
                }
            }
            if old.is_empty() {
                continue;
            }
            let known = self.store.known_file_ids(&old).await?;
            for key in old.iter().filter(|k| !known.contains(*k)) {
                self.blobs.delete(key).await?;
                report.removed += 1;
            }
        }
        Ok(report)
    }

    /// Sweeps now and then every half grace period (at least every second,
    /// at most hourly) while the store is open. Every instance may sweep:
    /// deleting bytes nobody owns twice is harmless.
    pub fn spawn_orphan_sweep(&self) {
        let files = self.clone();
        let grace = self.limits.orphan_grace;
        let every = (grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if files.store.is_closed() {
                    break;
                }
                match files.sweep_orphans(grace).await {
                    Ok(r) if r.removed + r.partials_removed > 0 => {
                        metrics::counter!("wxauth_file_orphans_removed_total")
                            .increment((r.removed + r.partials_removed) as u64);
                        tracing::info!(
                            removed = r.removed,
                            partials = r.partials_removed,
                            seen = r.seen,
                            "bytes without a file row removed"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the file sweep did not finish"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_ids_are_swept() {
        assert!(is_file_id(&uuid::Uuid::now_v7().to_string()));
        assert!(!is_file_id("backup.tar"));
        assert!(!is_file_id("photos/cat.png"));
    }
}
