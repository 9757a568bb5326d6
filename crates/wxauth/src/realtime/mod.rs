//! Realtime watches (`GET /v1/watch`): a client watches a query and is
//! sent every change to what it shows, as it is committed, on whichever
//! instance took the write.
//!
//! Which engine carries what:
//! - The database holds the truth: every write to a document is in the
//!   change log (`store::changes`), numbered in commit order per
//!   collection, in the same transaction as the write. A watch's cursor is
//!   a position there; a reconnecting client resumes after it.
//! - Notices make it fast: this process's commits are heard at once
//!   (`Store::change_feed`); with Redis, each instance publishes its
//!   commits' positions and hears the others'. A notice lost costs at
//!   most `realtime.poll_ms`, after which each collection's tail looks at
//!   the log anyway.
//! - Sessions: every socket's session is checked against the revocations
//!   four times a second, so a logout, revocation or account deletion on
//!   any instance closes it within a second (close code 4401); the access
//!   token's expiry closes it at that moment.
//!
//! The protocol's rules are here ([`Connection`]); `http` moves frames.

mod tail;
mod window;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use wechat_miniapp::Clock;

use crate::config::RealtimeSettings;
use crate::data::{Data, WatchedDocument};
use crate::error::{Error, Result};
use crate::store::{CommittedPosition, Store};
use crate::vocab::Caller;
use tail::{Tail, TailWatch};
pub use window::DocChange;

/// How often open sockets' sessions are checked.
const SESSION_CHECK: Duration = Duration::from_millis(250);

/// How often deleted accounts' past changes are looked for to scrub.
const SCRUB_EVERY: Duration = Duration::from_secs(1);

/// A message to a client.
#[derive(Debug)]
pub enum Outgoing {
    /// Every document the watch shows now.
    Init {
        /// The client's id of the watch.
        id: String,
        /// In the query's order.
        docs: Vec<WatchedDocument>,
        /// Where to resume from.
        cursor: String,
    },
    /// What changed in what the watch shows, in commit order.
    Change {
        /// The client's id of the watch.
        id: String,
        /// In order.
        changes: Vec<DocChange>,
        /// Where to resume from.
        cursor: String,
    },
    /// A request was refused; the socket stays usable.
    Error {
        /// The watch it is about, when one is named.
        id: Option<String>,
        /// Why (the HTTP API's error codes).
        error: Error,
    },
}

/// Why the server closes a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The session ended (logout, revocation, account deleted) or the
    /// access token expired: 4401.
    SessionEnded,
    /// The client did not read its messages fast enough: 4408.
    SlowReader,
}

/// Closes one socket from anywhere (its tail, the session checks).
#[derive(Debug, Clone)]
pub struct SocketCloser(Arc<watch::Sender<Option<CloseReason>>>);

impl SocketCloser {
    fn close(&self, reason: CloseReason) {
        self.0.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub(crate) fn slow_reader(&self) {
        self.close(CloseReason::SlowReader);
    }
}

/// A watch's resume point: its position in the log, whether its window
/// was full (a full window cannot be brought up to date from the log
/// alone: it gets a fresh `init`), and the query it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) position: i64,
    pub(crate) full: bool,
    pub(crate) fingerprint: String,
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.position,
            u8::from(self.full),
            self.fingerprint
        )
    }
}

impl Cursor {
    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '.');
        let position = parts.next()?.parse::<i64>().ok().filter(|p| *p >= 0)?;
        let full = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        let fingerprint = parts.next()?;
        (fingerprint.len() <= 64).then(|| Self {
            position,
            full,
            fingerprint: fingerprint.to_owned(),
        })
    }
}

/// What a client asks: a watch of a query.
#[derive(Debug, Clone, Default)]
pub struct WatchRequest {
    /// The client's id for it (unique on its socket).
    pub id: String,
    /// The collection.
    pub collection: String,
    /// `where`, as JSON text.
    pub filter: Option<String>,
    /// `order_by`.
    pub order_by: Option<String>,
    /// How many documents (default 100).
    pub limit: Option<u32>,
    /// A cursor from an earlier connection.
    pub resume_after: Option<String>,
}

/// The default `limit` of a watch.
pub const DEFAULT_LIMIT: u32 = 100;

struct SocketEntry {
    user_id: String,
    address: IpAddr,
    session_id: String,
    closer: SocketCloser,
}

/// Which of these sessions have ended (logout, revocation, account
/// deletion), asked of the identity rules for the open sockets' sessions.
pub type SessionCheck =
    Arc<dyn Fn(Vec<String>) -> BoxFuture<'static, std::collections::HashSet<String>> + Send + Sync>;

struct Inner {
    clock: Arc<dyn Clock>,
    data: Data,
    store: Store,
    settings: RealtimeSettings,
    tails: Mutex<HashMap<(String, String), Arc<Tail>>>,
    sockets: Mutex<HashMap<u64, SocketEntry>>,
    next_socket: AtomicU64,
}

/// The realtime service of this process.
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime").finish_non_exhaustive()
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Realtime {
    /// Watches over `data` and `store`.
    pub fn new(
        data: Data,
        store: Store,
        settings: RealtimeSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                clock,
                data,
                store,
                settings,
                tails: Mutex::new(HashMap::new()),
                sockets: Mutex::new(HashMap::new()),
                next_socket: AtomicU64::new(1),
            }),
        }
    }

    /// The limits.
    pub fn settings(&self) -> &RealtimeSettings {
        &self.inner.settings
    }

    /// Starts the background work: hearing this process's commits (and
    /// publishing them through `publish` for the other instances), the
    /// session checks (`sessions`), and the trimming of old changes.
    pub fn spawn(
        &self,
        sessions: SessionCheck,
        publish: Option<mpsc::UnboundedSender<Vec<CommittedPosition>>>,
    ) {
        let mut feed = self.inner.store.change_feed().subscribe();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match feed.recv().await {
                    Ok(positions) => {
                        me.heard(&positions);
                        if let Some(p) = &publish {
                            let _ = p.send(positions.as_ref().clone());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => me.wake_all(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SESSION_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                me.check_sessions(&sessions).await;
            }
        });
        let me = self.clone();
        tokio::spawn(async move {
            // Deleted accounts' changes are scrubbed within a second or
            // so; old changes trimmed every tenth of the history kept.
            let trim_every = (me.inner.settings.history / 10)
                .clamp(Duration::from_secs(1), Duration::from_secs(600));
            let mut tick = tokio::time::interval(SCRUB_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut trimmed_at: Option<tokio::time::Instant> = None;
            loop {
                tick.tick().await;
                if let Err(e) = me.inner.store.scrub_changes().await {
                    tracing::warn!(error = %e, "deleted accounts' changes could not be scrubbed");
                }
                if trimmed_at.is_some_and(|at| at.elapsed() < trim_every) {
                    continue;
                }
                trimmed_at = Some(tokio::time::Instant::now());
                let history =
                    i64::try_from(me.inner.settings.history.as_millis()).unwrap_or(i64::MAX);
                let before = me.inner.clock.now_ms().saturating_sub(history);
                if let Err(e) = me.inner.store.trim_changes(before).await {
                    tracing::warn!(error = %e, "old changes could not be trimmed");
                }
            }
        });
    }

    /// Commits heard of (this process's, or another instance's): wakes
    /// the tails of those collections.
    pub fn heard(&self, positions: &[CommittedPosition]) {
        let tails = locked(&self.inner.tails);
        for p in positions {
            if let Some(t) = tails.get(&(p.appid.clone(), p.collection.clone())) {
                t.wake.notify_one();
            }
        }
    }

    /// Wakes every tail (notices may have been missed).
    pub fn wake_all(&self) {
        for t in locked(&self.inner.tails).values() {
            t.wake.notify_one();
        }
    }

    async fn check_sessions(&self, ended: &SessionCheck) {
        let sockets: Vec<(String, SocketCloser)> = locked(&self.inner.sockets)
            .values()
            .map(|s| (s.session_id.clone(), s.closer.clone()))
            .collect();
        if sockets.is_empty() {
            return;
        }
        let mut sessions: Vec<String> = sockets.iter().map(|(s, _)| s.clone()).collect();
        sessions.sort();
        sessions.dedup();
        let ended = ended(sessions).await;
        for (session, closer) in sockets {
            if ended.contains(&session) {
                closer.close(CloseReason::SessionEnded);
            }
        }
    }

    /// Opens a socket for `caller` from `address`, within the limits per
    /// user and per address.
    pub fn open(&self, caller: Caller, address: IpAddr) -> Result<Connection> {
        let s = &self.inner.settings;
        let mut sockets = locked(&self.inner.sockets);
        let of_user = sockets
            .values()
            .filter(|e| e.user_id == caller.user_id)
            .count();
        if of_user >= s.sockets_per_user {
            return Err(Error::RateLimited {
                message: format!(
                    "this user already has {} sockets open (realtime.sockets_per_user)",
                    s.sockets_per_user
                ),
                retry_after: Duration::from_secs(1),
            });
        }
        let of_address = sockets.values().filter(|e| e.address == address).count();
        if of_address >= s.sockets_per_address {
            return Err(Error::RateLimited {
                message: format!(
                    "this address already has {} sockets open (realtime.sockets_per_address)",
                    s.sockets_per_address
                ),
                retry_after: Duration::from_secs(1),
            });
        }
        let id = self.inner.next_socket.fetch_add(1, Ordering::Relaxed);
        let (close_tx, closed) = watch::channel(None);
        let closer = SocketCloser(Arc::new(close_tx));
        sockets.insert(
            id,
            SocketEntry {
                user_id: caller.user_id.clone(),
                address,
                session_id: caller.session_id.clone(),
                closer: closer.clone(),
            },
        );
        metrics::gauge!("wxauth_realtime_sockets").set(sockets.len() as f64);
        drop(sockets);
        let (sender, outgoing) = mpsc::channel(s.send_buffer);
        Ok(Connection {
            realtime: self.clone(),
            id,
            caller,
            watches: HashMap::new(),
            sender,
            outgoing,
            closed,
            closer,
        })
    }

    fn tail(&self, appid: &str, collection: &str) -> Arc<Tail> {
        let mut tails = locked(&self.inner.tails);
        let key = (appid.to_owned(), collection.to_owned());
        if let Some(t) = tails.get(&key) {
            return t.clone();
        }
        let t = Tail::new(appid, collection);
        tails.insert(key, t.clone());
        let me = self.clone();
        let tail = t.clone();
        tokio::spawn(async move { me.run_tail(tail).await });
        t
    }

    async fn run_tail(&self, tail: Arc<Tail>) {
        let poll = self.inner.settings.poll;
        loop {
            if let Err(e) = tail.catch_up(&self.inner.store, &self.inner.data).await {
                tracing::warn!(error = %e, collection = %tail.collection, "a watch tail could not read changes; trying again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let _ = tokio::time::timeout(poll, tail.wake.notified()).await;
            // Stop when the last watch is gone (checked under the map's
            // lock, so a watch added meanwhile finds a running tail).
            let mut tails = locked(&self.inner.tails);
            if tail.is_empty() {
                let key = (tail.appid.clone(), tail.collection.clone());
                if tails.get(&key).is_some_and(|t| Arc::ptr_eq(t, &tail)) {
                    tails.remove(&key);
                }
                return;
            }
        }
    }

    /// The collections this process watches (to ask another instance's
    /// notices about, or to poll).
    pub fn watched(&self) -> Vec<(String, String)> {
        locked(&self.inner.tails).keys().cloned().collect()
    }
}

/// One client's socket: its watches and its queue of messages.
pub struct Connection {
    realtime: Realtime,
    id: u64,
    caller: Caller,
    /// The client's watch ids and their collections.
    watches: HashMap<String, (String, String)>,
    sender: mpsc::Sender<Outgoing>,
    /// Messages to send, in order.
    pub outgoing: mpsc::Receiver<Outgoing>,
    /// Set when the server closes the socket.
    pub closed: watch::Receiver<Option<CloseReason>>,
    closer: SocketCloser,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The caller.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    fn queue(&self, message: Outgoing) {
        if self.sender.try_send(message).is_err() {
            self.closer.slow_reader();
        }
    }

    /// Answers a request the client's message could not be read as (the
    /// socket stays usable).
    pub fn refuse(&self, id: Option<String>, error: Error) {
        self.queue(Outgoing::Error { id, error });
    }

    /// Starts a watch: its `init` (or, resuming, what changed since its
    /// cursor), then every change, queued in order.
    pub async fn watch(&mut self, request: WatchRequest) {
        let id = request.id.clone();
        if let Err(error) = self.start(request).await {
            self.queue(Outgoing::Error {
                id: Some(id),
                error,
            });
        }
    }

    async fn start(&mut self, r: WatchRequest) -> Result<()> {
        let rt = self.realtime.inner.clone();
        if r.id.is_empty() || r.id.len() > 64 {
            return Err(Error::InvalidRequest(
                "a watch needs an id of 1 to 64 characters".into(),
            ));
        }
        if self.watches.contains_key(&r.id) {
            return Err(Error::InvalidRequest(format!(
                "this socket already has a watch with id {:?}; unwatch it first",
                r.id
            )));
        }
        if self.watches.len() >= rt.settings.watches_per_socket {
            return Err(Error::LimitExceeded(format!(
                "this socket already has {} watches (realtime.watches_per_socket)",
                rt.settings.watches_per_socket
            )));
        }
        let query = rt.data.watched_query(
            self.caller.owner(),
            &r.collection,
            r.filter.as_deref(),
            r.order_by.as_deref(),
            r.limit.unwrap_or(DEFAULT_LIMIT.min(rt.settings.max_limit)),
            rt.settings.max_limit,
        )?;
        // The position first, then the documents: a change committed in
        // between is in both, and the window's versions skip it.
        let position = rt
            .store
            .change_positions(&[(query.appid.clone(), query.collection.clone())])
            .await?
            .first()
            .map_or(0, |p| p.position);
        let docs = rt.data.watched_documents(&query).await?;
        let bytes: usize = docs.iter().map(|d| d.document.data.len()).sum();
        if bytes > rt.settings.max_init_bytes {
            return Err(Error::LimitExceeded(format!(
                "the watch's first answer would hold {bytes} bytes of documents, more than realtime.max_init_bytes ({}); ask for a smaller limit",
                rt.settings.max_init_bytes
            )));
        }
        let window = window::Window::new(query, docs);
        let resumed = match r.resume_after.as_deref() {
            Some(text) => self.resume(text, &window, position).await?,
            None => None,
        };
        let cursor = Cursor {
            position,
            full: window.is_full(),
            fingerprint: window.query().fingerprint.clone(),
        }
        .to_string();
        match resumed {
            Some(changes) => {
                metrics::counter!("wxauth_realtime_resumes_total").increment(1);
                if !changes.is_empty() {
                    self.queue(Outgoing::Change {
                        id: r.id.clone(),
                        changes,
                        cursor,
                    });
                }
            }
            None => self.queue(Outgoing::Init {
                id: r.id.clone(),
                docs: window.docs().to_vec(),
                cursor,
            }),
        }
        let key = (
            window.query().appid.clone(),
            window.query().collection.clone(),
        );
        let tail = self.realtime.tail(&key.0, &key.1);
        tail.add(
            (self.id, r.id.clone()),
            TailWatch {
                id: r.id.clone(),
                window,
                position,
                sender: self.sender.clone(),
                closer: self.closer.clone(),
            },
        );
        self.watches.insert(r.id, key);
        metrics::gauge!("wxauth_realtime_watches").increment(1.0);
        Ok(())
    }

    /// What changed since a cursor, for a window read now; None when the
    /// client must get a fresh `init` instead (the cursor is another
    /// query's, its window was full, or the log no longer holds it).
    async fn resume(
        &self,
        text: &str,
        window: &window::Window,
        now: i64,
    ) -> Result<Option<Vec<DocChange>>> {
        let rt = &self.realtime.inner;
        let Some(cursor) = Cursor::parse(text) else {
            return Err(Error::InvalidRequest(
                "resume_after is not a cursor this server sent".into(),
            ));
        };
        let q = window.query();
        if cursor.fingerprint != q.fingerprint
            || cursor.full
            || window.is_full()
            || cursor.position > now
        {
            return Ok(None);
        }
        if cursor.position == now {
            return Ok(Some(Vec::new()));
        }
        let missed = rt
            .store
            .changes_after(
                &q.appid,
                &q.collection,
                cursor.position,
                crate::store::CHANGES_PER_READ,
            )
            .await?;
        let complete = missed
            .first()
            .is_some_and(|c| c.position == cursor.position + 1)
            && missed.last().is_some_and(|c| c.position >= now);
        if !complete {
            return Ok(None);
        }
        // Each document touched since: as the window shows it now, or gone.
        let mut touched: Vec<&str> = Vec::new();
        for c in missed.iter().filter(|c| c.position <= now) {
            if !touched.contains(&c.change.doc_id.as_str()) {
                touched.push(&c.change.doc_id);
            }
        }
        let created: Vec<&str> = missed
            .iter()
            .filter(|c| c.position <= now && c.change.op == crate::store::ChangeOp::Create)
            .map(|c| c.change.doc_id.as_str())
            .collect();
        Ok(Some(
            touched
                .into_iter()
                .map(
                    |id| match window.docs().iter().find(|d| d.document.id == id) {
                        Some(d) if created.contains(&id) => DocChange::Add(d.clone()),
                        Some(d) => DocChange::Update(d.clone(), Vec::new(), Vec::new()),
                        None => DocChange::Remove(id.to_owned()),
                    },
                )
                .collect(),
        ))
    }

    /// Ends a watch (an unknown id is an error the client is told).
    pub fn unwatch(&mut self, id: &str) {
        match self.watches.remove(id) {
            Some(key) => {
                self.forget(&key, id);
            }
            None => self.queue(Outgoing::Error {
                id: Some(id.to_owned()),
                error: Error::NotFound(format!("this socket has no watch {id:?}")),
            }),
        }
    }

    fn forget(&self, key: &(String, String), id: &str) {
        let tails = locked(&self.realtime.inner.tails);
        if let Some(t) = tails.get(key) {
            t.remove(&(self.id, id.to_owned()));
            t.wake.notify_one();
        }
        metrics::gauge!("wxauth_realtime_watches").decrement(1.0);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (id, key) in std::mem::take(&mut self.watches) {
            self.forget(&key, &id);
        }
        let mut sockets = locked(&self.realtime.inner.sockets);
        sockets.remove(&self.id);
        metrics::gauge!("wxauth_realtime_sockets").set(sockets.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_what_they_say() {
        let c = Cursor {
            position: 42,
            full: true,
            fingerprint: "0123456789abcdef".into(),
        };
        assert_eq!(Cursor::parse(&c.to_string()), Some(c));
        for bad in ["", "x.0.ab", "-1.0.ab", "4.2.ab", "4.0"] {
            assert_eq!(Cursor::parse(bad), None, "{bad}");
        }
    }
}
