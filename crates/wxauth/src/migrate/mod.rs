//! Moving onto wxauth: imports of LeanCloud's and CloudBase's exports
//! (`wxauth import`), so each user who logs in with `wx.login` afterwards
//! is the user they were and finds their own data.
//!
//! The rules that make it safe on real data:
//! - Rows are streamed a line at a time and written [`BATCH`] to a
//!   commit, so memory does not grow with the export.
//! - Every id is derived from the row's old id (`ids`), and writes skip
//!   what exists: running an import again changes nothing, and one killed
//!   anywhere finishes when run again (no duplicate; a pointer names the
//!   same id whichever file comes first).
//! - Users come first; which user each old user id became is kept in the
//!   database (`import_user_map`), so owners and pointers resolve across
//!   files and runs. An existing user with the same app and openid is
//!   that user, never a second one.
//! - A line that cannot be imported is reported with its file and line
//!   and the rest goes on; the per-user limits apply unless raised.
pub mod cloudbase;
mod fetch;
mod from_cloudbase;
mod from_leancloud;
mod from_leancloud_files;
pub mod ids;
mod importer;
pub mod leancloud;
mod lines;
pub mod report;

use std::collections::HashMap;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;

pub use from_leancloud::class_of_file;
pub use importer::Importer;
pub use report::{DownloadsReport, Report};

/// Rows written in one commit (2,000 imported a 100,000-row export in
/// 4.9 s on SQLite where 500 took 7.5 s: fewer commits and checkpoints).
pub const BATCH: usize = 2000;

/// Rows written between refreshes of the planner's statistics.
const STATISTICS_EVERY: usize = 200_000;

/// A JSON object with its fields in the order the line wrote them (the
/// "first `_User` pointer" of a row is the first in the line).
#[derive(Debug, Clone, Default)]
pub struct Ordered(Vec<(String, Value)>);

impl Ordered {
    /// The field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The fields in order.
    pub fn fields(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The fields in order, owned (a repeated name keeps its last value).
    pub fn into_fields(self) -> impl Iterator<Item = (String, Value)> {
        let mut last: HashMap<String, usize> = HashMap::new();
        for (i, (k, _)) in self.0.iter().enumerate() {
            last.insert(k.clone(), i);
        }
        self.0
            .into_iter()
            .enumerate()
            .filter(move |(i, (k, _))| last.get(k) == Some(i))
            .map(|(_, kv)| kv)
    }
}

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Ordered, A::Error> {
                let mut fields = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(kv) = m.next_entry::<String, Value>()? {
                    fields.push(kv);
                }
                Ok(Ordered(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// Why a row is not imported: a stable code and a sentence.
#[derive(Debug, Clone)]
pub struct RowProblem {
    /// `no_owner`, `no_wechat_identity`, …
    pub code: &'static str,
    /// For a person.
    pub message: String,
}

impl RowProblem {
    /// A problem with `code`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Unix milliseconds of an RFC 3339 time (`2015-06-21T18:02:52.249Z`).
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// The RFC 3339 form (UTC, milliseconds) of Unix milliseconds.
pub fn iso_millis(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Users become users of this app (it must be configured).
    pub appid: String,
    /// Read everything, report, write nothing.
    pub dry_run: bool,
    /// Import rows past the per-user limits (the report says so).
    pub ignore_limits: bool,
    /// Download `_File` rows into the file store (LeanCloud).
    pub fetch_files: bool,
}
