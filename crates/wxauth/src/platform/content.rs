//! Content security for texts: a user's create or replace in a collection
//! with `check_text`, and their profile's nickname, pass WeChat's
//! msgSecCheck before anything is stored. `risky` refuses the write (422
//! `content_rejected` naming the field and label); `review` and a missing
//! verdict follow `[content_check]` (refuse, or store and flag in the
//! audit log). WeChat's review requires this of mini programs with
//! user-generated content (docs/wechat-platform.md §2a).

use serde_json::{Map, Value, json};
use wechat_miniapp::{Suggest, TextVerdict};

use crate::admin::{Admin, AuditRecord};
use crate::auth::{Auth, Caller};
use crate::config::{ContentCheckSettings, OnReview, OnUnavailable};
use crate::error::{Error, Result};
use crate::vocab::{Actor, Target};

/// The longest text one msgSecCheck call takes, in characters; longer
/// ones are checked a slice at a time.
const SLICE_CHARS: usize = 2500;

/// msgSecCheck's scene for profile fields.
const PROFILE_SCENE: u8 = 1;

/// A stored text an operator should look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The field's path.
    pub field: String,
    /// `review` (doubtful) or `unchecked` (WeChat gave no verdict).
    pub reason: &'static str,
    /// WeChat's label (0 when unchecked).
    pub label: i64,
    /// WeChat's trace id (empty when unchecked).
    pub trace_id: String,
}

/// What the checks of one write found that lets it be stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use = "flags are recorded with `TextChecks::record` once the write is stored"]
pub struct Flags(Vec<Flag>);

impl Flags {
    /// Whether nothing was flagged.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The text checks' rules, borrowed for one request.
#[derive(Debug, Clone, Copy)]
pub struct TextChecks<'a> {
    rules: &'a ContentCheckSettings,
    auth: &'a Auth,
    admin: Admin<'a>,
}

impl<'a> TextChecks<'a> {
    /// The rules of `rules`, asking WeChat through `auth`, flagging
    /// through `admin`'s audit log.
    pub fn new(rules: &'a ContentCheckSettings, auth: &'a Auth, admin: Admin<'a>) -> Self {
        Self { rules, auth, admin }
    }

    /// Checks the configured text fields of a document the caller writes
    /// to `collection`. Fields absent or not text are passed over.
    pub async fn document(&self, caller: &Caller, collection: &str, doc: &Value) -> Result<Flags> {
        let Some(fields) = self.rules.collections.get(collection) else {
            return Ok(Flags::default());
        };
        let texts: Vec<(String, &str)> = fields
            .paths
            .iter()
            .filter_map(|(name, segments)| {
                let mut at = doc;
                for s in segments {
                    at = at.get(s)?;
                }
                at.as_str().map(|t| (name.clone(), t))
            })
            .collect();
        self.check(caller, fields.scene, &texts).await
    }

    /// Checks the nickname in a profile change (`nickname`, or WeChat's
    /// own spelling `nickName`), when `[content_check] nickname` is on.
    pub async fn profile(&self, caller: &Caller, patch: &Map<String, Value>) -> Result<Flags> {
        if !self.rules.nickname {
            return Ok(Flags::default());
        }
        let texts: Vec<(String, &str)> = ["nickname", "nickName"]
            .into_iter()
            .filter_map(|k| Some((format!("profile.{k}"), patch.get(k)?.as_str()?)))
            .collect();
        self.check(caller, PROFILE_SCENE, &texts).await
    }

    /// Asks WeChat about each non-blank text (long ones a slice at a
    /// time) and applies the verdicts.
    async fn check(&self, caller: &Caller, scene: u8, texts: &[(String, &str)]) -> Result<Flags> {
        let mut asked: Vec<(usize, String)> = Vec::new();
        for (i, (_, text)) in texts.iter().enumerate() {
            if text.trim().is_empty() {
                continue;
            }
            let chars: Vec<char> = text.chars().collect();
            for slice in chars.chunks(SLICE_CHARS) {
                asked.push((i, slice.iter().collect()));
            }
        }
        if asked.is_empty() {
            return Ok(Flags::default());
        }
        let slices: Vec<&str> = asked.iter().map(|(_, t)| t.as_str()).collect();
        let verdicts = match self.auth.check_texts(caller, scene, &slices).await {
            Ok(v) => v,
            Err(e) => return self.no_verdict(texts, e),
        };
        let mut flags = Vec::new();
        for ((i, _), verdict) in asked.iter().zip(verdicts) {
            let field = &texts[*i].0;
            count(&verdict);
            match verdict.suggest {
                Suggest::Pass => {}
                Suggest::Risky => return Err(rejected(field, verdict.label)),
                Suggest::Review => match self.rules.on_review {
                    OnReview::Refuse => return Err(rejected(field, verdict.label)),
                    OnReview::Flag => {
                        if !flags.iter().any(|f: &Flag| &f.field == field) {
                            flags.push(Flag {
                                field: field.clone(),
                                reason: "review",
                                label: verdict.label,
                                trace_id: verdict.trace_id,
                            });
                        }
                    }
                },
            }
        }
        Ok(Flags(flags))
    }

    /// WeChat gave no verdict: refuse with its error (fail-closed), or
    /// flag every text as unchecked (fail-open).
    fn no_verdict(&self, texts: &[(String, &str)], error: Error) -> Result<Flags> {
        metrics::counter!("wxauth_content_checks_total", "verdict" => "unavailable").increment(1);
        tracing::warn!(error = %error, "WeChat's content check gave no verdict");
        match self.rules.on_unavailable {
            OnUnavailable::Refuse => Err(error),
            OnUnavailable::Flag => Ok(Flags(
                texts
                    .iter()
                    .filter(|(_, t)| !t.trim().is_empty())
                    .map(|(field, _)| Flag {
                        field: field.clone(),
                        reason: "unchecked",
                        label: 0,
                        trace_id: String::new(),
                    })
                    .collect(),
            )),
        }
    }

    /// Records each flag of a stored write about `target` in the audit
    /// log (actor `wechat:{appid}`, action `content_check review` or
    /// `content_check unchecked`).
    pub async fn record(&self, caller: &Caller, target: Target, flags: Flags) -> Result<()> {
        for flag in flags.0 {
            let record = AuditRecord::new(
                Actor::WeChat(caller.appid.clone()),
                format!("content_check {}", flag.reason),
                Some(target.clone()),
            )
            .detail(json!({
                "field": flag.field,
                "label": flag.label,
                "trace_id": flag.trace_id,
                "author": caller.user_id,
            }));
            self.admin.record(record).await?;
        }
        Ok(())
    }
}

fn count(verdict: &TextVerdict) {
    let name = match verdict.suggest {
        Suggest::Pass => "pass",
        Suggest::Review => "review",
        Suggest::Risky => "risky",
    };
    metrics::counter!("wxauth_content_checks_total", "verdict" => name).increment(1);
}

fn rejected(field: &str, label: i64) -> Error {
    Error::ContentRejected {
        field: field.to_owned(),
        label,
        meaning: label_meaning(label),
    }
}

/// WeChat's words for a label (docs/wechat-platform.md §2a).
pub fn label_meaning(label: i64) -> &'static str {
    match label {
        100 => "normal",
        10001 => "advertising",
        20001 => "politics",
        20002 => "pornography",
        20003 => "abuse",
        20006 => "crime",
        20008 => "fraud",
        20012 => "vulgarity",
        20013 => "copyright",
        _ => "other",
    }
}
