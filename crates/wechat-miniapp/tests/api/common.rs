use std::sync::Arc;
use std::time::Duration;

use wechat_miniapp::{
    AccessTokenManager, AppSecret, ClientConfig, LoginCode, OffsetClock, RetryPolicy, WechatClient,
};
use wechat_sim::{SimConfig, Simulator};

pub const APP1: &str = "wx1111111111111111";
pub const SECRET1: &str = "11111111111111111111111111111111";
pub const APP2: &str = "wx2222222222222222";
pub const SECRET2: &str = "22222222222222222222222222222222";

pub struct TestSim {
    pub sim: Simulator,
    pub url: String,
    pub clock: OffsetClock,
}

pub async fn spawn_sim() -> TestSim {
    spawn_sim_with(SimConfig {
        apps: [(APP1.into(), SECRET1.into()), (APP2.into(), SECRET2.into())].into(),
        ..SimConfig::default()
    })
    .await
}

pub async fn spawn_sim_with(config: SimConfig) -> TestSim {
    wechat_miniapp::ensure_tls_provider();
    let clock = OffsetClock::new();
    let sim = Simulator::with_clock(config, clock.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(sim.clone().serve(listener));
    TestSim { sim, url, clock }
}

impl TestSim {
    pub fn client(&self) -> WechatClient {
        client_for(&self.url, Duration::from_secs(5))
    }

    pub fn manager(&self) -> AccessTokenManager {
        AccessTokenManager::new(
            self.client(),
            [
                (APP1.to_owned(), AppSecret::new(SECRET1)),
                (APP2.to_owned(), AppSecret::new(SECRET2)),
            ],
        )
        .with_clock(Arc::new(self.clock.clone()))
    }

    pub fn code(&self, appid: &str, user: &str) -> LoginCode {
        LoginCode::new(self.sim.login_code(appid, user).unwrap())
    }

    pub fn calls(&self, api: &str) -> u64 {
        self.sim.stats().calls.get(api).copied().unwrap_or(0)
    }

    pub fn session_key(&self, appid: &str, user: &str) -> String {
        self.sim.user_info(appid, user).unwrap()["session_key"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub fn openid(&self, appid: &str, user: &str) -> String {
        self.sim.user_info(appid, user).unwrap()["openid"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub fn client_for(url: &str, timeout: Duration) -> WechatClient {
    WechatClient::new(ClientConfig {
        base_url: url.to_owned(),
        timeout,
        connect_timeout: timeout,
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        ..ClientConfig::default()
    })
    .unwrap()
}

pub fn secret1() -> AppSecret {
    AppSecret::new(SECRET1)
}
