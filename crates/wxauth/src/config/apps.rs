//! `[[apps]]` and `default_appid`: the mini programs logged in for.

use serde::Deserialize;
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
}

/// One app, resolved.
#[derive(Debug, Clone)]
pub struct App {
    /// The AppID.
    pub appid: String,
    /// The AppSecret.
    pub secret: AppSecret,
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
        apps.push(App {
            appid: app.appid.clone(),
            secret: AppSecret::new(secret.trim()),
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
