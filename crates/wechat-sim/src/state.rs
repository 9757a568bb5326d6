//! The simulated WeChat: apps, users, codes and tokens, and the rules WeChat
//! applies to them. No HTTP here: handlers translate requests into these calls
//! and their results into WeChat-shaped answers.

use std::collections::HashMap;

use serde_json::{Value, json};
use wechat_miniapp::SessionKey;
use wechat_miniapp::crypto::verify_login_state_signature;

use crate::api::WxError;
use crate::ids;

/// A login or phone code lives this long (wx.login doc: five minutes).
pub const CODE_TTL_MS: i64 = wechat_miniapp::LOGIN_CODE_LIFETIME.as_millis() as i64;
/// Access tokens live this long.
pub const TOKEN_TTL_MS: i64 = 7200 * 1000;
/// Overlap during which a replaced token keeps working, and how early
/// stable_token starts handing out the next token.
pub const TOKEN_OVERLAP_MS: i64 = 5 * 60 * 1000;
/// stable_token force refreshes closer together than this do nothing.
pub const FORCE_REFRESH_MIN_INTERVAL_MS: i64 = 30 * 1000;
/// stable_token force refreshes allowed per app per day.
pub const FORCE_REFRESH_PER_DAY: u32 = 20;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The simulator's options.
#[derive(Debug, Clone, Default)]
pub struct SimConfig {
    /// Registered apps: appid → secret.
    pub apps: HashMap<String, String>,
    /// Accept any appid with any secret.
    pub open: bool,
    /// Accept a `js_code` that was never issued, as a login of the user named
    /// by the code itself (for load tests that cannot ask for codes first).
    pub accept_any_code: bool,
}

/// Why a phone-side (`/sim/v1/…`) request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The appid is not registered (and the simulator is not `--open`).
    #[error(
        "unknown appid {0:?}: register it with --app APPID:SECRET or start the simulator with --open"
    )]
    UnknownApp(String),
    /// A field is missing or malformed.
    #[error("{0}")]
    InvalidRequest(String),
}

#[derive(Debug)]
struct User {
    session_key: SessionKey,
    /// When the user last opened the mini program (a `wx.login`), for
    /// the content checks' "visited within two hours" rule.
    seen_ms: i64,
}

/// How long after opening the mini program a user's texts can be checked
/// (msgSecCheck's rule, docs/wechat-platform.md §2a).
pub const VISIT_WINDOW_MS: i64 = 2 * 3600 * 1000;

/// The longest text msg_sec_check takes, in characters.
pub const MAX_CHECKED_CHARS: usize = 2500;

/// What the simulated content checks look for: a text holding one of
/// `risky` is risky, one of `review` needs review (case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRules {
    /// Words that make a text risky.
    #[serde(default)]
    pub risky: Vec<String>,
    /// Words that make a text need review.
    #[serde(default)]
    pub review: Vec<String>,
    /// How long after `media_check_async` its result is pushed, ms.
    #[serde(default = "default_media_delay_ms")]
    pub media_delay_ms: u64,
}

fn default_media_delay_ms() -> u64 {
    200
}

/// Bytes that make an image risky in the simulated media check.
pub const RISKY_IMAGE_MARK: &[u8] = b"RISKY-TEST-IMAGE";
/// Bytes that make an image need review.
pub const REVIEW_IMAGE_MARK: &[u8] = b"REVIEW-TEST-IMAGE";

/// A media check asked for and not yet run: (appid, openid, trace id, URL).
pub(crate) type MediaCheck = (String, String, String, String);

impl Default for ContentRules {
    fn default() -> Self {
        Self {
            risky: vec!["risky-test-word".into(), "违规测试".into()],
            review: vec!["review-test-word".into()],
            media_delay_ms: default_media_delay_ms(),
        }
    }
}

/// The label a risky text gets (21000: other).
pub const RISKY_LABEL: i64 = 21000;

#[derive(Debug)]
struct LoginCodeRec {
    appid: String,
    user: String,
    issued_ms: i64,
    used: bool,
}

#[derive(Debug)]
struct PhoneCodeRec {
    appid: String,
    user: String,
    country_code: String,
    pure_phone: String,
    issued_ms: i64,
    used: bool,
}

#[derive(Debug)]
struct TokenRec {
    appid: String,
    expires_ms: i64,
    /// When a newer token replaced this one, the time it stops working.
    superseded_ms: Option<i64>,
}

#[derive(Debug, Default)]
struct StableState {
    current: Option<String>,
    last_force_ms: Option<i64>,
    force_day: i64,
    force_count: u32,
}

/// All of the simulator's mutable state. Methods take `now` so one clock
/// decides every expiry.
#[derive(Debug, Default)]
pub struct SimState {
    config: SimConfig,
    users: HashMap<(String, String), User>,
    openids: HashMap<String, (String, String)>,
    /// Users given their ids (migrated users): (appid, user) → (openid,
    /// unionid). Everyone else's ids derive from their name.
    given_ids: HashMap<(String, String), (String, Option<String>)>,
    login_codes: HashMap<String, LoginCodeRec>,
    phone_codes: HashMap<String, PhoneCodeRec>,
    tokens: HashMap<String, TokenRec>,
    classic_current: HashMap<String, String>,
    stable: HashMap<String, StableState>,
    issued_since_prune: u32,
    content_rules: ContentRules,
    /// Sends each (appid, openid, template) consent still allows.
    consents: HashMap<(String, String, String), u32>,
    /// Subscribe messages sent and not yet reported by a push:
    /// (appid, openid, template, msgid).
    pub(crate) sent: Vec<(String, String, String, String)>,
    next_msgid: u64,
    /// Media checks accepted and not yet started.
    pub(crate) media_checks: Vec<MediaCheck>,
}

type WxResult = Result<Value, WxError>;

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str).filter(|v| !v.is_empty())
}

impl SimState {
    /// Starts with the given apps and options.
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    fn app_known(&self, appid: &str) -> bool {
        self.config.open || self.config.apps.contains_key(appid)
    }

    /// Checks an appid and secret as WeChat does: unknown appid 40013, wrong
    /// secret 40125.
    fn check_app(&self, appid: &str, secret: &str) -> Result<(), WxError> {
        if self.config.open {
            return Ok(());
        }
        match self.config.apps.get(appid) {
            None => Err(WxError(40013)),
            Some(expected) if expected != secret => Err(WxError(40125)),
            Some(_) => Ok(()),
        }
    }

    /// Refuses an appid the simulator does not serve.
    pub(crate) fn require_known(&self, appid: &str) -> Result<(), SimError> {
        self.require_app(appid)
    }

    /// The openid of a user named `user` (created if new), or the user
    /// whose openid is `openid` (who must have logged in once).
    pub(crate) fn openid_for(
        &mut self,
        appid: &str,
        user: Option<&str>,
        openid: Option<&str>,
    ) -> Result<String, SimError> {
        self.require_app(appid)?;
        match (user, openid) {
            (Some(user), None) => {
                Self::validate_user(user)?;
                self.user_entry(appid, user);
                Ok(self.openid_of(appid, user))
            }
            (None, Some(openid)) => match self.openids.get(openid) {
                Some((a, _)) if a == appid => Ok(openid.to_owned()),
                _ => Err(SimError::InvalidRequest(format!(
                    "no user of {appid} has openid {openid:?}"
                ))),
            },
            _ => Err(SimError::InvalidRequest(
                "give either user or openid".into(),
            )),
        }
    }

    fn require_app(&self, appid: &str) -> Result<(), SimError> {
        if appid.is_empty() {
            return Err(SimError::InvalidRequest("appid is required".into()));
        }
        if self.app_known(appid) {
            Ok(())
        } else {
            Err(SimError::UnknownApp(appid.to_owned()))
        }
    }

    /// The user's openid: given (a migrated user), else derived.
    fn openid_of(&self, appid: &str, user: &str) -> String {
        match self.given_ids.get(&(appid.to_owned(), user.to_owned())) {
            Some((openid, _)) => openid.clone(),
            None => ids::openid(appid, user),
        }
    }

    /// The user's unionid: given (None when a migrated user has none, as
    /// for an app bound to no Open Platform account), else derived.
    fn unionid_of(&self, appid: &str, user: &str) -> Option<String> {
        match self.given_ids.get(&(appid.to_owned(), user.to_owned())) {
            Some((_, unionid)) => unionid.clone(),
            None => Some(ids::unionid(user)),
        }
    }

    /// The user (by name) whose openid in `appid` is `openid`: the one who
    /// has it, or a new one given it (and `unionid`).
    pub fn user_with_openid(
        &mut self,
        appid: &str,
        openid: &str,
        unionid: Option<&str>,
    ) -> Result<String, SimError> {
        self.require_app(appid)?;
        let well_formed = |id: &str| {
            (1..=128).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !well_formed(openid) || unionid.is_some_and(|u| !well_formed(u)) {
            return Err(SimError::InvalidRequest(
                "openid and unionid are 1 to 128 of [A-Za-z0-9_-]".into(),
            ));
        }
        if let Some((known_app, user)) = self.openids.get(openid).cloned()
            && known_app == appid
        {
            if let (Some(u), Some(given)) = (
                unionid,
                self.given_ids.get_mut(&(appid.to_owned(), user.clone())),
            ) {
                given.1 = Some(u.to_owned());
            }
            return Ok(user);
        }
        let user = format!("openid:{openid}");
        self.given_ids.insert(
            (appid.to_owned(), user.clone()),
            (openid.to_owned(), unionid.map(str::to_owned)),
        );
        self.user_entry(appid, &user);
        Ok(user)
    }

    fn user_entry(&mut self, appid: &str, user: &str) -> &mut User {
        let key = (appid.to_owned(), user.to_owned());
        if !self.users.contains_key(&key) {
            let openid = self.openid_of(appid, user);
            self.openids.insert(openid, key.clone());
        }
        self.users.entry(key).or_insert_with(|| User {
            session_key: SessionKey::new(ids::session_key()),
            seen_ms: i64::MIN,
        })
    }

    fn prune(&mut self, now: i64) {
        self.issued_since_prune += 1;
        if self.issued_since_prune < 1024 {
            return;
        }
        self.issued_since_prune = 0;
        // Keep codes a while past expiry so a late reuse still reads as 40029
        // for "expired" rather than as unknown (both are 40029 anyway).
        let horizon = now - 2 * CODE_TTL_MS;
        self.login_codes.retain(|_, c| c.issued_ms > horizon);
        self.phone_codes.retain(|_, c| c.issued_ms > horizon);
        let token_horizon = now - DAY_MS;
        self.tokens.retain(|_, t| t.expires_ms > token_horizon);
    }

    fn validate_user(user: &str) -> Result<(), SimError> {
        if user.is_empty() || user.len() > 128 {
            return Err(SimError::InvalidRequest(
                "user must be 1 to 128 bytes".into(),
            ));
        }
        Ok(())
    }

    // ----- phone side -----

    /// `wx.login()`: a new code for this user, and (as on a phone) a new session_key.
    pub fn issue_login_code(
        &mut self,
        appid: &str,
        user: &str,
        now: i64,
    ) -> Result<String, SimError> {
        self.require_app(appid)?;
        Self::validate_user(user)?;
        let entry = self.user_entry(appid, user);
        entry.session_key = SessionKey::new(ids::session_key());
        entry.seen_ms = now;
        let code = ids::login_code();
        self.login_codes.insert(
            code.clone(),
            LoginCodeRec {
                appid: appid.to_owned(),
                user: user.to_owned(),
                issued_ms: now,
                used: false,
            },
        );
        self.prune(now);
        Ok(code)
    }

    /// The phone-number button: a one-time code for this user's number.
    /// `phone` is `13800138000` (mainland) or `+CC NUMBER`; by default each
    /// user has a number derived from their name.
    pub fn issue_phone_code(
        &mut self,
        appid: &str,
        user: &str,
        phone: Option<&str>,
        now: i64,
    ) -> Result<String, SimError> {
        self.require_app(appid)?;
        Self::validate_user(user)?;
        let (country_code, pure_phone) = match phone {
            None => ("86".to_owned(), ids::default_phone(user)),
            Some(p) => parse_phone(p)?,
        };
        self.user_entry(appid, user);
        let code = ids::phone_code();
        self.phone_codes.insert(
            code.clone(),
            PhoneCodeRec {
                appid: appid.to_owned(),
                user: user.to_owned(),
                country_code,
                pure_phone,
                issued_ms: now,
                used: false,
            },
        );
        self.prune(now);
        Ok(code)
    }

    /// What `wx.getUserInfo` and friends give: `data` plus a watermark,
    /// encrypted with the user's current session_key.
    pub fn encrypt_for(
        &mut self,
        appid: &str,
        user: &str,
        data: Value,
        now: i64,
    ) -> Result<Value, SimError> {
        self.require_app(appid)?;
        Self::validate_user(user)?;
        let Value::Object(map) = data else {
            return Err(SimError::InvalidRequest(
                "data must be a JSON object".into(),
            ));
        };
        let raw_data = Value::Object(map.clone()).to_string();
        let mut full = map;
        full.insert(
            "watermark".into(),
            json!({"timestamp": now / 1000, "appid": appid}),
        );
        let key = self.user_entry(appid, user).session_key.clone();
        let iv: [u8; 16] = rand::random();
        let plaintext = Value::Object(full).to_string();
        let encrypted = wechat_miniapp::crypto::encrypt(&key, &iv, plaintext.as_bytes())
            .map_err(|e| SimError::InvalidRequest(e.to_string()))?;
        use base64::Engine;
        Ok(json!({
            "encrypted_data": encrypted,
            "iv": base64::engine::general_purpose::STANDARD.encode(iv),
            "raw_data": raw_data,
            "signature": wechat_miniapp::crypto::raw_data_signature(&raw_data, &key),
        }))
    }

    /// Test introspection: the user's ids and current session_key.
    pub fn user_info(&mut self, appid: &str, user: &str) -> Result<Value, SimError> {
        self.require_app(appid)?;
        Self::validate_user(user)?;
        let key = self.user_entry(appid, user).session_key.expose().to_owned();
        Ok(json!({
            "openid": self.openid_of(appid, user),
            "unionid": self.unionid_of(appid, user),
            "session_key": key,
        }))
    }

    // ----- WeChat's server API -----

    /// `GET /sns/jscode2session`.
    pub fn jscode2session(&mut self, q: &HashMap<String, String>, now: i64) -> WxResult {
        let appid = param(q, "appid").ok_or(WxError(41002))?;
        let secret = param(q, "secret").ok_or(WxError(41004))?;
        let code = param(q, "js_code").ok_or(WxError(41008))?;
        // UNCONFIRMED: whether a missing grant_type is refused. Tutorials
        // always send it; a wrong value is refused as on cgi-bin/token.
        if param(q, "grant_type").is_some_and(|g| g != "authorization_code") {
            return Err(WxError(40002));
        }
        self.check_app(appid, secret)?;
        if !self.login_codes.contains_key(code) && self.config.accept_any_code {
            self.user_entry(appid, code);
            self.login_codes.insert(
                code.to_owned(),
                LoginCodeRec {
                    appid: appid.to_owned(),
                    user: code.to_owned(),
                    issued_ms: now,
                    used: false,
                },
            );
            self.prune(now);
        }
        let rec = self.login_codes.get_mut(code).ok_or(WxError(40029))?;
        // A code from another app is 40029, as WeChat answers when front and
        // back end use different appids. An expired code is also 40029
        // (UNCONFIRMED, most likely); reuse within its lifetime is 40163.
        if rec.appid != appid || now - rec.issued_ms > CODE_TTL_MS {
            return Err(WxError(40029));
        }
        if rec.used {
            return Err(WxError(40163));
        }
        rec.used = true;
        let user = rec.user.clone();
        let entry = self.user_entry(appid, &user);
        entry.seen_ms = entry.seen_ms.max(now);
        let key = entry.session_key.expose().to_owned();
        // Current WeChat leaves errcode out of success answers, and unionid
        // out when the app is bound to no Open Platform account.
        let mut answer = json!({
            "session_key": key,
            "openid": self.openid_of(appid, &user),
        });
        if let Some(unionid) = self.unionid_of(appid, &user) {
            answer["unionid"] = json!(unionid);
        }
        Ok(answer)
    }

    fn new_token(&mut self, appid: &str, now: i64) -> String {
        let token = ids::access_token();
        self.tokens.insert(
            token.clone(),
            TokenRec {
                appid: appid.to_owned(),
                expires_ms: now + TOKEN_TTL_MS,
                superseded_ms: None,
            },
        );
        self.prune(now);
        token
    }

    fn supersede(&mut self, token: &str, at: i64) {
        if let Some(rec) = self.tokens.get_mut(token) {
            rec.superseded_ms = Some(rec.superseded_ms.map_or(at, |s| s.min(at)));
        }
    }

    fn token_answer(&self, token: &str, now: i64) -> Value {
        let expires_ms = self.tokens.get(token).map_or(now, |t| t.expires_ms);
        json!({"access_token": token, "expires_in": ((expires_ms - now) / 1000).max(0)})
    }

    /// `GET /cgi-bin/token`: a new token every call; the previous one keeps
    /// working for 5 more minutes.
    pub fn classic_token(&mut self, q: &HashMap<String, String>, now: i64) -> WxResult {
        if param(q, "grant_type") != Some("client_credential") {
            return Err(WxError(40002));
        }
        let appid = param(q, "appid").ok_or(WxError(41002))?;
        let secret = param(q, "secret").ok_or(WxError(41004))?;
        self.check_app(appid, secret)?;
        if let Some(previous) = self.classic_current.get(appid).cloned() {
            self.supersede(&previous, now + TOKEN_OVERLAP_MS);
        }
        let token = self.new_token(appid, now);
        self.classic_current.insert(appid.to_owned(), token.clone());
        Ok(self.token_answer(&token, now))
    }

    /// `POST /cgi-bin/stable_token` with a JSON body. A body that is not JSON
    /// reads as empty, which WeChat reports as 41002 `appid missing`.
    pub fn stable_token(&mut self, body: &[u8], now: i64) -> WxResult {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let field = |name: &str| {
            body.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let appid = field("appid").ok_or(WxError(41002))?.to_owned();
        let secret = field("secret").ok_or(WxError(41004))?;
        if field("grant_type") != Some("client_credential") {
            return Err(WxError(40002));
        }
        let force = body
            .get("force_refresh")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.check_app(&appid, secret)?;

        let state = self.stable.entry(appid.clone()).or_default();
        let current = state.current.clone().filter(|t| {
            self.tokens
                .get(t)
                .is_some_and(|r| r.expires_ms > now && r.superseded_ms.is_none_or(|s| s > now))
        });
        if force {
            let day = now.div_euclid(DAY_MS);
            if state.force_day != day {
                state.force_day = day;
                state.force_count = 0;
            }
            let too_soon = state
                .last_force_ms
                .is_some_and(|t| now - t < FORCE_REFRESH_MIN_INTERVAL_MS);
            if let (true, Some(current)) = (too_soon, &current) {
                // Within 30 s of the last force refresh: no refresh happens.
                return Ok(self.token_answer(current, now));
            }
            if state.force_count >= FORCE_REFRESH_PER_DAY {
                return Err(WxError(45009));
            }
            state.force_count += 1;
            state.last_force_ms = Some(now);
            if let Some(old) = &current {
                self.supersede(old, now);
            }
        } else if let Some(current) = &current {
            let expires = self.tokens.get(current).map_or(now, |r| r.expires_ms);
            if expires - now > TOKEN_OVERLAP_MS {
                return Ok(self.token_answer(current, now));
            }
            // In its last 5 minutes: hand out the next one; the old one
            // simply runs out.
        }
        let token = self.new_token(&appid, now);
        self.stable.entry(appid).or_default().current = Some(token.clone());
        Ok(self.token_answer(&token, now))
    }

    /// The appid an access token belongs to, or WeChat's answer to a bad one:
    /// missing 41001, unknown or replaced 40001, expired 42001.
    fn token_app(&self, token: Option<&str>, now: i64) -> Result<String, WxError> {
        let token = token.filter(|t| !t.is_empty()).ok_or(WxError(41001))?;
        let rec = self.tokens.get(token).ok_or(WxError(40001))?;
        if rec.superseded_ms.is_some_and(|s| s <= now) {
            return Err(WxError(40001));
        }
        if rec.expires_ms <= now {
            return Err(WxError(42001));
        }
        Ok(rec.appid.clone())
    }

    /// The app of the call's access token and its JSON body, as WeChat's
    /// POST APIs read them: a bad token as [`SimState::token_app`], an
    /// empty body 44002, a body that is not JSON 47001.
    fn token_and_json(
        &self,
        q: &HashMap<String, String>,
        body: &[u8],
        now: i64,
    ) -> Result<(String, Value), WxError> {
        let appid = self.token_app(param(q, "access_token"), now)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(WxError(44002));
        }
        let body = serde_json::from_slice(body).map_err(|_| WxError(47001))?;
        Ok((appid, body))
    }

    /// Shared checks of checksession and resetusersessionkey; returns the
    /// user's key in the map.
    fn signed_user(
        &mut self,
        q: &HashMap<String, String>,
        now: i64,
    ) -> Result<(String, String), WxError> {
        let appid = self.token_app(param(q, "access_token"), now)?;
        let openid = param(q, "openid").ok_or(WxError(40003))?;
        if param(q, "sig_method") != Some("hmac_sha256") {
            return Err(WxError(87008));
        }
        let signature = param(q, "signature").ok_or(WxError(87009))?;
        let key = self
            .openids
            .get(openid)
            .filter(|(a, _)| *a == appid)
            .cloned()
            .ok_or(WxError(40003))?;
        let user = self.users.get(&key).ok_or(WxError(40003))?;
        // The docs sign the empty string with the key's base64 text. Hex case
        // is ignored (UNCONFIRMED whether WeChat accepts upper case).
        if !verify_login_state_signature(&user.session_key, b"", signature) {
            return Err(WxError(87009));
        }
        Ok(key)
    }

    /// `GET /wxa/checksession`.
    pub fn checksession(&mut self, q: &HashMap<String, String>, now: i64) -> WxResult {
        self.signed_user(q, now)?;
        Ok(json!({"errcode": 0, "errmsg": "ok"}))
    }

    /// `GET /wxa/resetusersessionkey`: a new key; the old one stops working.
    pub fn resetusersessionkey(&mut self, q: &HashMap<String, String>, now: i64) -> WxResult {
        let (appid, user) = self.signed_user(q, now)?;
        let fresh = ids::session_key();
        self.user_entry(&appid, &user).session_key = SessionKey::new(fresh.clone());
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "openid": self.openid_of(&appid, &user),
            "session_key": fresh,
        }))
    }

    /// `POST /wxa/business/getuserphonenumber?access_token=…` with `{"code", "openid"?}`.
    pub fn getuserphonenumber(
        &mut self,
        q: &HashMap<String, String>,
        body: &[u8],
        now: i64,
    ) -> WxResult {
        let appid = self.token_app(param(q, "access_token"), now)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(WxError(44002));
        }
        // A form-encoded or otherwise non-JSON body is 47001 (community
        // report). A JSON body without `code` is treated the same
        // (UNCONFIRMED).
        let body: Value = serde_json::from_slice(body).map_err(|_| WxError(47001))?;
        let code = body
            .get("code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or(WxError(47001))?;
        let (owner, issued_ms, used) = {
            let rec = self.phone_codes.get(code).ok_or(WxError(40029))?;
            (
                (rec.appid.clone(), rec.user.clone()),
                rec.issued_ms,
                rec.used,
            )
        };
        // UNCONFIRMED: the errcode for a reused phone code; 40029 as for an
        // invalid one. A code of another app is 40013 (documented).
        if now - issued_ms > CODE_TTL_MS || used {
            return Err(WxError(40029));
        }
        if owner.0 != appid {
            return Err(WxError(40013));
        }
        if let Some(openid) = body.get("openid").and_then(Value::as_str) {
            // UNCONFIRMED: the errcode for an openid that does not own the code.
            if openid != self.openid_of(&owner.0, &owner.1) {
                return Err(WxError(40013));
            }
        }
        let rec = self.phone_codes.get_mut(code).ok_or(WxError(40029))?;
        rec.used = true;
        let phone_number = if rec.country_code == "86" {
            rec.pure_phone.clone()
        } else {
            // UNCONFIRMED: the exact format of non-mainland numbers.
            format!("+{}{}", rec.country_code, rec.pure_phone)
        };
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                "phoneNumber": phone_number,
                "purePhoneNumber": rec.pure_phone,
                "countryCode": rec.country_code,
                "watermark": {"timestamp": rec.issued_ms / 1000, "appid": rec.appid},
            }
        }))
    }
}

impl SimState {
    /// The content checks' word lists.
    pub fn content_rules(&self) -> &ContentRules {
        &self.content_rules
    }

    /// Replaces the content checks' word lists.
    pub fn set_content_rules(&mut self, rules: ContentRules) -> Result<(), SimError> {
        if rules
            .risky
            .iter()
            .chain(&rules.review)
            .any(|w| w.trim().is_empty())
        {
            return Err(SimError::InvalidRequest("words must not be empty".into()));
        }
        self.content_rules = rules;
        Ok(())
    }

    /// The verdict on `text`: (suggest, label).
    pub(crate) fn judge(&self, text: &str) -> (&'static str, i64) {
        let lower = text.to_lowercase();
        let holds = |words: &[String]| words.iter().any(|w| lower.contains(&w.to_lowercase()));
        if holds(&self.content_rules.risky) {
            ("risky", RISKY_LABEL)
        } else if holds(&self.content_rules.review) {
            ("review", RISKY_LABEL)
        } else {
            ("pass", 100)
        }
    }

    /// The user of `appid` with `openid`, who must have opened the mini
    /// program within two hours: 40003 for an unknown openid, 43104 for
    /// another app's, 61010 for a visit too long ago.
    fn visiting_user(&self, appid: &str, openid: &str, now: i64) -> Result<(), WxError> {
        let (owner_app, user) = self.openids.get(openid).ok_or(WxError(40003))?;
        if owner_app != appid {
            return Err(WxError(43104));
        }
        let seen = self
            .users
            .get(&(owner_app.clone(), user.clone()))
            .map_or(i64::MIN, |u| u.seen_ms);
        if now.saturating_sub(seen) > VISIT_WINDOW_MS {
            return Err(WxError(61010));
        }
        Ok(())
    }

    /// `POST /wxa/media_check_async?access_token=…` (version 2): a
    /// trace id now; the verdict is pushed later (`wxa_media_check`).
    pub fn media_check_async(
        &mut self,
        q: &HashMap<String, String>,
        body: &[u8],
        now: i64,
    ) -> WxResult {
        let (appid, body) = self.token_and_json(q, body, now)?;
        let url = body
            .get("media_url")
            .and_then(Value::as_str)
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or(WxError(47001))?
            .to_owned();
        // 1 audio, 2 image; anything else is malformed (UNCONFIRMED errcode).
        match body.get("media_type").and_then(Value::as_i64) {
            Some(1 | 2) => {}
            _ => return Err(WxError(47001)),
        }
        if body.get("version").and_then(Value::as_i64) != Some(2) {
            return Err(WxError(47001));
        }
        let scene = body.get("scene").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=4).contains(&scene) {
            return Err(WxError(40129));
        }
        let openid = body
            .get("openid")
            .and_then(Value::as_str)
            .ok_or(WxError(40003))?
            .to_owned();
        self.visiting_user(&appid, &openid, now)?;
        let trace_id = ids::trace_id();
        self.media_checks
            .push((appid, openid, trace_id.clone(), url));
        Ok(json!({"errcode": 0, "errmsg": "ok", "trace_id": trace_id}))
    }

    /// The verdict on an image's bytes: (suggest, label as WeChat pushes
    /// it, a string).
    pub(crate) fn judge_image(bytes: &[u8]) -> (&'static str, &'static str) {
        let holds = |mark: &[u8]| bytes.windows(mark.len()).any(|w| w == mark);
        if holds(RISKY_IMAGE_MARK) {
            ("risky", "20002")
        } else if holds(REVIEW_IMAGE_MARK) {
            ("review", "21000")
        } else {
            ("pass", "100")
        }
    }

    /// `POST /wxa/msg_sec_check?access_token=…`. Version 2 (`version: 2`)
    /// answers errcode 0 with `result.suggest` whatever the verdict;
    /// version 1 (no `version`) answers 87014 for a risky text.
    pub fn msg_sec_check(
        &mut self,
        q: &HashMap<String, String>,
        body: &[u8],
        now: i64,
    ) -> WxResult {
        let (appid, body) = self.token_and_json(q, body, now)?;
        let content = body
            .get("content")
            .and_then(Value::as_str)
            .ok_or(WxError(47001))?;
        // UNCONFIRMED: the errcode for a text over the limit.
        if content.chars().count() > MAX_CHECKED_CHARS {
            return Err(WxError(47001));
        }
        match body.get("version").and_then(Value::as_i64) {
            None | Some(1) => {
                let (suggest, _) = self.judge(content);
                return if suggest == "risky" {
                    Err(WxError(87014))
                } else {
                    Ok(json!({"errcode": 0, "errmsg": "ok"}))
                };
            }
            Some(2) => {}
            Some(_) => return Err(WxError(47001)),
        }
        let scene = body.get("scene").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=4).contains(&scene) {
            return Err(WxError(40129));
        }
        let openid = body
            .get("openid")
            .and_then(Value::as_str)
            .ok_or(WxError(40003))?;
        self.visiting_user(&appid, openid, now)?;
        let mut text = content.to_owned();
        for extra in ["title", "nickname", "signature"] {
            if let Some(v) = body.get(extra).and_then(Value::as_str) {
                text.push('\n');
                text.push_str(v);
            }
        }
        let (suggest, label) = self.judge(&text);
        Ok(json!({
            "errcode": 0,
            "errmsg": "ok",
            "trace_id": ids::trace_id(),
            "result": {"suggest": suggest, "label": label},
            "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": if suggest == "pass" { 0 } else { 90 }}],
        }))
    }
}

/// A template id as WeChat's look: letters, digits, `_` and `-`.
fn valid_template(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl SimState {
    /// A user's answer to a template in the consent popup (or, in the
    /// settings page): each accept allows one more send, a reject none.
    pub(crate) fn consent(
        &mut self,
        appid: &str,
        openid: &str,
        template_id: &str,
        accept: bool,
    ) -> Result<(), SimError> {
        if !valid_template(template_id) {
            return Err(SimError::InvalidRequest(
                "template_id must be 1 to 128 of [A-Za-z0-9_-]".into(),
            ));
        }
        let key = (appid.to_owned(), openid.to_owned(), template_id.to_owned());
        let left = self.consents.entry(key).or_insert(0);
        *left = if accept { left.saturating_add(1) } else { 0 };
        Ok(())
    }

    /// `POST /cgi-bin/message/subscribe/send?access_token=…`: spends one
    /// consent of the user for the template, or 43101.
    pub fn subscribe_send(
        &mut self,
        q: &HashMap<String, String>,
        body: &[u8],
        now: i64,
    ) -> WxResult {
        let (appid, body) = self.token_and_json(q, body, now)?;
        let text = |k: &str| body.get(k).and_then(Value::as_str);
        let touser = text("touser").ok_or(WxError(40003))?;
        match self.openids.get(touser) {
            Some((a, _)) if *a == appid => {}
            _ => return Err(WxError(40003)),
        }
        let template_id = text("template_id").filter(|t| valid_template(t));
        let template_id = template_id.ok_or(WxError(40037))?.to_owned();
        // Each field is {"value": text}: anything else is 47003.
        let data_ok = body
            .get("data")
            .and_then(Value::as_object)
            .is_some_and(|d| {
                !d.is_empty()
                    && d.values()
                        .all(|v| v.get("value").is_some_and(Value::is_string))
            });
        if !data_ok {
            return Err(WxError(47003));
        }
        // UNCONFIRMED: WeChat checks the page against the published
        // version's pages; a page with spaces or over 1,024 bytes stands
        // for one that does not exist.
        if text("page").is_some_and(|p| p.len() > 1024 || p.contains(char::is_whitespace)) {
            return Err(WxError(41030));
        }
        if text("miniprogram_state").is_some_and(|s| !["developer", "trial", "formal"].contains(&s))
        {
            return Err(WxError(47001));
        }
        let key = (appid.clone(), touser.to_owned(), template_id.clone());
        match self.consents.get_mut(&key) {
            Some(left) if *left > 0 => *left -= 1,
            _ => return Err(WxError(43101)),
        }
        self.next_msgid += 1;
        // WeChat's msgids are large numbers (past 2^53).
        let msgid = (1_700_000_000_000_000_000u64 + self.next_msgid).to_string();
        self.sent
            .push((appid, touser.to_owned(), template_id, msgid.clone()));
        Ok(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid.parse::<u64>().unwrap_or(0)}))
    }

    /// Sends `user` of `appid` may still receive of `template_id`.
    pub fn consents_left(&self, appid: &str, openid: &str, template_id: &str) -> u32 {
        self.consents
            .get(&(appid.to_owned(), openid.to_owned(), template_id.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

fn parse_phone(phone: &str) -> Result<(String, String), SimError> {
    let bad = || SimError::InvalidRequest("phone must be digits, optionally \"+CC NUMBER\"".into());
    let phone = phone.trim();
    let (cc, pure) = match phone.strip_prefix('+') {
        Some(rest) => rest.split_once([' ', '-']).ok_or_else(bad)?,
        None => ("86", phone),
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(cc, 4) || !digits(pure, 15) {
        return Err(bad());
    }
    Ok((cc.to_owned(), pure.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SimState {
        SimState::new(SimConfig {
            apps: [
                ("wxa".to_owned(), "sa".to_owned()),
                ("wxb".to_owned(), "sb".to_owned()),
            ]
            .into(),
            ..SimConfig::default()
        })
    }

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn stable_token_same_until_last_five_minutes() {
        let mut s = state();
        let body = br#"{"grant_type":"client_credential","appid":"wxa","secret":"sa"}"#;
        let a = s.stable_token(body, 0).unwrap();
        let b = s.stable_token(body, 1000).unwrap();
        assert_eq!(a["access_token"], b["access_token"]);
        assert_eq!(b["expires_in"], 7199);
        let near_end = TOKEN_TTL_MS - TOKEN_OVERLAP_MS + 1;
        let c = s.stable_token(body, near_end).unwrap();
        assert_ne!(a["access_token"], c["access_token"]);
        // The old token still works until its own expiry.
        let old = a["access_token"].as_str().unwrap();
        assert!(s.token_app(Some(old), near_end).is_ok());
        assert_eq!(s.token_app(Some(old), TOKEN_TTL_MS), Err(WxError(42001)));
    }

    #[test]
    fn stable_token_force_refresh_rules() {
        let mut s = state();
        let normal = br#"{"grant_type":"client_credential","appid":"wxa","secret":"sa"}"#;
        let force = br#"{"grant_type":"client_credential","appid":"wxa","secret":"sa","force_refresh":true}"#;
        let a = s.stable_token(normal, 0).unwrap();
        let b = s.stable_token(force, 1000).unwrap();
        assert_ne!(a["access_token"], b["access_token"]);
        assert_eq!(
            s.token_app(a["access_token"].as_str(), 1001),
            Err(WxError(40001))
        );
        // Within 30 s: no refresh.
        let c = s.stable_token(force, 2000).unwrap();
        assert_eq!(b["access_token"], c["access_token"]);
        let mut t = 1000;
        for _ in 1..FORCE_REFRESH_PER_DAY {
            t += FORCE_REFRESH_MIN_INTERVAL_MS;
            assert!(s.stable_token(force, t).is_ok());
        }
        t += FORCE_REFRESH_MIN_INTERVAL_MS;
        assert_eq!(s.stable_token(force, t), Err(WxError(45009)));
    }

    #[test]
    fn classic_token_supersedes_after_overlap() {
        let mut s = state();
        let p = q(&[
            ("grant_type", "client_credential"),
            ("appid", "wxa"),
            ("secret", "sa"),
        ]);
        let a = s.classic_token(&p, 0).unwrap();
        let b = s.classic_token(&p, 10).unwrap();
        assert_ne!(a["access_token"], b["access_token"]);
        assert!(
            s.token_app(a["access_token"].as_str(), TOKEN_OVERLAP_MS)
                .is_ok()
        );
        assert_eq!(
            s.token_app(a["access_token"].as_str(), TOKEN_OVERLAP_MS + 10),
            Err(WxError(40001))
        );
        assert_eq!(
            s.classic_token(&q(&[("appid", "wxa")]), 0),
            Err(WxError(40002))
        );
    }

    #[test]
    fn phone_parsing() {
        assert_eq!(
            parse_phone("13800138000").unwrap(),
            ("86".into(), "13800138000".into())
        );
        assert_eq!(
            parse_phone("+1 4155550123").unwrap(),
            ("1".into(), "4155550123".into())
        );
        assert!(parse_phone("+14155550123").is_err());
        assert!(parse_phone("abc").is_err());
    }
}
