//! Content security for pictures: with `[content_check] images`, each
//! avatar or image uploaded is sent to WeChat's asynchronous check
//! (mediaCheckAsync v2, by a signed URL WeChat fetches it from) and stays
//! `pending`, seen by its owner alone, until WeChat pushes the verdict
//! (`wxa_media_check`, matched by trace id): then `pass`, or `rejected`
//! (bytes deleted, URL 404, the row left so the owner sees why). WeChat
//! unreachable when asked: the file stays pending (never shown unchecked).

use serde_json::json;

use crate::admin::{Admin, AuditRecord};
use crate::auth::{Auth, Caller};
use crate::config::{ContentCheckSettings, OnReview};
use crate::error::Result;
use crate::files::{FileView, Files};
use crate::vocab::{Actor, Target};

/// msgSecCheck's scenes for pictures: an avatar is the profile's (1);
/// other images are judged as forum posts (3).
fn scene_of(purpose: &str) -> u8 {
    if purpose == "avatar" { 1 } else { 3 }
}

/// The picture checks' rules, borrowed for a request or a push.
#[derive(Debug, Clone, Copy)]
pub struct ImageChecks<'a> {
    rules: &'a ContentCheckSettings,
    auth: &'a Auth,
    files: &'a Files,
    admin: Admin<'a>,
}

impl<'a> ImageChecks<'a> {
    /// The rules over `files`, asking WeChat through `auth`, recording
    /// verdicts through `admin`'s audit log.
    pub fn new(
        rules: &'a ContentCheckSettings,
        auth: &'a Auth,
        files: &'a Files,
        admin: Admin<'a>,
    ) -> Self {
        Self {
            rules,
            auth,
            files,
            admin,
        }
    }

    /// Asks WeChat to check a file just uploaded, if it waits for a check.
    /// Never fails the upload: a check that cannot be asked for leaves the
    /// file pending, counted and logged.
    pub async fn submit(&self, caller: &Caller, file: &FileView) {
        if !self.rules.images || file.status != "pending" {
            return;
        }
        let asked = async {
            let Some(url) = self.files.check_url(&file.id) else {
                return Err(crate::error::Error::internal(
                    "no public_url: WeChat cannot fetch the image",
                ));
            };
            let trace = self
                .auth
                .check_image(caller, &url, scene_of(&file.purpose))
                .await?;
            self.files.checking(&file.id, &trace).await
        };
        match asked.await {
            Ok(()) => {
                metrics::counter!("wxauth_image_checks_total", "step" => "asked").increment(1);
            }
            Err(e) => {
                metrics::counter!("wxauth_image_checks_total", "step" => "not_asked").increment(1);
                tracing::warn!(file = %file.id, error = %e, "an image could not be sent to WeChat's check; it stays pending");
            }
        }
    }

    /// WeChat's pushed verdict for `trace_id`: the file passes, or is
    /// rejected (a `review` as `[content_check] on_review` says); audited
    /// as `wechat:{appid}` unless it simply passed.
    pub async fn verdict(
        &self,
        appid: &str,
        trace_id: &str,
        suggest: &str,
        label: i64,
    ) -> Result<()> {
        let pass = match suggest {
            "pass" => true,
            "review" => self.rules.on_review == OnReview::Flag,
            _ => false,
        };
        let Some(file) = self.files.settle_check(trace_id, pass).await? else {
            tracing::debug!(trace_id, "a media check verdict names no pending file");
            return Ok(());
        };
        let step = if pass { "pass" } else { "rejected" };
        metrics::counter!("wxauth_image_checks_total", "step" => step).increment(1);
        if suggest != "pass" {
            let action = if pass {
                "content_check review"
            } else {
                "content_check rejected"
            };
            let record = AuditRecord::new(
                Actor::WeChat(appid.to_owned()),
                action,
                Some(Target::File(file.id.clone())),
            )
            .detail(json!({ "label": label, "trace_id": trace_id, "purpose": file.purpose }));
            self.admin.record(record).await?;
        }
        Ok(())
    }
}
