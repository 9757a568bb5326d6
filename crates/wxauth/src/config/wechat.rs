//! `[wechat]`: how to reach WeChat (or the simulator).

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, bad};

/// How to reach WeChat.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WechatConfig {
    /// WeChat's API root (or a simulator's).
    pub base_url: String,
    /// Time allowed for one call, in milliseconds.
    pub timeout_ms: u64,
    /// Time allowed to connect, in milliseconds.
    pub connect_timeout_ms: u64,
    /// `stable` (stable_token, safe with several instances) or `classic` (cgi-bin/token).
    pub token_source: TokenSourceName,
}

impl Default for WechatConfig {
    fn default() -> Self {
        Self {
            base_url: wechat_miniapp::WECHAT_API_BASE.into(),
            timeout_ms: 5000,
            connect_timeout_ms: 5000,
            token_source: TokenSourceName::Stable,
        }
    }
}

/// Which endpoint gives WeChat access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSourceName {
    /// `cgi-bin/stable_token`: the same token for every caller until its
    /// last minutes, safe with several instances.
    Stable,
    /// `cgi-bin/token`: each call replaces the previous token.
    Classic,
}

impl WechatConfig {
    /// The WeChat client's settings and the token endpoint, checked.
    pub(super) fn check(
        &self,
    ) -> Result<(wechat_miniapp::ClientConfig, wechat_miniapp::TokenSource), ConfigError> {
        if self.timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err(bad(
                "wechat.timeout_ms and wechat.connect_timeout_ms must be positive",
            ));
        }
        let token_source = match self.token_source {
            TokenSourceName::Stable => wechat_miniapp::TokenSource::Stable,
            TokenSourceName::Classic => wechat_miniapp::TokenSource::Classic,
        };
        let client = wechat_miniapp::ClientConfig {
            base_url: self.base_url.clone(),
            timeout: Duration::from_millis(self.timeout_ms),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            ..wechat_miniapp::ClientConfig::default()
        };
        Ok((client, token_source))
    }
}
