//! Notices of committed document changes between instances (realtime
//! watches): each instance publishes the last positions its commits took,
//! and hears the others'. Only a shortcut: a notice lost is found by each
//! instance's periodic look at the change log (`realtime.poll_ms`), and a
//! subscription that was down wakes every watch when it is joined again.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::redis::{PREFIX, SharedRedis};

/// The last position a commit took in one collection: (app, collection,
/// position).
pub type Notice = (String, String, i64);

/// What is done with the notices heard from other instances (None: they
/// may have been missed; look at everything).
pub type Heard = Arc<dyn Fn(Option<Vec<Notice>>) + Send + Sync>;

fn channel() -> String {
    format!("{PREFIX}changes")
}

/// Publishes what is sent on the returned channel and calls `heard` with
/// every other instance's notices. `instance` tells this instance's own
/// messages apart.
pub fn start(
    redis: Arc<SharedRedis>,
    instance: String,
    heard: Heard,
) -> mpsc::UnboundedSender<Vec<Notice>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Notice>>();
    let publisher = redis.clone();
    let me = instance.clone();
    tokio::spawn(async move {
        while let Some(notices) = rx.recv().await {
            let mut message = me.clone();
            for (appid, collection, position) in notices {
                message.push_str(&format!("\n{appid}\t{collection}\t{position}"));
            }
            let _: Option<i64> = publisher
                .run(redis::cmd("PUBLISH").arg(channel()).arg(message))
                .await;
        }
    });
    tokio::spawn(listen(redis, instance, heard));
    tx
}

fn parse(text: &str, me: &str) -> Option<Vec<Notice>> {
    let mut lines = text.split('\n');
    if lines.next()? == me {
        return None;
    }
    Some(
        lines
            .filter_map(|line| {
                let mut parts = line.split('\t');
                let appid = parts.next()?.to_owned();
                let collection = parts.next()?.to_owned();
                let position = parts.next()?.parse().ok()?;
                Some((appid, collection, position))
            })
            .collect(),
    )
}

async fn listen(redis: Arc<SharedRedis>, me: String, heard: Heard) {
    let mut pause = Duration::from_millis(100);
    loop {
        let Some(pubsub) = redis.subscribe(&channel()).await else {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        };
        pause = Duration::from_millis(100);
        // Notices sent while not listening are lost: look at everything.
        heard(None);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let Ok(text) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some(notices) = parse(&text, &me) {
                heard(Some(notices));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_and_ones_own_are_skipped() {
        let text = "i2\nwx1\ttodo\t7\nwx1\tchat\t12";
        assert_eq!(
            parse(text, "i1"),
            Some(vec![
                ("wx1".into(), "todo".into(), 7),
                ("wx1".into(), "chat".into(), 12)
            ])
        );
        assert_eq!(parse(text, "i2"), None);
    }
}
