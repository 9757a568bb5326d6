//! What operators may do to accounts, and users to their own: find a user,
//! see their sessions, end them all, delete the account, re-seal every
//! encrypted column under the current key, and keep the audit log.

use super::phone::{phone_aad, phone_tag_purpose};
use super::sessions::session_key_aad;
use super::{Auth, Me};
use crate::error::{Error, Result};
use crate::store::{
    AuditEntry, AuditQuery, NewAuditEntry, Resealed, SealedRow, SessionSummary, UserRecord,
};

/// How to find a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindBy {
    /// WeChat's per-app id.
    Openid(String),
    /// WeChat's cross-app id.
    Unionid(String),
    /// The bound phone number without its country code (`pure_phone_number`).
    Phone(String),
}

impl FindBy {
    /// The query key's name (what the audit log records: never the value).
    pub fn key(&self) -> &'static str {
        match self {
            FindBy::Openid(_) => "openid",
            FindBy::Unionid(_) => "unionid",
            FindBy::Phone(_) => "phone",
        }
    }
}

/// A user as an operator sees them: the account, its phone, its sessions.
#[derive(Debug, Clone)]
pub struct Account {
    /// The user and their phone.
    pub me: Me,
    /// Every session, newest first (never a token).
    pub sessions: Vec<SessionSummary>,
}

impl Account {
    /// Sessions that can still be refreshed.
    pub fn active_sessions(&self) -> usize {
        self.sessions.iter().filter(|s| s.active).count()
    }
}

/// How far a re-seal got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealProgress {
    /// Users looked at so far.
    pub scanned: u64,
    /// Users in all (when the re-seal started).
    pub total: u64,
    /// Rows re-sealed so far.
    pub resealed: u64,
    /// Rows that changed while being re-sealed (a login): left for the
    /// next run, which finds them sealed with the current key or re-seals them.
    pub skipped: u64,
}

/// Users re-sealed per transaction.
const RESEAL_BATCH: i64 = 500;

impl Auth {
    /// Appends an audit entry (durable before this returns).
    pub async fn audit(&self, entry: NewAuditEntry) -> Result<()> {
        self.store.audit(entry).await
    }

    /// Audit entries, newest first.
    pub async fn audit_entries(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        self.store.audit_entries(query).await
    }

    /// The app `appid` names (the default app when None), or the error
    /// saying it is not served.
    pub fn app(&self, appid: Option<&str>) -> Result<String> {
        self.resolve_app(appid)
    }

    /// The session_key column of a user imported from another platform:
    /// an empty key sealed as a real one is (bound to the app and openid),
    /// so re-sealing treats the row like any other. Their first login
    /// replaces it; nothing is decrypted with it before then (decrypting
    /// needs a session, which only a login gives).
    pub fn sealed_absent_session_key(&self, appid: &str, openid: &str) -> Result<Vec<u8>> {
        self.sealer.seal(b"", &session_key_aad(appid, openid))
    }

    /// The service's clock, Unix milliseconds (for audit entries).
    pub fn now(&self) -> i64 {
        self.now_ms()
    }

    /// Users of `appid` found `by`. The app may be left out when one is
    /// configured (for a unionid: every app).
    pub async fn find_users(&self, appid: Option<&str>, by: &FindBy) -> Result<Vec<Me>> {
        let appid = match (appid, by) {
            (None, FindBy::Unionid(_)) => None,
            (appid, _) => Some(self.resolve_app(appid)?),
        };
        let lookup = match by {
            FindBy::Openid(v) => crate::store::UserLookup::Openid(check_id(v, "openid")?),
            FindBy::Unionid(v) => crate::store::UserLookup::Unionid(check_id(v, "unionid")?),
            FindBy::Phone(v) => {
                let phone = check_phone(v)?;
                let purpose = phone_tag_purpose(appid.as_deref().unwrap_or_default());
                crate::store::UserLookup::PhoneTags(self.sealer.lookup_tags(&purpose, &phone))
            }
        };
        let found = self.store.find_users(appid.as_deref(), &lookup).await?;
        found.into_iter().map(|u| self.me_of(u)).collect()
    }

    fn me_of(&self, record: UserRecord) -> Result<Me> {
        let phone = self.phone_of(&record)?;
        Ok(Me {
            user: record.into(),
            phone,
        })
    }

    async fn existing_user(&self, user_id: &str) -> Result<UserRecord> {
        self.store
            .user_uncached(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user with id {user_id:?}")))
    }

    /// A user with their phone and sessions.
    pub async fn account(&self, user_id: &str) -> Result<Account> {
        let record = self.existing_user(user_id).await?;
        let sessions = self.store.user_sessions(user_id, self.now_ms()).await?;
        Ok(Account {
            me: self.me_of(record)?,
            sessions,
        })
    }

    /// Ends every open session of the user, on every instance at once (as
    /// a logout does); how many were open.
    pub async fn revoke_user(&self, user_id: &str) -> Result<usize> {
        self.existing_user(user_id).await?;
        let now = self.now_ms();
        let ended = self.store.revoke_user_sessions(user_id, now).await?;
        self.forget_sessions(&ended, now).await?;
        Ok(ended.len())
    }

    async fn forget_sessions(&self, sessions: &[String], now: i64) -> Result<()> {
        let until = now + self.access_ttl_ms();
        for id in sessions {
            self.revocations.remember(id, until, now);
        }
        for id in sessions {
            self.revocations.revoke(id, until, now).await?;
        }
        Ok(())
    }

    /// Deletes the user and everything keyed by them (sessions, refresh
    /// tokens, documents, counts, idempotency records, sealed secrets), in
    /// one commit with `audit`. Their access tokens stop working on every
    /// instance at once; a later login with the same openid is a new user.
    pub async fn delete_user(&self, user_id: &str, audit: NewAuditEntry) -> Result<()> {
        let now = self.now_ms();
        let deleted = self
            .store
            .delete_user(user_id, now, now - self.access_ttl_ms(), audit)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user with id {user_id:?}")))?;
        self.forget_sessions(&deleted, now).await
    }

    /// Re-seals every session_key and phone number (and re-tags phones)
    /// with the current encryption key. Safe to interrupt and run again:
    /// each batch commits on its own, and rows already sealed with the
    /// current key are passed over. `progress` hears after every batch.
    pub async fn reseal(&self, mut progress: impl FnMut(ResealProgress)) -> Result<ResealProgress> {
        let mut state = ResealProgress {
            total: u64::try_from(self.store.user_count().await?).unwrap_or(0),
            ..ResealProgress::default()
        };
        progress(state);
        let mut after = String::new();
        loop {
            let rows = self.store.sealed_rows(&after, RESEAL_BATCH).await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.id.clone();
            state.scanned += rows.len() as u64;
            let mut batch = Vec::new();
            for row in rows {
                if let Some(resealed) = self.reseal_row(row)? {
                    batch.push(resealed);
                }
            }
            let wanted = batch.len() as u64;
            if wanted > 0 {
                let written = self.store.write_resealed(batch).await?;
                state.resealed += written;
                state.skipped += wanted - written.min(wanted);
            }
            progress(state);
        }
        Ok(state)
    }

    /// The row sealed and tagged with the current key, or None if it is already.
    fn reseal_row(&self, row: SealedRow) -> Result<Option<Resealed>> {
        let current = self.sealer.current_key_id();
        let sealed_by = super::seal::Sealer::key_id_of_sealed;
        let phone_current = match (&row.phone_enc, &row.phone_lookup) {
            (None, _) => true,
            (Some(p), Some(tag)) => {
                sealed_by(p) == Some(current)
                    && super::seal::Sealer::key_id_of_tag(tag) == Some(current)
            }
            (Some(_), None) => false,
        };
        if sealed_by(&row.session_key_enc) == Some(current) && phone_current {
            return Ok(None);
        }
        let key_aad = session_key_aad(&row.appid, &row.openid);
        let session_key = self.sealer.open(&row.session_key_enc, &key_aad)?;
        let session_key_enc = self.sealer.seal(&session_key, &key_aad)?;
        let (phone_enc, phone_lookup) = match &row.phone_enc {
            None => (None, None),
            Some(sealed) => {
                let aad = phone_aad(&row.id);
                let plain = self.sealer.open(sealed, &aad)?;
                let phone: super::PhoneNumber =
                    serde_json::from_slice(&plain).map_err(Error::internal)?;
                let tag = self
                    .sealer
                    .lookup_tag(&phone_tag_purpose(&row.appid), &phone.pure_phone_number);
                (Some(self.sealer.seal(&plain, &aad)?), Some(tag))
            }
        };
        Ok(Some(Resealed {
            read: row,
            session_key_enc,
            phone_enc,
            phone_lookup,
        }))
    }
}

fn check_id(value: &str, name: &str) -> Result<String> {
    let value = value.trim();
    if value.is_empty() || value.len() > 128 {
        return Err(Error::InvalidRequest(format!(
            "{name} must be 1 to 128 characters"
        )));
    }
    Ok(value.to_owned())
}

fn check_phone(value: &str) -> Result<String> {
    let digits: String = value.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if digits.is_empty() || digits.len() > 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::InvalidRequest(
            "phone must be the number's digits without its country code (purePhoneNumber), e.g. 13800138000".into(),
        ));
    }
    Ok(digits)
}
