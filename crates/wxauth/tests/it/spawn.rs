//! The one configuration writer and the one process spawner of the tests
//! that run `wxauth` as a real process (process, operate, cluster,
//! connections, docs): a test says what differs from the usual file, and
//! starts `serve` the same way every time.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::app::{APP1, APP2, SECRET1, SECRET2, b64_key};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_wxauth");

/// Where the file's secrets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secrets {
    /// Written in the file (what `keys rotate` edits).
    InFile,
    /// The first app's secret and the encryption key in the environment
    /// variables `TEST_APP1_SECRET` and `TEST_ENC_KEY`, which
    /// [`serve_command`] sets (what an operator should do).
    InEnv,
}

/// A `wxauth.toml` for a test: the first app (and the second when asked),
/// a signing key `s1` (32 bytes of 5), encryption key `1` (32 bytes of 6),
/// the simulator as WeChat, and whatever the test adds.
#[derive(Debug, Clone)]
pub(crate) struct ConfigFile {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The simulator's URL.
    pub sim_url: String,
    /// Set for instances that share state.
    pub redis_url: Option<String>,
    /// Where the secrets are.
    pub secrets: Secrets,
    /// Also serve the second app (its secret in the file).
    pub second_app: bool,
    /// `[limits]` lines, e.g. `login_per_ip_per_minute = 5`.
    pub limits: Vec<String>,
    /// Lines added to the first app's `[[apps]]` (`push_token = …`).
    pub app1_lines: Vec<String>,
    /// TOML appended as it is (`[[service_keys]]`, `[[collections]]`).
    pub tail: String,
}

impl ConfigFile {
    /// The usual file: SQLite in `dir`, secrets in the file, one app.
    pub(crate) fn sqlite(dir: &Path, sim_url: &str) -> Self {
        Self::on(
            &format!("sqlite://{}", dir.join("wxauth.db").display()),
            sim_url,
        )
    }

    /// The usual file on `database_url`.
    pub(crate) fn on(database_url: &str, sim_url: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            sim_url: sim_url.to_owned(),
            redis_url: None,
            secrets: Secrets::InFile,
            second_app: false,
            limits: Vec::new(),
            app1_lines: Vec::new(),
            tail: String::new(),
        }
    }

    /// The file's text.
    pub(crate) fn text(&self) -> String {
        let mut text = format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\ndefault_appid = \"{APP1}\"\n",
            self.database_url
        );
        if let Some(redis) = &self.redis_url {
            text.push_str(&format!("redis_url = \"{redis}\"\n"));
        }
        text.push_str(&format!(
            "\n[wechat]\nbase_url = \"{}\"\n\n[[apps]]\nappid = \"{APP1}\"\n",
            self.sim_url
        ));
        match self.secrets {
            Secrets::InFile => text.push_str(&format!("secret = \"{SECRET1}\"\n")),
            Secrets::InEnv => text.push_str("secret_env = \"TEST_APP1_SECRET\"\n"),
        }
        for line in &self.app1_lines {
            text.push_str(line);
            text.push('\n');
        }
        if self.second_app {
            text.push_str(&format!(
                "\n[[apps]]\nappid = \"{APP2}\"\nsecret = \"{SECRET2}\"\n"
            ));
        }
        text.push_str(&format!(
            "\n[tokens]\n# Signing keys: the first signs.\nsigning_keys = [{{ id = \"s1\", key = \"{}\" }}]\n",
            b64_key(5)
        ));
        match self.secrets {
            Secrets::InFile => text.push_str(&format!(
                "\n[encryption]\nkeys = [{{ id = \"1\", key = \"{}\" }}]\n",
                b64_key(6)
            )),
            Secrets::InEnv => text
                .push_str("\n[encryption]\nkeys = [{ id = \"1\", key_env = \"TEST_ENC_KEY\" }]\n"),
        }
        if !self.limits.is_empty() {
            text.push_str("\n[limits]\n");
            for line in &self.limits {
                text.push_str(line);
                text.push('\n');
            }
        }
        if !self.tail.is_empty() {
            text.push('\n');
            text.push_str(&self.tail);
        }
        text
    }

    /// Writes `dir/wxauth.toml` (uploaded files under `dir/files`); its path.
    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("wxauth.toml");
        let mut text = self.text();
        if !text.contains("[files]") {
            text.push_str(&format!(
                "\n[files]\nurl = \"file://{}\"\n",
                dir.join("files").display()
            ));
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// `wxauth serve --config CONFIG` logging at `log`, with the variables
/// [`Secrets::InEnv`] names set (encryption key: 32 bytes of 6) and
/// stderr piped (read by [`stop`]). A test changes what it needs on the
/// returned command before [`spawn_serve`].
pub(crate) fn serve_command(config: &Path, log: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"])
        .arg(config)
        .env("TEST_APP1_SECRET", SECRET1)
        .env("TEST_ENC_KEY", b64_key(6))
        .env("WXAUTH_LOG", log)
        .env_remove("WXAUTH_CONFIG")
        .stderr(Stdio::piped());
    cmd
}

/// The first line `child` printed (its stdout is taken for that) and the
/// `http://` URL in it, the address a `wxauth serve` or `sim` announces.
pub(crate) fn announced_url(child: &mut Child) -> (Option<String>, String) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .map(str::to_owned);
    (url, line)
}

/// A `wxauth serve` process and the URL it announced.
pub(crate) struct Server {
    pub child: Child,
    pub url: String,
}

/// `serve_command(config, log)`, started.
pub(crate) fn start_serve(config: &Path, log: &str) -> Server {
    spawn_serve(serve_command(config, log))
}

/// Starts a `wxauth serve` command and reads the URL it announces on its
/// first line (its stdout is taken for that).
pub(crate) fn spawn_serve(mut cmd: Command) -> Server {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let (url, line) = announced_url(&mut child);
    let url = url.unwrap_or_else(|| {
        let mut err = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        panic!("serve did not start: {line:?} {err}")
    });
    Server { child, url }
}

/// Stops the server with SIGTERM (graceful: it must exit 0) and returns its log.
pub(crate) fn stop(server: Server) -> String {
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let output = server.child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "wxauth serve did not shut down cleanly ({}):\n{log}",
        output.status
    );
    log
}

/// Whether a program is on PATH.
pub fn on_path(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A test that needs `what` and cannot run: a failure under CI=true,
/// else a line saying it skipped.
pub fn skipped(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what} is missing, and CI=true: the test must run"
    );
    eprintln!("skipped: {what} is missing, so this test did not run");
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
