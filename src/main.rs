//! `imageshare` binary: command-line parsing and wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use imageshare::controller::{self, Options, parse_duration};
use imageshare::http::{self, Readiness};
use imageshare::leader::{LeaderOptions, Leadership};
use imageshare::metrics::Metrics;
use imageshare::telemetry::{self, LogFormat};

/// Declarative OpenStack Glance image sharing for Kubernetes.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Operator(Box<OperatorArgs>),
    /// Print the ImageShare CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Kubeconfig file; when unset, the in-cluster configuration or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "IMAGESHARE_NAMESPACE")]
    namespace: Option<String>,
    /// ImageShares reconciled at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Concurrent OpenStack requests per distinct credential.
    #[arg(long, default_value_t = 8)]
    per_cloud_limit: usize,
    /// Resync period for ImageShares that set none (e.g. 10m).
    #[arg(long, default_value = "10m", value_parser = parse_period)]
    resync_period: std::time::Duration,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, value_enum, default_value = "json")]
    log_format: LogFormat,
    /// Run only while holding a Lease, so several replicas can run (one reconciles).
    #[arg(long, env = "IMAGESHARE_LEADER_ELECTION")]
    leader_election: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "imageshare-system")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "imageshare-operator")]
    leader_election_lease: String,
    /// This replica's identity in the Lease.
    #[arg(long, env = "POD_NAME", default_value_t = default_identity())]
    leader_election_identity: String,
    /// Log level or filter directives (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log_level: String,
}

fn default_identity() -> String {
    std::env::var("HOSTNAME").unwrap_or_else(|_| format!("imageshare-{}", std::process::id()))
}

fn parse_period(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).ok_or_else(|| format!("{text:?} is not a duration like 30s, 10m or 1h"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => print!("{}", imageshare::api::crd_yaml()?),
        Command::Operator(args) => operator(*args).await?,
    }
    Ok(())
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level).map_err(anyhow::Error::msg)?;
    imageshare::openstack::install_crypto_provider();
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await.context(
            "no kubeconfig given and none found (in-cluster, $KUBECONFIG or ~/.kube/config)",
        )?,
    };
    let client = kube::Client::try_from(config)?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Readiness::default();
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
    ));
    let leadership = if args.leader_election {
        // A standby replica is healthy and ready to take over; it only does not reconcile.
        readiness.set_ready();
        let options = LeaderOptions {
            namespace: args.leader_election_namespace,
            lease: args.leader_election_lease,
            identity: args.leader_election_identity,
        };
        Some(Leadership::acquire(client.clone(), &options).await?)
    } else {
        None
    };
    let lost = async {
        match leadership {
            Some(l) => l.lost().await,
            None => futures::future::pending().await,
        }
    };
    let options = Options {
        namespace: args.namespace,
        concurrency: args.concurrency,
        default_resync: args.resync_period,
        per_cloud_limit: args.per_cloud_limit,
        readiness,
    };
    tracing::info!(metrics_addr = %args.metrics_addr, "starting imageshare operator");
    tokio::select! {
        result = server => result.context("metrics server")?.context("metrics server")?,
        () = controller::run(client, options, metrics) => {}
        () = lost => anyhow::bail!("lost the leader lease; exiting so a fresh start can wait for it"),
    }
    tracing::info!("stopped");
    Ok(())
}
