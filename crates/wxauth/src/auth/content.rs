//! WeChat's content check (msgSecCheck v2) of a text a user wrote, with
//! the app's shared access token and the author's openid (WeChat judges
//! in the context of who wrote it). What a verdict does is the
//! platform's rule (`platform::content`); this is the call.

use wechat_miniapp::{TextCheck, TextVerdict};

use super::upstream::{self, Call};
use super::{Auth, Caller};
use crate::error::{Error, Result};

impl Auth {
    /// WeChat's verdicts on `texts` by the caller (each at most 2,500
    /// characters), asked all at once, in the order given. An error when
    /// any has no verdict (WeChat unreachable, busy, refusing).
    pub async fn check_texts(
        &self,
        caller: &Caller,
        scene: u8,
        texts: &[&str],
    ) -> Result<Vec<TextVerdict>> {
        let user = &self.user_record(caller).await?;
        let checks = texts.iter().map(|text| {
            let call = self.wechat_tokens.with_token(&user.appid, |token| {
                let (client, openid) = (self.wechat.clone(), user.openid.clone());
                let text = (*text).to_owned();
                async move {
                    client
                        .msg_sec_check(
                            &token,
                            &TextCheck {
                                content: &text,
                                openid: &openid,
                                scene,
                                nickname: None,
                            },
                        )
                        .await
                }
            });
            let appid = &user.appid;
            async move {
                tokio::time::timeout(self.upstream_deadline, call)
                    .await
                    .map_err(|_| upstream::unavailable("WeChat's content check did not answer in time"))?
                    .map_err(|e| match e.errcode() {
                        // The author has not opened the mini program for
                        // two hours: WeChat will not judge their text.
                        Some(61010) => Error::UpstreamUnavailable {
                            message: "WeChat checks the texts of users who opened the mini program in the last two hours: call wx.login() and log in again, then retry".into(),
                            retry_after: std::time::Duration::from_secs(2),
                        },
                        _ => upstream::map(e, Call::ContentCheck, appid),
                    })
            }
        });
        futures_util::future::join_all(checks)
            .await
            .into_iter()
            .collect()
    }
}
