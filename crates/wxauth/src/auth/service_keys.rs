//! The developer's services: service keys, and token introspection
//! (RFC 7662) for services that would rather ask than verify.
//!
//! A service key is presented as `Authorization: Bearer <key>`; only its
//! SHA-256 is configured, compared in constant time against every key.
//! Wrong or missing keys are counted per client address: past
//! `limits.service_key_failures_per_ip_per_minute` (10 by default) the
//! address gets 429 before its key is even looked at, so keys cannot be
//! guessed at speed.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Auth;
use super::rate_limit::limit_key;
use crate::config::ServiceKey;
use crate::error::{Error, Result};
use crate::vocab::ServiceScope;

/// The configured service keys and the guard against guessing them.
pub struct ServiceKeys {
    keys: Vec<ServiceKey>,
    failures: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKeys")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// A service that proved its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceCaller {
    /// The key's id.
    pub id: String,
    /// What the key may do.
    pub scopes: Vec<ServiceScope>,
}

impl ServiceCaller {
    /// Refuses (403 `forbidden`) unless the key has `scope`.
    pub fn require(&self, scope: ServiceScope) -> Result<()> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "service key {} does not have the scope {scope}",
                self.id
            )))
        }
    }
}

impl ServiceKeys {
    /// The keys of the configuration; `failures_per_minute` wrong keys
    /// allowed per address.
    pub fn new(keys: Vec<ServiceKey>, failures_per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(failures_per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            keys,
            failures: RateLimiter::keyed(Quota::per_minute(per_minute)),
        }
    }

    /// Checks `presented` (None: no key sent) from `ip` for `scope`.
    pub fn authenticate(
        &self,
        presented: Option<&str>,
        ip: IpAddr,
        scope: ServiceScope,
    ) -> Result<ServiceCaller> {
        let caller = self.identify(presented, ip)?;
        caller.require(scope)?;
        Ok(caller)
    }

    /// Which key `presented` is (None: no key sent), whatever its scopes.
    pub fn identify(&self, presented: Option<&str>, ip: IpAddr) -> Result<ServiceCaller> {
        let address = limit_key(ip);
        let refuse = |message: &'static str| -> Error {
            if self.failures.check_key(&address).is_err() {
                return Error::RateLimited {
                    message: "too many failed service-key attempts from this address; try again in a minute".into(),
                    retry_after: Duration::from_secs(60),
                };
            }
            Error::Unauthorized(message)
        };
        let Some(presented) = presented else {
            return Err(refuse(
                "this route needs Authorization: Bearer <service key>",
            ));
        };
        let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Every key is compared, in constant time, whatever matches.
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.sha256.ct_eq(&hash)) {
                found = Some(key);
            }
        }
        let key = found.ok_or_else(|| refuse("the service key is not valid"))?;
        Ok(ServiceCaller {
            id: key.id.clone(),
            scopes: key.scopes.clone(),
        })
    }
}

/// RFC 7662's answer. Inactive tokens say nothing else.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Introspection {
    /// Whether the token is a current access token of a live session.
    pub active: bool,
    /// The user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The session id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The appid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The user's openid in that app.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openid: Option<String>,
    /// The user's unionid, when WeChat gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// Expiry, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// The issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Always `access_token` when active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

impl Introspection {
    fn inactive() -> Self {
        Self {
            active: false,
            sub: None,
            sid: None,
            app: None,
            openid: None,
            unionid: None,
            exp: None,
            iat: None,
            iss: None,
            token_type: None,
        }
    }
}

impl Auth {
    /// The service keys.
    pub fn service_keys(&self) -> &ServiceKeys {
        &self.service_keys
    }

    /// What an access token says, if it is current: signature, expiry,
    /// revocation (on every instance) and the user's existence, exactly as
    /// a request carrying it would be checked.
    pub async fn introspect(&self, token: &str) -> Result<Introspection> {
        let claims = match self.current_claims(token).await {
            Ok(claims) => claims,
            Err(Error::Unauthorized(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e),
        };
        let caller = super::Caller {
            user_id: claims.sub.clone(),
            session_id: claims.sid.clone(),
            appid: claims.app.clone(),
        };
        let user = match self.user(&caller).await {
            Ok(user) => user,
            Err(Error::Unauthorized(_)) => return Ok(Introspection::inactive()),
            Err(e) => return Err(e),
        };
        Ok(Introspection {
            active: true,
            sub: Some(claims.sub),
            sid: Some(claims.sid),
            app: Some(claims.app),
            openid: Some(user.openid),
            unionid: user.unionid,
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            token_type: Some("access_token"),
        })
    }
}
