//! `wxauth dev`: one command, no configuration. SQLite under the data
//! folder, keys generated once and kept there, the simulator in-process as
//! the WeChat upstream, two demo apps, and a printed walkthrough.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::config::{AppConfig, CollectionConfig, Config, ConfigError, KeyConfig};

/// The demo apps: (appid, secret). Fixed so docs and tests can name them.
pub const DEV_APPS: [(&str, &str); 2] = [
    ("wx1111111111111111", "11111111111111111111111111111111"),
    ("wx2222222222222222", "22222222222222222222222222222222"),
];

/// The demo apps' message push settings (safe mode): the console's Token
/// and EncodingAESKey, fixed like the demo secrets. `wxauth dev` points
/// the simulator's pushes at itself with them.
pub const DEV_PUSH_TOKEN: &str = "wxauthDevPush";
/// See [`DEV_PUSH_TOKEN`].
pub const DEV_PUSH_AES_KEY: &str = "wxauthDevPushKey0123456789abcdefghijklmnopq";

#[derive(Serialize, Deserialize)]
struct DevKeys {
    signing_key: String,
    encryption_key: String,
}

/// Reads the data folder's keys, creating them (readable only by the owner)
/// on first run. Kept so restarts keep sessions and sealed data readable.
fn dev_keys(dir: &Path) -> Result<DevKeys, ConfigError> {
    let path = dir.join("keys.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())));
    }
    let mut rng = rand::rng();
    let keys = DevKeys {
        signing_key: STANDARD.encode(rng.random::<[u8; 32]>()),
        encryption_key: STANDARD.encode(rng.random::<[u8; 32]>()),
    };
    let text = serde_json::to_string_pretty(&keys).map_err(|e| ConfigError(e.to_string()))?;
    crate::private_files::write_new(&path, text.as_bytes())
        .map_err(|e| ConfigError(format!("cannot write {}: {e}", path.display())))?;
    Ok(keys)
}

/// The shared collection the playground's live board watches.
pub const PLAYGROUND_BOARD: &str = "board";

/// The development configuration: a `--config` file, then environment
/// overrides (`WXAUTH_…`), still apply to everything the dev setup does not
/// fix (gateway entries, service keys, token lifetimes, limits).
pub fn dev_config(
    data_dir: &Path,
    listen: SocketAddr,
    sim_url: &str,
    file: Option<&Path>,
) -> Result<Config, ConfigError> {
    crate::private_files::create_dir_all(data_dir)
        .map_err(|e| ConfigError(format!("cannot create {}: {e}", data_dir.display())))?;
    let keys = dev_keys(data_dir)?;
    let mut config = Config::load(file)?;
    config.listen = listen;
    config.database_url = format!("sqlite://{}", data_dir.join("wxauth.db").display()).into();
    config.files.url = format!("file://{}", data_dir.join("files").display());
    config.wechat.base_url = sim_url.to_owned();
    config.apps = DEV_APPS
        .iter()
        .map(|(appid, secret)| AppConfig {
            appid: (*appid).into(),
            secret: Some((*secret).into()),
            secret_env: None,
            push_token: Some(DEV_PUSH_TOKEN.into()),
            push_aes_key: Some(DEV_PUSH_AES_KEY.into()),
            ..AppConfig::default()
        })
        .collect();
    config.default_appid = Some(DEV_APPS[0].0.into());
    // Avatars and images wait for the simulator's check (it fetches them
    // from this server and pushes the verdict back within a second).
    config.content_check.images = true;
    config.playground.enabled = true;
    config.playground.sim_url = sim_url.to_owned();
    // The playground's live board: a collection every user of the app
    // reads (realtime watches show each post to all), unless configured.
    if !config
        .collections
        .iter()
        .any(|c| c.name == PLAYGROUND_BOARD)
    {
        config.collections.push(CollectionConfig {
            name: PLAYGROUND_BOARD.into(),
            access: crate::config::Access::PublicRead,
            indexes: Vec::new(),
            // Posts pass WeChat's content check (the simulator's word list).
            check_text: vec!["text".into()],
            check_scene: Some(3),
        });
    }
    config.tokens.signing_keys = vec![KeyConfig {
        id: "dev1".into(),
        key: Some(keys.signing_key.into()),
        key_env: None,
        alg: None,
    }];
    config.encryption.keys = vec![KeyConfig {
        id: "1".into(),
        key: Some(keys.encryption_key.into()),
        key_env: None,
        alg: None,
    }];
    // Development logs many users in from one address; keep the per-IP
    // limit out of the way unless it was configured explicitly.
    if std::env::var_os("WXAUTH_LIMITS__LOGIN_PER_IP_PER_MINUTE").is_none() {
        config.limits.login_per_ip_per_minute = 100_000;
    }
    Ok(config)
}

/// The default data folder.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./wxauth-dev")
}

/// The walkthrough printed at start-up: copy-paste commands that log `alice`
/// in and call `/v1/me` (and, with `[[gateway]]` entries, the first one's
/// service). A test runs these lines verbatim.
pub fn walkthrough(api: &str, sim: &str, data_dir: &Path, gateways: &[String]) -> String {
    let (app1, _) = DEV_APPS[0];
    let (app2, _) = DEV_APPS[1];
    let gateway_step = gateways
        .first()
        .map(|prefix| {
            format!(
                "# 5. Your service behind the gateway ({prefix}) learns who is calling from X-Wxauth-* headers:\n\
                 curl -s {api}{prefix} -H \"Authorization: Bearer $TOKEN\"; echo\n"
            )
        })
        .unwrap_or_default();
    format!(
        r#"wxauth dev is running
  API        {api}
  playground {api}/   (open it in a browser)
  simulator  {sim}   (WeChat's server API and the phone side)
  apps       {app1} (default), {app2}
  data       {data_dir}

Try it (copy and paste):
# --- walkthrough ---
# 1. What wx.login() gives the test user alice:
CODE=$(curl -s -X POST {sim}/sim/v1/login -H 'content-type: application/json' -d '{{"appid":"{app1}","user":"alice"}}' | sed -E 's/.*"code":"([^"]+)".*/\1/')
# 2. The mini program sends the code to wxauth and gets its session:
TOKEN=$(curl -s -X POST {api}/v1/login -H 'content-type: application/json' -d "{{\"code\":\"$CODE\"}}" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
# 3. Every later call carries the token; the server knows who it is:
curl -s {api}/v1/me -H "Authorization: Bearer $TOKEN"; echo
# 4. Store something on the profile:
curl -s -X PATCH {api}/v1/me -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' -d '{{"profile":{{"nickname":"Alice"}}}}'; echo
{gateway_step}# --- end ---
"#,
        data_dir = data_dir.display()
    )
}
