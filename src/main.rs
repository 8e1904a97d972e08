//! `imageshare` binary: command-line parsing and wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use imageshare::api::ImageShare;
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
    /// Dry run: show what the operator would do for one ImageShare now. Changes nothing.
    Plan(PlanArgs),
}

#[derive(clap::Args)]
struct PlanArgs {
    /// Kubeconfig file; when unset, the in-cluster configuration or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the ImageShare.
    #[arg(long, short = 'n', default_value = "default")]
    namespace: String,
    /// Name of the ImageShare.
    name: String,
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Kubeconfig file; when unset, the in-cluster configuration or ~/.kube/config.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "IMAGESHARE_NAMESPACE")]
    namespace: Option<String>,
    /// ImageShares reconciled at once (their OpenStack requests are also limited by
    /// --per-cloud-limit per credential).
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
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => imageshare::api::crd_yaml()
            .map(|yaml| print!("{yaml}"))
            .map_err(anyhow::Error::from),
        Command::Operator(args) => operator(*args).await,
        Command::Plan(args) => plan(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // One readable line: what failed and its root cause, never a debug dump.
            let root = err.root_cause().to_string();
            if err.chain().count() > 1 {
                eprintln!("imageshare: {err}: {root}");
            } else {
                eprintln!("imageshare: {err}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// A Kubernetes client from a kubeconfig file, else in-cluster or ~/.kube/config.
async fn kube_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer().await.context(
            "no kubeconfig given and none found (in-cluster, $KUBECONFIG or ~/.kube/config)",
        )?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    imageshare::openstack::install_crypto_provider();
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    let shares: kube::Api<ImageShare> = kube::Api::namespaced(client.clone(), &args.namespace);
    let share = shares
        .get(&args.name)
        .await
        .with_context(|| format!("reading imageshare {}/{}", args.namespace, args.name))?;
    let all: Vec<Arc<ImageShare>> = kube::Api::<ImageShare>::all(client.clone())
        .list(&Default::default())
        .await
        .context("listing imageshares")?
        .items
        .into_iter()
        .map(Arc::new)
        .collect();
    let clouds = imageshare::openstack::Clouds::new(4);
    println!("imageshare {}/{}", args.namespace, args.name);
    match controller::preview(&client, &clouds, &share, &all).await {
        Err(failure) => println!("a pass would stop: {}: {}", failure.reason, failure.message),
        Ok((observed, claims, plan)) => {
            for image in &observed.images {
                println!(
                    "image {} ({}, {}): {} member(s) seen",
                    image.id,
                    image.name.as_deref().unwrap_or("no name"),
                    image.visibility.as_deref().unwrap_or("visibility unknown"),
                    image.members.len()
                );
            }
            if let Some(missing) = &observed.missing {
                println!("{}: {}", missing.reason, missing.message);
            }
            for (project, failure) in &observed.member_failures {
                println!("project {project}: {}: {}", failure.reason, failure.message);
            }
            let seen = |image: &String| observed.images.iter().any(|i| &i.id == image);
            for ((image, project), owner) in claims.add.iter().chain(&claims.status) {
                if seen(image) {
                    println!("project {project} on image {image}: Conflict with {owner}");
                }
            }
            if plan.deferred {
                println!("some removals would wait for another ImageShare to be processed");
            }
            if share.spec.suspend {
                println!("suspended: a pass would change nothing");
            }
            for step in &plan.steps {
                println!("would {step}");
            }
            if plan.steps.is_empty() {
                println!("nothing to change");
            }
        }
    }
    Ok(())
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level).map_err(anyhow::Error::msg)?;
    imageshare::openstack::install_crypto_provider();
    let client = kube_client(args.kubeconfig.as_ref()).await?;
    let metrics = Arc::new(Metrics::default());
    let readiness = Readiness::default();
    let server = tokio::spawn(http::serve(
        args.metrics_addr,
        metrics.clone(),
        readiness.clone(),
    ));
    let election = args.leader_election.then(|| {
        // A standby replica is healthy and ready to take over; it only does not reconcile.
        readiness.set_ready();
        LeaderOptions {
            namespace: args.leader_election_namespace,
            lease: args.leader_election_lease,
            identity: args.leader_election_identity,
            timing: Default::default(),
        }
    });
    let options = Options {
        namespace: args.namespace,
        concurrency: args.concurrency,
        default_resync: args.resync_period,
        per_cloud_limit: args.per_cloud_limit,
        readiness,
    };
    let mut server = server;
    loop {
        let mut leadership = match &election {
            Some(election) => tokio::select! {
                held = Leadership::acquire(client.clone(), election) => Some(held?),
                () = shutdown_signal() => break,
            },
            None => None,
        };
        tracing::info!(metrics_addr = %args.metrics_addr, "starting imageshare operator");
        let lost = async {
            match leadership.as_mut() {
                Some(l) => l.lost().await,
                None => futures::future::pending().await,
            }
        };
        // Losing the Lease drops the controller at once (in-flight calls are cancelled): a
        // new leader can only start after a full lease duration, well after this.
        let lost_it = tokio::select! {
            result = &mut server => {
                result.context("metrics server")?.context("metrics server")?;
                false
            }
            () = controller::run(client.clone(), options.clone(), metrics.clone()) => false,
            () = lost => true,
        };
        if lost_it {
            tracing::warn!("lost the leader lease; stopped reconciling, waiting for it again");
            continue;
        }
        // SIGTERM: the controller finished its in-flight passes; hand the Lease over now.
        if let Some(leadership) = leadership {
            leadership.release().await;
        }
        break;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or ctrl-c (while waiting for the Lease; the controller has its own).
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => futures::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
