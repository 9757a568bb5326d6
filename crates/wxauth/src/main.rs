//! The `wxauth` command line. Thin on purpose: it parses flags, sets up
//! logging and hands over to the library crates.

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wechat_sim::{SimConfig, Simulator};

#[derive(Parser)]
#[command(
    name = "wxauth",
    version,
    about = "Login and user-data backend for WeChat Mini Programs"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WXAUTH_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the WeChat simulator alone, for developing and testing any backend offline.
    Sim(SimArgs),
}

#[derive(clap::Args)]
struct SimArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081", env = "WXAUTH_SIM_LISTEN")]
    listen: SocketAddr,
    /// Register an app, as APPID:SECRET (repeatable).
    #[arg(long = "app", value_name = "APPID:SECRET")]
    apps: Vec<String>,
    /// Accept any appid with any secret.
    #[arg(long)]
    open: bool,
    /// Accept js_codes that were never issued (the user is named by the code), for load tests.
    #[arg(long)]
    accept_any_code: bool,
}

fn parse_apps(specs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut apps = HashMap::new();
    for spec in specs {
        let Some((appid, secret)) = spec.split_once(':') else {
            bail!("--app {spec:?}: expected APPID:SECRET");
        };
        if appid.is_empty() || secret.is_empty() {
            bail!("--app: APPID and SECRET must both be non-empty");
        }
        if apps.insert(appid.to_owned(), secret.to_owned()).is_some() {
            bail!("--app: appid {appid} given twice");
        }
    }
    Ok(apps)
}

async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    let apps = parse_apps(&args.apps)?;
    if apps.is_empty() && !args.open {
        bail!("the simulator needs at least one --app APPID:SECRET, or --open to accept any app");
    }
    let appids: Vec<&String> = apps.keys().collect();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, apps = ?appids, open = args.open, accept_any_code = args.accept_any_code, "WeChat simulator listening");
    println!(
        "WeChat simulator on http://{addr}  (apps: {appids:?}{})",
        if args.open { ", open to any app" } else { "" }
    );
    let sim = Simulator::new(SimConfig {
        apps,
        open: args.open,
        accept_any_code: args.accept_any_code,
    });
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("WXAUTH_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match cli.command {
        Command::Sim(args) => run_sim(args).await,
    }
}
