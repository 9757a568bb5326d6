-- Subscribe messages (issue 32): each user's consent per template, as
-- WeChat pushed it or the mini program reported it, and each message sent
-- with WeChat's answer and, once pushed, its delivery.
CREATE TABLE subscriptions (
    user_id     TEXT NOT NULL,
    template_id TEXT NOT NULL,
    -- accept, reject, ban or filter (wx.requestSubscribeMessage's words)
    status      TEXT NOT NULL,
    -- sends the accepts still allow: one per accept of a one-time template
    remaining   BIGINT NOT NULL,
    -- wechat (a pushed event) or client (reported by the mini program)
    source      TEXT NOT NULL,
    accepted_at BIGINT,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (user_id, template_id)
);
CREATE TABLE message_sends (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    template_id  TEXT NOT NULL,
    sent_at      BIGINT NOT NULL,
    -- WeChat's errcode (0: accepted for delivery; 43101: no consent)
    errcode      BIGINT NOT NULL,
    msgid        TEXT,
    -- the pushed subscribe_msg_sent_event: ErrorStatus and ErrorCode
    delivery     TEXT,
    delivery_code BIGINT,
    delivered_at BIGINT
);
CREATE INDEX message_sends_user ON message_sends (user_id, sent_at);
CREATE INDEX message_sends_msgid ON message_sends (msgid);
