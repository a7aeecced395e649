//! `mlmodel serve` flags, turned into a [`ServeConfig`].

use super::ServeConfig;
use crate::cli::InstanceArgs;
use crate::desired::units;
use crate::reconcile::controller::{ImagePolicy, ResolveImage};
use crate::reconcile::network::SubnetChoice;
use anyhow::Context;
use clap::Args;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Flags of `mlmodel serve`; each also reads an MLMODEL_* environment variable.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Directory of manifests to watch (recursively).
    #[arg(
        long,
        env = "MLMODEL_MANIFESTS",
        default_value = "manifests",
        value_name = "DIR"
    )]
    manifests: PathBuf,
    /// Directory of the embedded store (deployment history).
    #[arg(
        long,
        env = "MLMODEL_DATA_DIR",
        default_value = "mlmodel-data",
        value_name = "DIR"
    )]
    data_dir: PathBuf,
    /// If the store does not open (damaged on disk), move it aside to
    /// `<data-dir>.damaged-<time>` (kept, never deleted), start with an empty one and
    /// adopt every model running in the swarm from its services' labels.
    #[arg(long, env = "MLMODEL_RECOVER_STORE")]
    recover_store: bool,
    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "MLMODEL_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    listen: SocketAddr,
    /// Full resync period (Go duration: 30s, 1m).
    #[arg(long, env = "MLMODEL_RESYNC", default_value = "30s", value_parser = parse_period, value_name = "DURATION")]
    resync: Duration,
    /// Models reconciled at once.
    #[arg(
        long,
        env = "MLMODEL_CONCURRENCY",
        default_value_t = 4,
        value_name = "N"
    )]
    concurrency: usize,
    /// Log format.
    #[arg(long, env = "MLMODEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Bearer token every API write must carry (never logged).
    #[arg(
        long,
        env = "MLMODEL_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// When image tags are resolved to digests and pinned in the service spec, as
    /// `docker stack deploy --resolve-image` does: `changed` (on creates and image
    /// changes), `always` (on every service write) or `never`.
    #[arg(long, env = "MLMODEL_RESOLVE_IMAGE", value_enum, default_value_t = ResolveImage::Changed)]
    resolve_image: ResolveImage,
    /// Follow image tags: at each resync, a model whose tag has moved to a new digest is
    /// rolled out to it as a new deployment (a model's `follow_tag` overrides this).
    #[arg(long, env = "MLMODEL_FOLLOW_TAGS")]
    follow_tags: bool,
    /// The subnet (IPv4 CIDR) the shared network is created with when mlmodel creates
    /// it; `auto` takes the first /16 of the swarm's address pools that nothing uses.
    #[arg(long, env = "MLMODEL_NETWORK_SUBNET", default_value = "auto", value_parser = parse_subnet, value_name = "CIDR")]
    network_subnet: SubnetChoice,
    /// Act only while holding a lease in the swarm (a service `<instance>-lease`), so that
    /// of several copies (mlmodel run as a Swarm service, a partitioned node's old copy)
    /// only one writes; the others are standbys that answer reads and refuse writes.
    #[arg(long, env = "MLMODEL_LEASE")]
    lease: bool,
    /// How long the lease lasts without renewal: the active copy renews it every third
    /// of this and stops writing when it could not for this long; a standby takes over
    /// after seeing it unchanged for this long.
    #[arg(long, env = "MLMODEL_LEASE_DURATION", default_value = "15s", value_parser = parse_period, value_name = "DURATION")]
    lease_duration: Duration,
    /// Keep every deployment record and its history also in the swarm (as configs
    /// `<instance>-history-*` in Swarm's raft store), written before a write is
    /// acknowledged and read back at start and on taking the lease, so that a copy on
    /// another manager has the full history. On with --lease.
    #[arg(long, env = "MLMODEL_SWARM_HISTORY")]
    swarm_history: bool,
    /// POST a JSON notification here on each model's phase change and on a rollback by
    /// Swarm (with a Slack-style `text`, so a Slack or Mattermost incoming webhook takes
    /// it as it is). Repeatable; the variable takes several URLs separated by commas.
    #[arg(long = "notify-url", env = "MLMODEL_NOTIFY_URL", value_delimiter = ',', value_parser = parse_notify_url, value_name = "URL", hide_env_values = true)]
    notify_urls: Vec<reqwest::Url>,
    #[command(flatten)]
    instance: InstanceArgs,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// One human-readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

fn parse_subnet(text: &str) -> Result<SubnetChoice, String> {
    text.parse()
        .map_err(|e: crate::reconcile::network::CidrError| e.to_string())
}

fn parse_period(text: &str) -> Result<Duration, String> {
    let period = units::parse_duration(text).map_err(|e| e.to_string())?;
    if period.is_zero() {
        return Err("must be longer than 0s".to_string());
    }
    Ok(period)
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or pipe must not carry escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    if args.concurrency == 0 {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let config = ServeConfig {
        manifests: args.manifests,
        data_dir: args.data_dir,
        recover_store: args.recover_store,
        templates: args.instance.templates.clone(),
        listen: args.listen,
        instance: args.instance.instance()?,
        resync: args.resync,
        concurrency: args.concurrency,
        token: args.token.filter(|t| !t.is_empty()),
        images: ImagePolicy {
            resolve: args.resolve_image,
            follow_tags: args.follow_tags,
            digest_ttl: crate::reconcile::controller::DIGEST_TTL,
        },
        network_subnet: args.network_subnet,
        lease: args.lease.then_some(args.lease_duration),
        swarm_history: args.swarm_history || args.lease,
        notify_urls: args.notify_urls,
    };
    super::limit_malloc_arenas();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            super::shutdown_signal().await;
            tracing::info!("signal received: shutting down");
            signal_token.cancel();
        });
        super::serve(config, shutdown).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// An http or https URL to POST notifications to.
fn parse_notify_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| format!("{text:?} is not a URL ({e}): expected http(s)://HOST[:PORT]/PATH"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err(format!("{text:?} has no host")),
        other => Err(format!(
            "{text:?} is a {other}: URL: notifications are POSTed over http or https"
        )),
    }
}
