//! The tail of one collection's change log in this process: one task per
//! (app, collection) that has watches here. Woken when a commit is heard
//! of (this process's, or another instance's through Redis) and every
//! `realtime.poll_ms` regardless (a notice lost costs at most that long),
//! it reads the changes after the oldest position its watches have seen,
//! a thousand at a time, and moves each watch's window past them in
//! order. Each change is read once per process, whatever the number of
//! watches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use super::window::{DocChange, Window};
use super::{Cursor, Outgoing, SocketCloser};
use crate::data::Data;
use crate::error::Result;
use crate::store::{CHANGES_PER_READ, ChangeOp, LoggedChange, Store};

/// A watch as its collection's tail holds it.
pub(super) struct TailWatch {
    /// The client's id for it.
    pub(super) id: String,
    /// Its window.
    pub(super) window: Window,
    /// The last position applied to it.
    pub(super) position: i64,
    /// Where its messages go.
    pub(super) sender: mpsc::Sender<Outgoing>,
    /// Closes its socket when it cannot keep up.
    pub(super) closer: SocketCloser,
}

/// (socket, watch id).
pub(super) type WatchKey = (u64, String);

/// One collection's watches in this process.
pub(super) struct Tail {
    pub(super) appid: String,
    pub(super) collection: String,
    pub(super) watches: Mutex<HashMap<WatchKey, TailWatch>>,
    pub(super) wake: Notify,
}

impl Tail {
    pub(super) fn new(appid: &str, collection: &str) -> Arc<Self> {
        Arc::new(Self {
            appid: appid.to_owned(),
            collection: collection.to_owned(),
            watches: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WatchKey, TailWatch>> {
        self.watches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn add(&self, key: WatchKey, watch: TailWatch) {
        self.lock().insert(key, watch);
        self.wake.notify_one();
    }

    /// Removes a watch; whether the tail has none left.
    pub(super) fn remove(&self, key: &WatchKey) -> bool {
        let mut w = self.lock();
        w.remove(key);
        w.is_empty()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Reads and applies every change its watches have not seen; then
    /// runs again the queries of windows that need it.
    pub(super) async fn catch_up(&self, store: &Store, data: &Data) -> Result<()> {
        loop {
            let from = match self.lock().values().map(|w| w.position).min() {
                Some(p) => p,
                None => return Ok(()),
            };
            let changes = store
                .changes_after(&self.appid, &self.collection, from, CHANGES_PER_READ)
                .await?;
            let Some(last) = changes.last().map(|c| c.position) else {
                return Ok(());
            };
            if let Some(oldest) = changes.first().map(|c| c.position)
                && oldest > from + 1
            {
                // The log no longer holds what these watches missed
                // (trimmed): their windows are read afresh.
                self.refill_behind(from, oldest, data).await?;
            }
            let (refills, behind) = self.apply(from, &changes);
            for key in refills {
                self.refill(&key, data, last).await?;
            }
            if (changes.len() as i64) < CHANGES_PER_READ && !behind {
                return Ok(());
            }
        }
    }

    /// Applies changes (those after `from`) to every watch that has not
    /// seen them; the watches whose windows must be read again, and
    /// whether a watch added meanwhile is behind `from` (its changes are
    /// read on the next pass, never skipped).
    fn apply(&self, from: i64, changes: &[LoggedChange]) -> (Vec<WatchKey>, bool) {
        let mut refills = Vec::new();
        let mut behind = false;
        // Each change's data is read once, not once per watch.
        let parsed: Vec<Option<serde_json::Value>> = changes
            .iter()
            .map(|c| match (&c.change.op, &c.change.data) {
                (ChangeOp::Delete, _) | (_, None) => None,
                (_, Some(text)) => serde_json::from_str(text).ok(),
            })
            .collect();
        let mut watches = self.lock();
        for (key, w) in watches.iter_mut() {
            if w.position < from {
                behind = true;
                continue;
            }
            let mut out: Vec<DocChange> = Vec::new();
            let mut refill = false;
            let seen = w.position;
            for (c, value) in changes
                .iter()
                .zip(&parsed)
                .filter(|(c, _)| c.position > seen)
            {
                let applied = w.window.apply(c, value.as_ref());
                out.extend(applied.changes);
                refill |= applied.refill;
                w.position = c.position;
            }
            if refill {
                refills.push(key.clone());
            }
            if !out.is_empty() {
                send(w, out);
            }
        }
        (refills, behind)
    }

    async fn refill(&self, key: &WatchKey, data: &Data, position: i64) -> Result<()> {
        let query = match self.lock().get(key) {
            Some(w) => w.window.query().clone(),
            None => return Ok(()),
        };
        let fresh = data.watched_documents(&query).await?;
        let mut watches = self.lock();
        if let Some(w) = watches.get_mut(key) {
            let out = w.window.refill(fresh);
            w.position = w.position.max(position);
            if !out.is_empty() {
                send(w, out);
            }
        }
        Ok(())
    }

    async fn refill_behind(&self, from: i64, oldest: i64, data: &Data) -> Result<()> {
        let behind: Vec<WatchKey> = self
            .lock()
            .iter()
            .filter(|(_, w)| w.position < oldest - 1 && w.position <= from)
            .map(|(k, _)| k.clone())
            .collect();
        for key in behind {
            self.refill(&key, data, oldest - 1).await?;
        }
        Ok(())
    }
}

/// Queues a watch's changes for its socket; a socket whose queue is full
/// is closed as a slow reader (its client resumes or starts again).
fn send(w: &TailWatch, changes: Vec<DocChange>) {
    let message = Outgoing::Change {
        id: w.id.clone(),
        changes,
        cursor: Cursor {
            position: w.position,
            full: w.window.is_full(),
            fingerprint: w.window.query().fingerprint.clone(),
        }
        .to_string(),
    };
    if w.sender.try_send(message).is_err() {
        w.closer.slow_reader();
    }
}
