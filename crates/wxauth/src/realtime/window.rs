//! One watch's window: the documents its query shows now (at most its
//! `limit`, in its order), and how each change to a document moves them.
//!
//! The window knows the version of each document it holds, so a change it
//! has already seen (the `init` query ran after it was committed) changes
//! nothing. A window that is full may have matching documents outside it
//! that it does not know: when one of its own leaves, or moves to its
//! end, the query runs again (`Refill`) and the difference is sent.

use serde_json::Value;

use crate::data::{ChangedDocument, WatchedDocument, WatchedQuery};
use crate::store::{ChangeOp, LoggedChange};
use crate::vocab::query::{DocumentFields, cmp_listed};

/// What a change did to a window, as the client is told it.
#[derive(Debug, Clone)]
pub enum DocChange {
    /// The document entered the window.
    Add(WatchedDocument),
    /// A document in the window changed (top-level fields set, removed;
    /// both empty after a refill, which does not know them).
    Update(WatchedDocument, Vec<String>, Vec<String>),
    /// The document left the window (deleted, stopped matching, or pushed
    /// out past the limit).
    Remove(String),
}

/// The outcome of one change.
#[derive(Debug, Default)]
pub struct Applied {
    /// What to send, in order.
    pub changes: Vec<DocChange>,
    /// The window may now lack documents it should show: run the query
    /// again and apply the answer with [`Window::refill`].
    pub refill: bool,
}

/// The documents a watch shows.
#[derive(Debug)]
pub struct Window {
    query: WatchedQuery,
    docs: Vec<WatchedDocument>,
}

impl Window {
    /// A window over a query's first answer.
    pub fn new(query: WatchedQuery, docs: Vec<WatchedDocument>) -> Self {
        let mut w = Self { query, docs };
        w.sort();
        w
    }

    /// The query.
    pub fn query(&self) -> &WatchedQuery {
        &self.query
    }

    /// The documents, in order.
    pub fn docs(&self) -> &[WatchedDocument] {
        &self.docs
    }

    /// Whether the window holds `limit` documents (others may match).
    pub fn is_full(&self) -> bool {
        self.docs.len() >= self.query.limit as usize
    }

    fn sort(&mut self) {
        let order = &self.query.order;
        self.docs.sort_by(|a, b| {
            cmp_listed(order, (&a.keys, &a.document.id), (&b.keys, &b.document.id))
        });
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.docs.iter().position(|d| d.document.id == id)
    }

    /// Applies one change of the watch's collection, its data read once
    /// for every watch (`parsed`: the change's data as JSON, None for a
    /// delete or data that is not JSON).
    pub fn apply(&mut self, logged: &LoggedChange, parsed: Option<&Value>) -> Applied {
        let c = &logged.change;
        let mut out = Applied::default();
        if !self.query.may_concern(&c.appid, &c.user_id) {
            // Another user's document of a private collection (or a
            // deleted account's, whose sockets are closed).
            return out;
        }
        let held = self.position(&c.doc_id);
        let full = self.is_full();
        if let Some(at) = held
            && c.op != ChangeOp::Delete
            && self.docs[at].document.version >= c.version
        {
            // Seen already (the window was read after this change).
            return out;
        }
        let data = match (&c.op, &c.data, parsed) {
            (ChangeOp::Delete, _, _) | (_, None, _) | (_, _, None) => None,
            (_, Some(text), Some(value)) => Some((value, text)),
        };
        let admitted = data.as_ref().and_then(|(value, text)| {
            let doc = ChangedDocument {
                appid: &c.appid,
                fields: DocumentFields {
                    id: &c.doc_id,
                    owner: &c.user_id,
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                },
                data: value,
            };
            self.query
                .admits(&doc)
                .then(|| WatchedDocument::changed(&self.query, doc, c.version, text))
        });
        match (held, admitted) {
            (Some(at), None) => {
                self.docs.remove(at);
                out.changes.push(DocChange::Remove(c.doc_id.clone()));
                out.refill = full;
            }
            (Some(at), Some(doc)) => {
                self.docs[at] = doc.clone();
                self.sort();
                out.changes
                    .push(DocChange::Update(doc, c.updated.clone(), c.removed.clone()));
                // Moved to the end of a full window: a document outside
                // may now come before it.
                out.refill = full && self.docs.last().is_some_and(|d| d.document.id == c.doc_id);
            }
            (None, Some(doc)) => {
                if !full {
                    self.docs.push(doc.clone());
                    self.sort();
                    out.changes.push(DocChange::Add(doc));
                } else if self.docs.last().is_some_and(|last| {
                    cmp_listed(
                        &self.query.order,
                        (&doc.keys, &doc.document.id),
                        (&last.keys, &last.document.id),
                    )
                    .is_lt()
                }) {
                    // Comes before the last: it enters, the last leaves.
                    if let Some(last) = self.docs.pop() {
                        out.changes
                            .push(DocChange::Remove(last.document.id.clone()));
                    }
                    self.docs.push(doc.clone());
                    self.sort();
                    out.changes.push(DocChange::Add(doc));
                }
            }
            (None, None) => {}
        }
        out
    }

    /// Replaces the window with the query's fresh answer; what changed.
    pub fn refill(&mut self, fresh: Vec<WatchedDocument>) -> Vec<DocChange> {
        let mut out = Vec::new();
        for old in &self.docs {
            if !fresh.iter().any(|d| d.document.id == old.document.id) {
                out.push(DocChange::Remove(old.document.id.clone()));
            }
        }
        for new in &fresh {
            match self.position(&new.document.id) {
                None => out.push(DocChange::Add(new.clone())),
                Some(at) if self.docs[at].document.version < new.document.version => {
                    out.push(DocChange::Update(new.clone(), Vec::new(), Vec::new()));
                }
                Some(_) => {}
            }
        }
        // Keep the newer of the two where the fresh answer is older than a
        // change already applied.
        let mut merged = fresh;
        for d in &mut merged {
            if let Some(at) = self.position(&d.document.id)
                && self.docs[at].document.version > d.document.version
            {
                *d = self.docs[at].clone();
            }
        }
        self.docs = merged;
        self.sort();
        out
    }
}
