//! `[[apps]]` and `default_appid`: the mini programs logged in for.

use serde::Deserialize;
use wechat_miniapp::push::PushKeys;
use wechat_miniapp::{AppSecret, SecretText};

use super::{ConfigError, bad, env_var};

/// One mini program.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The AppID (`wx…`).
    pub appid: String,
    /// The AppSecret, written in the file. Prefer `secret_env`.
    #[serde(default)]
    pub secret: Option<SecretText>,
    /// The name of the environment variable holding the AppSecret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Message push (消息推送): the Token set in the console (3 to 32
    /// letters or digits), written in the file. Prefer `push_token_env`.
    /// WeChat's pushes to `/v1/wechat/push/{appid}` are signed with it.
    #[serde(default)]
    pub push_token: Option<SecretText>,
    /// The name of the environment variable holding the push Token.
    #[serde(default)]
    pub push_token_env: Option<String>,
    /// The EncodingAESKey (43 characters) of compatible and safe mode.
    /// With one, only encrypted pushes are taken (their `msg_signature`
    /// covers the body; a plain push's `signature` does not). Prefer
    /// `push_aes_key_env`.
    #[serde(default)]
    pub push_aes_key: Option<SecretText>,
    /// The name of the environment variable holding the EncodingAESKey.
    #[serde(default)]
    pub push_aes_key_env: Option<String>,
    /// What a pushed `user_authorization_revoke` (or the account's
    /// `user_authorization_cancellation`) does to the user: end their
    /// sessions (default), or delete their account.
    #[serde(default)]
    pub on_authorization_revoke: OnRevoke,
    /// Where pushed events wxauth does not act on itself are forwarded
    /// (POST, the event as JSON, identity headers and a signature), e.g.
    /// `http://127.0.0.1:3000/wechat/events`. Unset: acknowledged only.
    #[serde(default)]
    pub push_forward_url: Option<String>,
}

/// What a user withdrawing their authorization costs them here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnRevoke {
    /// Every session ends on every instance; the account and its data
    /// stay (a later login continues it).
    #[default]
    EndSessions,
    /// The account and everything held about it are deleted, as
    /// `DELETE /admin/v1/users/{id}` does.
    Delete,
}

/// One app, resolved.
#[derive(Debug, Clone)]
pub struct App {
    /// The AppID.
    pub appid: String,
    /// The AppSecret.
    pub secret: AppSecret,
    /// Its message push keys, when a push Token is configured.
    pub push: Option<PushKeys>,
    /// See [`AppConfig::on_authorization_revoke`].
    pub on_authorization_revoke: OnRevoke,
    /// See [`AppConfig::push_forward_url`].
    pub push_forward_url: Option<String>,
}

/// One of a pair of settings written in the file or named by an
/// environment variable (at most one of the two).
fn file_or_env(
    value: Option<&SecretText>,
    var: Option<&String>,
    key: &str,
    name: &str,
) -> Result<Option<String>, ConfigError> {
    match (value, var) {
        (None, None) => Ok(None),
        (Some(v), None) => Ok(Some(v.expose().trim().to_owned())),
        (None, Some(var)) => Ok(Some(
            env_var(var, &format!("{key}.{name}_env"))?
                .trim()
                .to_owned(),
        )),
        (Some(_), Some(_)) => Err(bad(format!(
            "{key}: give at most one of {name} or {name}_env"
        ))),
    }
}

fn valid_appid(appid: &str) -> bool {
    !appid.is_empty()
        && appid.len() <= 64
        && appid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks `[[apps]]` (loading each secret) and `default_appid`: the apps
/// in configuration order and the app of logins that name none.
pub(super) fn check_apps(
    configured: &[AppConfig],
    default_appid: Option<&String>,
) -> Result<(Vec<App>, Option<String>), ConfigError> {
    if configured.is_empty() {
        return Err(bad(
            "apps: configure at least one [[apps]] with appid and secret_env",
        ));
    }
    let mut apps: Vec<App> = Vec::new();
    for (i, app) in configured.iter().enumerate() {
        let key = format!("apps[{i}]");
        if !valid_appid(&app.appid) {
            return Err(bad(format!("{key}.appid: {:?} is not an AppID", app.appid)));
        }
        if apps.iter().any(|a| a.appid == app.appid) {
            return Err(bad(format!(
                "{key}.appid: {} is configured twice",
                app.appid
            )));
        }
        let secret = match (&app.secret, &app.secret_env) {
            (Some(s), None) => s.expose().to_owned(),
            (None, Some(var)) => env_var(var, &format!("{key}.secret_env"))?,
            _ => {
                return Err(bad(format!(
                    "{key}: give exactly one of secret or secret_env"
                )));
            }
        };
        if secret.trim().is_empty() {
            return Err(bad(format!("{key}: the secret is empty")));
        }
        let token = file_or_env(
            app.push_token.as_ref(),
            app.push_token_env.as_ref(),
            &key,
            "push_token",
        )?;
        let aes_key = file_or_env(
            app.push_aes_key.as_ref(),
            app.push_aes_key_env.as_ref(),
            &key,
            "push_aes_key",
        )?;
        let push = match (token, aes_key) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(bad(format!(
                    "{key}: push_aes_key needs push_token (the Token of the same push settings)"
                )));
            }
            (Some(token), aes_key) => Some(
                PushKeys::new(&app.appid, &token, aes_key.as_deref())
                    .map_err(|e| bad(format!("{key}: {e}")))?,
            ),
        };
        let push_forward_url = match &app.push_forward_url {
            None => None,
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                if push.is_none() {
                    return Err(bad(format!(
                        "{key}.push_forward_url: needs push_token (events arrive by message push)"
                    )));
                }
                Some(url.trim_end_matches('/').to_owned())
            }
            Some(url) => {
                return Err(bad(format!(
                    "{key}.push_forward_url: {url:?} is not an http:// or https:// URL"
                )));
            }
        };
        apps.push(App {
            appid: app.appid.clone(),
            secret: AppSecret::new(secret.trim()),
            push,
            on_authorization_revoke: app.on_authorization_revoke,
            push_forward_url,
        });
    }
    let default_appid = match default_appid {
        Some(d) if apps.iter().any(|a| &a.appid == d) => Some(d.clone()),
        Some(d) => {
            return Err(bad(format!(
                "default_appid: {d} is not one of the configured apps"
            )));
        }
        None if apps.len() == 1 => Some(apps[0].appid.clone()),
        None => None,
    };
    Ok((apps, default_appid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(token: Option<&str>, key: Option<&str>) -> AppConfig {
        AppConfig {
            appid: "wx2c2769f8efd9abc2".into(),
            secret: Some("s3cret".into()),
            push_token: token.map(Into::into),
            push_aes_key: key.map(Into::into),
            ..AppConfig::default()
        }
    }

    fn error(configured: AppConfig) -> String {
        check_apps(&[configured], None).unwrap_err().to_string()
    }

    #[test]
    fn push_settings_are_checked() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let (apps, _) = check_apps(&[app(Some("spamtest"), Some(key))], None).unwrap();
        let push = apps[0].push.as_ref().unwrap();
        assert!(push.decrypts());
        assert!(push.check_signature(
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a",
            "1409735669",
            "1320562132"
        ));
        let (apps, _) = check_apps(&[app(Some("spamtest"), None)], None).unwrap();
        assert!(!apps[0].push.as_ref().unwrap().decrypts());
        let (apps, _) = check_apps(&[app(None, None)], None).unwrap();
        assert!(apps[0].push.is_none());

        assert!(error(app(None, Some(key))).contains("push_aes_key needs push_token"));
        assert!(
            error(app(Some("spamtest"), Some("short"))).contains("apps[0]: the EncodingAESKey")
        );
        assert!(error(app(Some("x"), None)).contains("apps[0]: the push token"));
        let both = AppConfig {
            push_token_env: Some("PUSH_TOKEN".into()),
            ..app(Some("spamtest"), None)
        };
        assert!(error(both).contains("at most one of push_token or push_token_env"));
    }

    #[test]
    fn push_keys_never_show_in_debug() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let (apps, _) = check_apps(&[app(Some("spamtest"), Some(key))], None).unwrap();
        let shown = format!("{:?}", apps[0]);
        assert!(
            !shown.contains("spamtest") && !shown.contains("abcdefg"),
            "{shown}"
        );
    }
}
