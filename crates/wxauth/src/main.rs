//! The `wxauth` command line. Thin on purpose: it parses flags, sets up
//! logging and hands over to the library.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use wechat_sim::{PushFormat, PushMode, PushTarget, SimConfig, Simulator};
use wxauth::config::Config;
use wxauth::{Deps, build_server, dev, serve, serve_with_admin};

mod cli;

// glibc's malloc was 10% of a login's CPU (profile of bench/run.sh login);
// mimalloc's thread-local free lists make allocation cheaper. Built with
// `no_thp`: mimalloc otherwise madvises its arenas for transparent huge
// pages, and on a kernel in "madvise" mode the 2 MiB pages raised peak RSS
// from 38.6 to 58.5 MB in the same run (SQLite, a million documents).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run everything locally with no configuration: the service, SQLite, and the WeChat simulator.
    Dev(DevArgs),
    /// Run the service in production from a configuration file.
    Serve(ConfigArgs),
    /// Create or update the database schema, then exit.
    Migrate(ConfigArgs),
    /// Run the WeChat simulator alone, for developing and testing any backend offline.
    Sim(SimArgs),
    /// Operator commands: users, service keys, documents (the same
    /// database and keys as `serve`; recorded in the audit log).
    #[command(subcommand)]
    Admin(cli::AdminCommand),
    /// Rotate signing or encryption keys; re-seal stored secrets.
    #[command(subcommand)]
    Keys(cli::KeysCommand),
    /// Copy the SQLite database consistently while it is in use.
    Backup(cli::BackupArgs),
    /// Put a backup in place of the SQLite database (refuses one made by a
    /// newer wxauth).
    Restore(cli::RestoreArgs),
    /// Import another platform's export (LeanCloud, CloudBase): its users
    /// keep their data when they log in here.
    #[command(subcommand)]
    Import(cli::ImportCommand),
}

#[derive(clap::Args)]
struct DevArgs {
    /// Address of the API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the in-process WeChat simulator.
    #[arg(long, default_value = "127.0.0.1:8081")]
    sim_listen: SocketAddr,
    /// Where the SQLite database and the generated keys live.
    #[arg(long, default_value = "./wxauth-dev")]
    data_dir: PathBuf,
    /// A TOML file layered over dev's defaults: `[[gateway]]` entries,
    /// `[[service_keys]]`, limits, token lifetimes. The apps, database, keys,
    /// addresses and WeChat upstream stay dev's own.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Where the configuration comes from.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// The TOML configuration file (every key can also come from WXAUTH_… variables).
    #[arg(long, env = "WXAUTH_CONFIG")]
    pub config: Option<PathBuf>,
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
    let shutdown = shutdown_signal();
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
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    let sim_listener = tokio::net::TcpListener::bind(args.sim_listen)
        .await
        .with_context(|| format!("cannot listen on {} for the simulator", args.sim_listen))?;
    let sim_url = format!("http://{}", sim_listener.local_addr()?);
    let sim = Simulator::new(SimConfig {
        apps: dev::DEV_APPS
            .iter()
            .map(|(a, s)| ((*a).to_owned(), (*s).to_owned()))
            .collect(),
        ..SimConfig::default()
    });
    let sim_router = sim.router();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(sim_listener, sim_router).await {
            tracing::error!(error = %e, "the simulator stopped");
        }
    });
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let api_url = format!("http://{}", listener.local_addr()?);
    let config = dev::dev_config(
        &args.data_dir,
        listener.local_addr()?,
        &sim_url,
        args.config.as_deref(),
    )?;
    let settings = config.resolve()?;
    let gateways: Vec<String> = settings.gateways.iter().map(|g| g.prefix.clone()).collect();
    let app = build_server(settings, Deps::default()).await?;
    // WeChat's pushes (consent, revoked authorization, checks) come back
    // to this server, signed and encrypted as WeChat sends them.
    for (appid, _) in dev::DEV_APPS {
        sim.set_push_target(PushTarget {
            appid: appid.into(),
            url: format!("{api_url}/v1/wechat/push/{appid}"),
            token: dev::DEV_PUSH_TOKEN.into(),
            aes_key: Some(dev::DEV_PUSH_AES_KEY.into()),
            mode: Some(PushMode::Safe),
            format: PushFormat::Json,
            timeout_ms: 5000,
            attempts: 3,
        })?;
    }
    let shutdown = shutdown_signal();
    println!(
        "{}",
        dev::walkthrough(&api_url, &sim_url, &args.data_dir, &gateways)
    );
    serve(listener, app, shutdown).await?;
    Ok(())
}

fn load_settings(args: &ConfigArgs) -> anyhow::Result<wxauth::config::Settings> {
    let config = Config::load(args.config.as_deref())?;
    Ok(config.resolve()?)
}

async fn run_serve(args: ConfigArgs) -> anyhow::Result<()> {
    let settings = load_settings(&args)?;
    let listen = settings.listen;
    let db = settings.database_url.redacted();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let admin_listener = match settings.admin_listen {
        Some(admin) => Some(
            tokio::net::TcpListener::bind(admin)
                .await
                .with_context(|| format!("cannot listen on {admin} (admin_listen)"))?,
        ),
        None => None,
    };
    let app = build_server(settings, Deps::default()).await?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal();
    tracing::info!(%addr, database = %db, "wxauth serving");
    match &admin_listener {
        Some(admin) => {
            let admin = admin.local_addr()?;
            tracing::info!(%admin, "admin API on its own address");
            println!("wxauth serving on http://{addr} (admin API on http://{admin})");
        }
        None => println!("wxauth serving on http://{addr}"),
    }
    serve_with_admin(listener, admin_listener, app, shutdown).await?;
    Ok(())
}

async fn run_migrate(args: ConfigArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let collections = config.check_collections()?;
    let store = wxauth::store::Store::connect(config.database_url.expose()).await?;
    store.migrate().await?;
    // The configured collections' indexes too, so a large collection's
    // index is built here rather than at the next start.
    let data = wxauth::data::Data::new(
        store.clone(),
        std::sync::Arc::new(wechat_miniapp::SystemClock),
        config.limits.clone(),
        &collections,
    );
    data.ensure_indexes().await?;
    store.close().await;
    println!(
        "database schema is up to date ({})",
        config.database_url.redacted()
    );
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are registered when this is
/// called, not when it is first awaited, so a signal that arrives right
/// after start-up (before the server is polled) still shuts down gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (term, int) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {},
                () = wait(int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

fn main() -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, the whole cause chain, no backtrace: this is what an
            // operator reads when start-up fails.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The servers log their progress; the operator's commands print what
    // was asked for and log only warnings, unless WXAUTH_LOG says more.
    let quiet = matches!(
        cli.command,
        Command::Admin(_)
            | Command::Keys(_)
            | Command::Backup(_)
            | Command::Restore(_)
            | Command::Import(_)
    );
    let default_level = if quiet { "warn" } else { "info" };
    let filter =
        EnvFilter::try_from_env("WXAUTH_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    // Colours only on a terminal: a log file or collector gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match cli.command {
        Command::Dev(args) => run_dev(args).await,
        Command::Serve(args) => run_serve(args).await,
        Command::Migrate(args) => run_migrate(args).await,
        Command::Sim(args) => run_sim(args).await,
        Command::Admin(c) => cli::admin(c).await,
        Command::Keys(c) => cli::keys(c).await,
        Command::Backup(a) => cli::backup(a).await,
        Command::Restore(a) => cli::restore(a).await,
        Command::Import(c) => cli::import(c).await,
    }
}
