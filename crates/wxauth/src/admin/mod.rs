//! The operator's rules, in one room: find, show, revoke, export and
//! delete users, read and write any user's documents, the audit log, and
//! who may do what ([`scopes`]). The admin API (`http/routes/admin.rs`)
//! and the CLI (`cli/admin.rs`) both act through [`Admin`], so an
//! operator gets the same answer and leaves the same audit entry whichever
//! they use. A user's own rights over their account (`GET /v1/me/export`,
//! `DELETE /v1/me`) are the same operations, and come through here too.
//!
//! The room decides; `auth` (identity, sessions) and `data` (documents)
//! hold the records it works on, and it turns them into the views the
//! operator sees ([`views`]), so no handler and no command sees a store row.

pub mod audit;
pub mod export;
pub mod scopes;
pub mod views;

use serde_json::Value;

pub use audit::AuditRecord;
pub use export::{ExportStream, ExportedDocument, UserExport};
pub use views::{AccountView, AuditView, SessionInfo, UserSummary};

use crate::auth::{Auth, FindBy};
use crate::data::{Created, Data, Document, IfMatch, ListRequest, Whose};
use crate::error::Result;
use crate::files::Files;
use crate::vocab::{Actor, AuditQuery, Target};

/// The confirmation `DELETE /v1/me` needs, word for word.
pub const DELETE_CONFIRMATION: &str = "delete my account";

/// The operator's rules over the identity and data rooms. Borrowed for a
/// request or a command: it holds nothing of its own.
#[derive(Debug, Clone, Copy)]
pub struct Admin<'a> {
    auth: &'a Auth,
    data: &'a Data,
    files: &'a Files,
}

impl<'a> Admin<'a> {
    /// The rules over `auth`, `data` and `files`.
    pub fn new(auth: &'a Auth, data: &'a Data, files: &'a Files) -> Self {
        Self { auth, data, files }
    }

    /// The app `appid` names (the default app when None), or the error
    /// saying it is not served.
    pub fn app(&self, appid: Option<&str>) -> Result<String> {
        self.auth.app(appid)
    }

    /// Users of `appid` found `by` (for a unionid with no app: every app).
    pub async fn find_users(&self, appid: Option<&str>, by: &FindBy) -> Result<Vec<UserSummary>> {
        let found = self.auth.find_users(appid, by).await?;
        Ok(found.into_iter().map(UserSummary::from).collect())
    }

    /// The account of `user_id`, as operators see it.
    pub async fn account(&self, user_id: &str) -> Result<AccountView> {
        let account = self.auth.account(user_id).await?;
        let active_sessions = account.active_sessions();
        let documents = self.data.document_count(user_id).await?;
        let user = UserSummary::from(account.me);
        Ok(AccountView {
            last_login_at: user.last_login_at.clone(),
            user,
            active_sessions,
            documents,
            sessions: account
                .sessions
                .into_iter()
                .map(SessionInfo::from)
                .collect(),
        })
    }

    /// Ends every open session of `user_id` on every instance; how many
    /// were open.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize> {
        self.auth.revoke_user(user_id).await
    }

    /// Starts the export of everything held about `user_id`.
    pub async fn export(&self, user_id: &str) -> Result<ExportStream> {
        export::export_stream(self.auth, self.data, self.files, user_id).await
    }

    /// Deletes `user_id`'s account and everything held about them, in one
    /// commit with its audit entry (which keeps only that it happened, by
    /// whom, and the user id).
    pub async fn delete_user(&self, actor: Actor, action: &str, user_id: &str) -> Result<()> {
        let record = AuditRecord::new(actor, action, Some(Target::User(user_id.to_owned())))
            .status(204)
            .into_entry(self.auth.now());
        // The files' rows go with the account in its commit; their bytes
        // after it (a file uploaded meanwhile is left to the sweep).
        let files = self.files.ids_of(user_id).await?;
        self.auth.delete_user(user_id, record).await?;
        self.files.forget(&files).await;
        Ok(())
    }

    /// Appends `record` to the audit log (durable before this returns).
    pub async fn record(&self, record: AuditRecord) -> Result<()> {
        self.auth.audit(record.into_entry(self.auth.now())).await
    }

    /// Audit entries, newest first.
    pub async fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditView>> {
        let entries = self.auth.audit_entries(query).await?;
        Ok(entries.into_iter().map(AuditView::from).collect())
    }

    /// A page of `whose` documents in `collection`.
    pub async fn list_documents(
        &self,
        collection: &str,
        whose: &Whose,
        request: &ListRequest<'_>,
    ) -> Result<(Vec<Document>, Option<String>)> {
        self.data.admin_list(collection, whose, request).await
    }

    /// Any document, with its owner.
    pub async fn document(&self, collection: &str, id: &str) -> Result<Document> {
        self.data.admin_get(collection, id).await
    }

    /// A document for `owner`, whatever the collection's access rule.
    pub async fn create_document(
        &self,
        owner: &str,
        collection: &str,
        body: Value,
    ) -> Result<Created> {
        self.data.admin_create(owner, collection, body).await
    }

    /// Replaces any document.
    pub async fn replace_document(
        &self,
        collection: &str,
        id: &str,
        body: Value,
        if_match: Option<IfMatch>,
    ) -> Result<Document> {
        self.data
            .admin_replace(collection, id, body, if_match)
            .await
    }

    /// A page of user `user_id`'s files, newest first.
    pub async fn files(
        &self,
        user_id: &str,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<(Vec<crate::files::FileView>, Option<String>)> {
        self.files.list(user_id, limit, cursor).await
    }

    /// Deletes one of user `user_id`'s files (its URLs answer 404 at once).
    pub async fn delete_file(&self, user_id: &str, file_id: &str) -> Result<()> {
        self.files.delete(user_id, file_id).await
    }

    /// Deletes any document; its owner's id.
    pub async fn delete_document(&self, collection: &str, id: &str) -> Result<String> {
        self.data.admin_delete(collection, id).await
    }
}
