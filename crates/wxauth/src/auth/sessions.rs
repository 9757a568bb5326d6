//! Login, refresh, logout, and recognising the caller of a request.

use crate::vocab::RevokeReason;
use std::collections::HashSet;
use std::net::IpAddr;

use uuid::Uuid;
use wechat_miniapp::{LoginCode, SecretText};

use super::upstream::{self, Call};
use super::{Auth, tokens};
use crate::cache::{Claim, LoginIdentity};
use crate::error::{Error, Result};
use crate::store::{LoggedIn, LoginWrite, NewSession, RefreshOutcome, UserRecord};
use crate::vocab::Caller;

/// A new or refreshed session, as the client receives it.
#[derive(Debug, Clone)]
pub struct Session {
    /// Signed access token.
    pub access_token: SecretText,
    /// Its lifetime, seconds.
    pub expires_in: u64,
    /// Opaque refresh token.
    pub refresh_token: SecretText,
    /// Its lifetime, seconds.
    pub refresh_expires_in: u64,
    /// Whether this login created the user.
    pub new_user: bool,
    /// The user.
    pub user: User,
}

/// A user as the rules hand them out: what clients may see, never a
/// sealed field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// wxauth's id for the user.
    pub id: String,
    /// The app the user belongs to.
    pub appid: String,
    /// WeChat's id for the user within the app.
    pub openid: String,
    /// WeChat's id across the Open Platform account, when known.
    pub unionid: Option<String>,
    /// The profile, as JSON object text.
    pub profile: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub last_login_at: i64,
}

impl From<UserRecord> for User {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            appid: u.appid,
            openid: u.openid,
            unionid: u.unionid,
            profile: u.profile,
            created_at: u.created_at,
            last_login_at: u.last_login_at,
        }
    }
}

/// The caller's user with the bound phone number (`GET /v1/me`).
#[derive(Debug, Clone)]
pub struct Me {
    /// The user.
    pub user: User,
    /// The bound phone number, opened.
    pub phone: Option<super::PhoneNumber>,
}

/// The longest login code accepted. WeChat's are 32 characters of
/// `[0-9A-Za-z]`; the check is looser (128, plus `-` and `_`) in case the
/// shape changes, and still refuses garbage before it costs a WeChat call.
const MAX_CODE_LEN: usize = 128;

fn well_formed_code(code: &str) -> bool {
    (1..=MAX_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Auth {
    pub(super) fn resolve_app(&self, appid: Option<&str>) -> Result<String> {
        match appid {
            Some(a) if self.apps.contains_key(a) => Ok(a.to_owned()),
            Some(a) => Err(Error::UnknownApp(format!(
                "appid {a:?} is not configured on this server"
            ))),
            None => self.default_appid.clone().ok_or_else(|| {
                Error::InvalidRequest("appid is required: this server serves several apps".into())
            }),
        }
    }

    fn refresh_expiry(&self, now: i64) -> i64 {
        now + i64::try_from(self.refresh_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    fn session_for(
        &self,
        user: UserRecord,
        session_id: &str,
        refresh: tokens::RefreshToken,
        new_user: bool,
    ) -> Result<Session> {
        Ok(Session {
            access_token: self
                .issuer
                .issue_access(&user.id, session_id, &user.appid)?
                .into(),
            expires_in: self.issuer.access_ttl_secs(),
            refresh_token: refresh.token,
            refresh_expires_in: self.refresh_ttl.as_secs(),
            new_user,
            user: user.into(),
        })
    }

    /// Logs a user in with a `wx.login` code. The same code again within the
    /// replay window (`limits.login_code_replay_secs`: a retry) gets the same
    /// user and `new_user`, and a session of its own, instead of WeChat's
    /// "code been used"; later it is refused as WeChat refuses it.
    pub async fn login(
        &self,
        code: &str,
        appid: Option<&str>,
        client_ip: std::net::IpAddr,
    ) -> Result<Session> {
        let code = code.trim();
        if !well_formed_code(code) {
            return Err(Error::InvalidRequest(format!(
                "`code` must be 1 to {MAX_CODE_LEN} letters, digits, '-' or '_' (what wx.login() gives)"
            )));
        }
        let appid = self.resolve_app(appid)?;
        let _slot = self.login_limits.admit(client_ip, &appid).await?;
        let first_session = std::sync::Mutex::new(None);
        let now = self.now_ms();
        let outcome = self
            .login_codes
            .once(&appid, code, now, || async {
                // Across instances: one exchange per code, the others wait
                // for its outcome (Redis down: this process only).
                let claimed = match &self.shared_codes {
                    None => false,
                    Some(shared) => {
                        match shared.claim(&appid, code, self.upstream_deadline).await {
                            Claim::Won => true,
                            Claim::Done(identity) => return Ok(identity),
                            Claim::StillPending => {
                                return Err(upstream::unavailable(
                                    "another instance is still exchanging this login code",
                                ));
                            }
                            Claim::Unavailable => false,
                        }
                    }
                };
                let exchanged = self.exchange_and_store(&appid, code).await;
                let session = match (exchanged, &self.shared_codes) {
                    (Ok(session), _) => session,
                    (Err(e), Some(shared)) if claimed => {
                        shared.abandon(&appid, code).await;
                        return Err(e);
                    }
                    (Err(e), _) => return Err(e),
                };
                let identity = LoginIdentity {
                    user_id: session.user.id.clone(),
                    new_user: session.new_user,
                };
                if let (true, Some(shared)) = (claimed, &self.shared_codes) {
                    shared.finish(&appid, code, &identity).await;
                }
                *first_session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
                Ok(identity)
            })
            .await;
        if matches!(outcome, Err(Error::InvalidCode(_))) {
            self.login_limits.record_failure(client_ip).await;
        }
        let (identity, ran_first) = outcome?;
        if ran_first
            && let Some(session) = first_session
                .into_inner()
                .unwrap_or_else(|p| p.into_inner())
        {
            return Ok(session);
        }
        // A repeat of a code already exchanged: a new session for that user.
        tracing::info!(
            appid,
            "login code seen again within the replay window; answering like the first time"
        );
        let user = self
            .store
            .user(&identity.user_id)
            .await?
            .ok_or_else(|| Error::internal("user of a de-duplicated login code vanished"))?;
        let session_id = Uuid::now_v7().to_string();
        let refresh = self.issuer.new_refresh();
        let now = self.now_ms();
        self.store
            .new_session(NewSession {
                user_id: user.id.clone(),
                appid: appid.clone(),
                session_id: session_id.clone(),
                refresh_hash: refresh.hash.clone(),
                refresh_expires_at: self.refresh_expiry(now),
                now,
            })
            .await?;
        self.session_for(user, &session_id, refresh, identity.new_user)
    }

    async fn exchange_and_store(&self, appid: &str, code: &str) -> Result<Session> {
        let secret = self.apps.get(appid).ok_or_else(|| {
            Error::UnknownApp(format!("appid {appid:?} is not configured on this server"))
        })?;
        let code = LoginCode::new(code);
        let exchange = self.wechat.code2session(appid, secret, &code);
        let wx = tokio::time::timeout(self.upstream_deadline, exchange)
            .await
            .map_err(|_| upstream::unavailable("WeChat did not answer in time"))?
            .map_err(|e| upstream::map(e, Call::Login, appid))?;
        let now = self.now_ms();
        let session_key_enc = self.sealer.seal(
            wx.session_key.expose().as_bytes(),
            &session_key_aad(appid, &wx.openid),
        )?;
        let session_id = Uuid::now_v7().to_string();
        let refresh = self.issuer.new_refresh();
        let LoggedIn { user, new_user } = self
            .store
            .login(LoginWrite {
                new_user_id: Uuid::now_v7().to_string(),
                appid: appid.to_owned(),
                openid: wx.openid,
                unionid: wx.unionid,
                session_key_enc,
                session_id: session_id.clone(),
                refresh_hash: refresh.hash.clone(),
                refresh_expires_at: self.refresh_expiry(now),
                now,
            })
            .await?;
        metrics::counter!("wxauth_logins_total", "new_user" => if new_user { "true" } else { "false" }).increment(1);
        self.session_for(user, &session_id, refresh, new_user)
    }

    /// Exchanges a refresh token for a new pair. The old token stops working;
    /// presenting it again revokes the whole session.
    ///
    /// Only a token the store knows reaches the group-commit writer: one of
    /// the wrong shape is refused at once, one of the right shape after an
    /// indexed read, and each refusal counts against the address's failure
    /// budget (shared with refused login codes), so a flood of made-up
    /// tokens neither delays logins and writes nor goes on for long.
    pub async fn refresh(&self, refresh_token: &str, client_ip: IpAddr) -> Result<Session> {
        let invalid = || {
            Error::Unauthorized("the refresh token is invalid, expired or revoked; log in again")
        };
        self.login_limits.check_penalty(client_ip).await?;
        if !tokens::looks_like_refresh(refresh_token) {
            self.login_limits.record_failure(client_ip).await;
            return Err(invalid());
        }
        let hash = tokens::refresh_hash(refresh_token);
        if !self.store.refresh_token_exists(&hash).await? {
            metrics::counter!("wxauth_refresh_refused_total", "why" => "unknown").increment(1);
            self.login_limits.record_failure(client_ip).await;
            return Err(invalid());
        }
        let now = self.now_ms();
        let next = self.issuer.new_refresh();
        let outcome = self
            .store
            .rotate_refresh(hash, next.hash.clone(), self.refresh_expiry(now), now)
            .await?;
        match outcome {
            RefreshOutcome::Rotated {
                session_id,
                user_id,
                ..
            } => {
                let user = self
                    .store
                    .user(&user_id)
                    .await?
                    .ok_or_else(|| Error::internal("session without user"))?;
                self.session_for(user, &session_id, next, false)
            }
            RefreshOutcome::Reused { session_id } => {
                tracing::warn!(
                    session_id,
                    "a rotated refresh token was presented again; the session is revoked"
                );
                metrics::counter!("wxauth_refresh_reuse_total").increment(1);
                self.login_limits.record_failure(client_ip).await;
                self.revocations
                    .revoke(&session_id, now + self.access_ttl_ms(), now)
                    .await?;
                Err(invalid())
            }
            RefreshOutcome::Invalid => {
                self.login_limits.record_failure(client_ip).await;
                Err(invalid())
            }
        }
    }

    pub(super) fn access_ttl_ms(&self) -> i64 {
        i64::try_from(self.access_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Ends the caller's session: its access and refresh tokens stop working.
    pub async fn logout(&self, caller: &Caller) -> Result<()> {
        let now = self.now_ms();
        let until = now + self.access_ttl_ms();
        // Here first: the access token must stop working at once, even if
        // the database write is slow. Then durably, then the other instances.
        self.revocations.remember(&caller.session_id, until, now);
        self.store
            .revoke_session(&caller.session_id, RevokeReason::Logout, now)
            .await?;
        self.revocations
            .revoke(&caller.session_id, until, now)
            .await?;
        Ok(())
    }

    /// Who a bearer token belongs to. No database round trip: the signature
    /// proves the claims, the revocation cache says whether it was revoked.
    pub async fn authenticate(&self, bearer: &str) -> Result<Caller> {
        let claims = self.current_claims(bearer).await?;
        Ok(Caller {
            user_id: claims.sub,
            session_id: claims.sid,
            appid: claims.app,
        })
    }

    /// A WebSocket's caller (`GET /v1/watch`), and when its access token
    /// expires (Unix ms): the socket is closed then.
    pub async fn authenticate_socket(&self, bearer: &str) -> Result<(Caller, i64)> {
        let claims = self.current_claims(bearer).await?;
        let expires = claims.exp.saturating_mul(1000);
        Ok((
            Caller {
                user_id: claims.sub,
                session_id: claims.sid,
                appid: claims.app,
            },
            expires,
        ))
    }

    /// Which of these sessions, whose tokens were accepted, have ended
    /// since (logout, revocation, the account's deletion), on any
    /// instance: what keeps open sockets' sessions honest without checking
    /// their tokens again. While revocations may not be arriving (Redis
    /// down), the database is asked, a few hundred sessions a query.
    pub async fn sessions_ended(&self, ids: &[String]) -> Result<HashSet<String>> {
        let now = self.now_ms();
        let mut ended = HashSet::new();
        for id in ids {
            if self.revocations.is_revoked(id, now).await? {
                ended.insert(id.clone());
            }
        }
        if !self.revocations.complete() {
            let rest: Vec<String> = ids
                .iter()
                .filter(|id| !ended.contains(*id))
                .cloned()
                .collect();
            let live = self.store.live_sessions(&rest).await?;
            ended.extend(rest.into_iter().filter(|id| !live.contains(id)));
        }
        Ok(ended)
    }

    /// The claims of a current access token: signed by us, unexpired, its
    /// session not revoked (on any instance), its app still served.
    pub(crate) async fn current_claims(&self, bearer: &str) -> Result<tokens::AccessClaims> {
        let claims = self.issuer.verify_access(bearer)?;
        let ended = || {
            Error::Unauthorized(
                "the session was ended (logout or refresh-token reuse); log in again",
            )
        };
        let now = self.now_ms();
        if self.revocations.is_revoked(&claims.sid, now).await? {
            return Err(ended());
        }
        // While revocations from other instances may not be arriving (Redis
        // down), the database says: a logged-out token is never accepted.
        if !self.revocations.complete() {
            metrics::counter!("wxauth_revocation_db_checks_total").increment(1);
            // No row: the session's user was deleted (tokens are only
            // issued after their session is committed).
            let revoked_at = match self.store.session(&claims.sid).await? {
                Some(s) => s.revoked_at,
                None => Some(now),
            };
            if let Some(at) = revoked_at {
                self.revocations
                    .remember(&claims.sid, at + self.access_ttl_ms(), now);
                return Err(ended());
            }
        }
        if !self.apps.contains_key(&claims.app) {
            return Err(Error::Unauthorized(
                "the access token is for an app this server no longer serves",
            ));
        }
        Ok(claims)
    }

    /// The caller's user.
    pub async fn user(&self, caller: &Caller) -> Result<User> {
        self.user_record(caller).await.map(User::from)
    }

    /// The caller's user with the bound phone number, opened.
    pub async fn me(&self, caller: &Caller) -> Result<Me> {
        let record = self.user_record(caller).await?;
        let phone = self.phone_of(&record)?;
        Ok(Me {
            user: record.into(),
            phone,
        })
    }

    /// The caller's user row (sealed fields included, for the rules here).
    pub(super) async fn user_record(&self, caller: &Caller) -> Result<UserRecord> {
        self.store
            .user(&caller.user_id)
            .await?
            .filter(|u| u.appid == caller.appid)
            .ok_or(Error::Unauthorized(
                "the user of this token no longer exists",
            ))
    }
}

/// Associated data binding a sealed session_key to its user row.
pub(crate) fn session_key_aad(appid: &str, openid: &str) -> Vec<u8> {
    format!("session_key\0{appid}\0{openid}").into_bytes()
}
