//! A real S3 server for the tests: `s3s-fs` from crates.io (the s3s
//! project's file-backed S3 server: S3's wire protocol with SigV4 checked),
//! which `.ci/run` installs with `cargo install s3s-fs@0.14.1 --features
//! binary --locked`. Each test starts its own on a free port, over a
//! folder of its own, so the tests can look at what the bucket holds and
//! stop the server mid-upload.
//!
//! Without `s3s-fs` on PATH the tests say they skipped; under CI=true
//! they fail.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::db::TempDir;
use crate::spawn::{free_port, on_path, skipped};

/// The bucket every test server holds.
pub const BUCKET: &str = "wxauth-test";
/// The folder inside it wxauth is given.
pub const PREFIX: &str = "uploads/files";
pub const ACCESS_KEY: &str = "wxauth-test-access";
pub const SECRET_KEY: &str = "wxauth-test-secret-0123456789";

pub struct S3Server {
    child: Option<Child>,
    /// The folder s3s-fs keeps buckets (as folders) and uploads in.
    pub root: TempDir,
    pub port: u16,
}

impl S3Server {
    /// A new server with an empty bucket, or None (having said why) when
    /// `s3s-fs` is not installed.
    pub fn start() -> Option<Self> {
        if !on_path("s3s-fs") {
            skipped("s3s-fs (cargo install s3s-fs@0.14.1 --features binary --locked)");
            return None;
        }
        let root = crate::db::temp_dir();
        std::fs::create_dir_all(root.0.join(BUCKET)).unwrap();
        let mut server = Self {
            child: None,
            root,
            port: free_port(),
        };
        server.run();
        Some(server)
    }

    fn run(&mut self) {
        let child = Command::new("s3s-fs")
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root.0)
            .env("RUST_LOG", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `files.url` for this server.
    pub fn files_url(&self) -> String {
        format!(
            "s3://{BUCKET}/{PREFIX}?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.port
        )
    }

    /// Points `[files]` at this server (keys inline, as a test may).
    pub fn configure(&self, files: &mut wxauth::config::FilesConfig) {
        files.url = self.files_url();
        files.access_key = Some(ACCESS_KEY.into());
        files.secret_key = Some(wechat_miniapp::SecretText::new(SECRET_KEY));
    }

    /// The folder holding finished objects under [`PREFIX`].
    pub fn objects(&self) -> PathBuf {
        self.root.0.join(BUCKET).join(PREFIX)
    }

    /// Multipart uploads begun and neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        std::fs::read_dir(&self.root.0)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".upload"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Stops the server (a store that went down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and folder.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
