//! WeChat's services called for a user with the app's shared access
//! token and the user's openid: the content check (msgSecCheck v2) of a
//! text they wrote (WeChat judges in the context of who wrote it), and
//! subscribe messages sent to them. What a verdict or an answer does is
//! the platform's rule (`platform::content`, `platform::subscriptions`);
//! these are the calls.

use wechat_miniapp::{SubscribeMessage, TextCheck, TextVerdict};

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

impl Auth {
    /// Starts WeChat's check of an image the caller uploaded, which WeChat
    /// fetches from `media_url`; the trace id its pushed verdict will carry.
    pub async fn check_image(&self, caller: &Caller, media_url: &str, scene: u8) -> Result<String> {
        let user = &self.user_record(caller).await?;
        let call = self.wechat_tokens.with_token(&user.appid, |token| {
            let (client, openid) = (self.wechat.clone(), user.openid.clone());
            let url = media_url.to_owned();
            async move {
                client
                    .media_check_async(&token, &url, 2, &openid, scene)
                    .await
            }
        });
        tokio::time::timeout(self.upstream_deadline, call)
            .await
            .map_err(|_| upstream::unavailable("WeChat's image check did not answer in time"))?
            .map_err(|e| upstream::map(e, Call::ContentCheck, &user.appid))
    }
}

/// A subscribe message for a user (their openid is looked up here).
#[derive(Debug, Clone, Copy)]
pub struct MessageToSend<'a> {
    /// The template.
    pub template_id: &'a str,
    /// The page the message opens.
    pub page: Option<&'a str>,
    /// The template's fields.
    pub data: &'a serde_json::Value,
    /// `developer`, `trial` or `formal`.
    pub miniprogram_state: Option<&'a str>,
    /// The language.
    pub lang: Option<&'a str>,
}

impl Auth {
    /// Sends a subscribe message to `user_id`; WeChat's msgid. 43101 is
    /// [`Error::NotSubscribed`]; WeChat's refusals of the template, its
    /// data or page are 400s naming them.
    pub async fn send_subscribe_message(
        &self,
        user_id: &str,
        message: MessageToSend<'_>,
    ) -> Result<String> {
        let user = self
            .store
            .user_uncached(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user with id {user_id:?}")))?;
        let call = self.wechat_tokens.with_token(&user.appid, |token| {
            let (client, openid) = (self.wechat.clone(), user.openid.clone());
            async move {
                client
                    .send_subscribe_message(
                        &token,
                        &SubscribeMessage {
                            touser: &openid,
                            template_id: message.template_id,
                            page: message.page,
                            data: message.data,
                            miniprogram_state: message.miniprogram_state,
                            lang: message.lang,
                        },
                    )
                    .await
            }
        });
        tokio::time::timeout(self.upstream_deadline, call)
            .await
            .map_err(|_| upstream::unavailable("WeChat did not answer the send in time"))?
            .map_err(|e| {
                let refused = |what: &str| {
                    Error::InvalidRequest(format!(
                        "WeChat refused the message: {what} (errcode {})",
                        e.errcode().unwrap_or_default()
                    ))
                };
                match e.errcode() {
                    Some(43101) => Error::NotSubscribed(
                        "WeChat says the user has no consent left for this template (errcode 43101): ask again with wx.requestSubscribeMessage".into(),
                    ),
                    Some(40037) => refused("template_id is not one of this app's templates"),
                    Some(47003) => refused("data does not fit the template's fields"),
                    Some(41030) => refused("page is not a page of the published mini program"),
                    Some(40003) => refused("the user's openid is not this app's"),
                    Some(47001) => refused("a field is malformed (miniprogram_state, lang)"),
                    _ => upstream::map(e, Call::Message, &user.appid),
                }
            })
    }
}
