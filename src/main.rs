//! `imageshare` binary: command-line parsing and wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use imageshare::api::ImageShare;
use imageshare::controller::credentials::{LocalClouds, Sessions};
use imageshare::controller::shard::Shard;
use imageshare::controller::{self, Options, parse_duration};
use imageshare::dryrun;
use imageshare::http::{self, Readiness};
use imageshare::leader::{Fence, LeaderOptions, Leadership};
use imageshare::metrics::Metrics;
use imageshare::telemetry::{self, LogFormat};
use imageshare::{COMMIT, VERSION};

/// `--version` text: the version and the commit.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("IMAGESHARE_GIT_COMMIT"),
    ")"
);

/// Declarative OpenStack Glance image sharing for Kubernetes.
#[derive(Parser)]
#[command(version = LONG_VERSION, about)]
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
    /// Dry run: show what the operator would change in Glance now, for one ImageShare of
    /// the cluster or for the ImageShares in manifest files (-f, no cluster needed).
    /// Changes nothing. Exit code 0: nothing would change; 2: something would; 1: error.
    Plan(PlanArgs),
    /// Print the version and the git commit this binary was built from.
    Version,
    /// Print a shell completion script, e.g. `source <(imageshare completion bash)`.
    Completion {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct PlanArgs {
    /// Kubeconfig file; when unset, $KUBECONFIG (a list of files, merged as kubectl does),
    /// else ~/.kube/config, else the in-cluster configuration.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the ImageShare (default: the kubeconfig context's namespace); with -f,
    /// of the manifests that set none (default: "default").
    #[arg(long, short = 'n')]
    namespace: Option<String>,
    /// Also read the ImageShares of every other namespace, so overlaps with them are judged
    /// as the operator judges them (needs `list imageshares` cluster-wide). Without it, only
    /// the ImageShare's own namespace is read.
    #[arg(long, short = 'A', conflicts_with = "files")]
    all_namespaces: bool,
    /// Name of the ImageShare in the cluster.
    #[arg(required_unless_present = "files", conflicts_with = "files")]
    name: Option<String>,
    /// Read the ImageShares from these manifest files or directories instead of a cluster
    /// (repeatable); credentials come from a local clouds.yaml.
    #[arg(long = "filename", short = 'f')]
    files: Vec<PathBuf>,
    /// With -f: the clouds.yaml standing in for the credential Secrets (default: ./clouds.yaml,
    /// then ~/.config/openstack/clouds.yaml, then /etc/openstack/clouds.yaml).
    #[arg(long, env = "OS_CLIENT_CONFIG_FILE")]
    clouds: Option<PathBuf>,
    /// With -f: the local cloud for a credentials Secret, SECRET=CLOUD (repeatable). By
    /// default a credentialsRef uses the cloud named like its Secret, else like its cloudName.
    #[arg(long = "cloud", value_parser = parse_mapping)]
    cloud: Vec<(String, String)>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: Output,
}

/// Output format of `plan`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    /// For people.
    Text,
    /// For scripts.
    Json,
}

fn parse_mapping(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((secret, cloud)) if !secret.is_empty() && !cloud.is_empty() => {
            Ok((secret.to_string(), cloud.to_string()))
        }
        _ => Err(format!("{text:?} is not SECRET=CLOUD")),
    }
}

#[derive(clap::Args)]
struct OperatorArgs {
    /// Kubeconfig file; when unset, $KUBECONFIG (a list of files, merged as kubectl does),
    /// else ~/.kube/config, else the in-cluster configuration.
    #[arg(long)]
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
    /// Keystone URL prefix credentials may use (repeat, or comma-separated); a Secret naming
    /// another auth_url is refused before any request. Unset: any Keystone.
    #[arg(long, env = "IMAGESHARE_ALLOWED_AUTH_URLS", value_delimiter = ',')]
    allowed_auth_url: Vec<String>,
    /// Glance URL prefix a credential's image_endpoint_override may use (repeat, or
    /// comma-separated). Unset: overrides are refused; the endpoint comes from the catalog.
    #[arg(
        long,
        env = "IMAGESHARE_ALLOWED_ENDPOINT_OVERRIDES",
        value_delimiter = ','
    )]
    allowed_endpoint_override: Vec<String>,
    /// Reconcile only the ImageShares this label selector matches (kubectl syntax, e.g.
    /// `imageshare.dev/shard=eu`), so several installations can split the work; each still
    /// watches all ImageShares, for overlaps. Unset: all.
    #[arg(long, env = "IMAGESHARE_SHARD_SELECTOR", value_parser = parse_shard)]
    shard_selector: Option<Shard>,
    /// Keystone's `[DEFAULT] max_db_limit` (default 1000): a project list that long may have
    /// been cut without being marked truncated, so it is refused; set it when the cloud
    /// raised it.
    #[arg(long, env = "IMAGESHARE_KEYSTONE_MAX_DB_LIMIT")]
    keystone_max_db_limit: Option<usize>,
}

fn parse_shard(text: &str) -> Result<Shard, String> {
    Shard::parse(text)
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
            .map_err(anyhow::Error::from)
            .map(|()| 0),
        Command::Operator(args) => operator(*args).await.map(|()| 0),
        Command::Plan(args) => plan(args).await,
        Command::Version => {
            println!("imageshare {VERSION} (commit {COMMIT})");
            Ok(0)
        }
        Command::Completion { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "imageshare", &mut std::io::stdout());
            Ok(0)
        }
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
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

/// A Kubernetes client and the namespace of the kubeconfig's current context: from the
/// given kubeconfig file, else as kubectl finds one ($KUBECONFIG, a list of files merged,
/// missing ones skipped; else ~/.kube/config), else the in-cluster configuration.
async fn kube_client(kubeconfig: Option<&PathBuf>) -> anyhow::Result<(kube::Client, String)> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => match std::env::var_os("KUBECONFIG").filter(|list| !list.is_empty()) {
            // As kubectl: a list of files, merged in order (the first to set a value wins),
            // missing files skipped.
            Some(list) => {
                let paths: Vec<PathBuf> = std::env::split_paths(&list)
                    .filter(|path| path.is_file())
                    .collect();
                anyhow::ensure!(
                    !paths.is_empty(),
                    "none of the files in $KUBECONFIG ({}) exists",
                    list.to_string_lossy()
                );
                let mut merged = kube::config::Kubeconfig::default();
                for path in &paths {
                    let next = kube::config::Kubeconfig::read_from(path)
                        .with_context(|| format!("reading kubeconfig {}", path.display()))?;
                    merged = merged
                        .merge(next)
                        .with_context(|| format!("merging kubeconfig {}", path.display()))?;
                }
                kube::Config::from_custom_kubeconfig(merged, &Default::default()).await?
            }
            None => kube::Config::infer()
                .await
                .context("no kubeconfig given and none found (~/.kube/config or in-cluster)")?,
        },
    };
    let namespace = config.default_namespace.clone();
    Ok((kube::Client::try_from(config)?, namespace))
}

/// The `plan` command: a dry run of a pass for one ImageShare of the cluster, or for every
/// ImageShare in manifest files; the exit code says whether anything would change.
async fn plan(args: PlanArgs) -> anyhow::Result<u8> {
    imageshare::openstack::install_crypto_provider();
    let clouds = imageshare::openstack::Clouds::new(4);
    let mut report = dryrun::Report::default();
    if let Some(name) = &args.name {
        let (client, context_namespace) = kube_client(args.kubeconfig.as_ref()).await?;
        let namespace = args.namespace.clone().unwrap_or(context_namespace);
        let shares: kube::Api<ImageShare> = kube::Api::namespaced(client.clone(), &namespace);
        let share = shares
            .get(name)
            .await
            .with_context(|| format!("reading imageshare {namespace}/{name}"))?;
        let listed = if args.all_namespaces {
            kube::Api::<ImageShare>::all(client.clone())
                .list(&Default::default())
                .await
                .context("listing imageshares in all namespaces (-A)")?
        } else {
            shares
                .list(&Default::default())
                .await
                .with_context(|| format!("listing imageshares in namespace {namespace}"))?
        };
        let all: Vec<Arc<ImageShare>> = listed.items.into_iter().map(Arc::new).collect();
        let sessions = Sessions::new(&client, &clouds, &share);
        let mut object = plan_one(sessions, &share, "cluster", &all).await;
        if !args.all_namespaces {
            object.notes.push(format!(
                "overlaps with ImageShares of namespaces other than {namespace} not checked \
                 (-A checks them, as the operator does)"
            ));
        }
        report.push(object);
    } else {
        let local = LocalClouds {
            yaml: read_clouds_yaml(args.clouds.as_ref())?,
            map: args.cloud.into_iter().collect(),
        };
        let namespace = args.namespace.as_deref().unwrap_or("default");
        let found = dryrun::load(&args.files, namespace)?;
        anyhow::ensure!(!found.is_empty(), "no ImageShare in {:?}", args.files);
        let all: Vec<Arc<ImageShare>> = found.iter().map(|(_, s)| Arc::new(s.clone())).collect();
        for (source, share) in &found {
            let sessions = Sessions::local(&clouds, local.clone());
            report.push(plan_one(sessions, share, source, &all).await);
        }
    }
    match args.output {
        Output::Text => print!("{}", dryrun::render_text(&report)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
    }
    Ok(report.exit_code())
}

/// The plan of one object: a dry run of its pass (the operator's, changing nothing).
async fn plan_one(
    sessions: Sessions<'_>,
    share: &ImageShare,
    source: &str,
    all: &[Arc<ImageShare>],
) -> dryrun::ObjectPlan {
    match controller::preview(sessions, share, all).await {
        Ok(result) => dryrun::object_plan(share, source, &result),
        // The previewed pass writes nothing, so it has no Kubernetes call to fail.
        Err(e) => {
            let failure = controller::Failure::transient(e.to_string());
            let result = controller::report::PassResult {
                spec: share.spec.clone(),
                outcome: Err(failure),
            };
            dryrun::object_plan(share, source, &result)
        }
    }
}

/// The local clouds.yaml: the given file, else the first of openstacksdk's usual places.
fn read_clouds_yaml(path: Option<&PathBuf>) -> anyhow::Result<String> {
    let candidates: Vec<PathBuf> = match path {
        Some(path) => vec![path.clone()],
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            [
                Some(PathBuf::from("clouds.yaml")),
                home.map(|h| h.join(".config/openstack/clouds.yaml")),
                Some(PathBuf::from("/etc/openstack/clouds.yaml")),
            ]
            .into_iter()
            .flatten()
            .collect()
        }
    };
    for candidate in &candidates {
        if candidate.is_file() {
            return std::fs::read_to_string(candidate)
                .with_context(|| format!("reading {}", candidate.display()));
        }
    }
    anyhow::bail!(
        "no clouds.yaml found (tried {candidates:?}); set OS_CLIENT_CONFIG_FILE or --clouds"
    )
}

async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format, &args.log_level).map_err(anyhow::Error::msg)?;
    tracing::info!(
        version = VERSION,
        commit = COMMIT,
        "imageshare operator {VERSION} (commit {COMMIT})"
    );
    imageshare::openstack::install_crypto_provider();
    let (client, _) = kube_client(args.kubeconfig.as_ref()).await?;
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
    if args.allowed_auth_url.is_empty() {
        tracing::warn!(
            "no --allowed-auth-url: a credential Secret may name any Keystone URL, which the \
             operator then contacts; set the cloud(s) you run (docs/tenancy.md)"
        );
    }
    let options = Options {
        shard: args.shard_selector.unwrap_or_else(Shard::all),
        namespace: args.namespace,
        concurrency: args.concurrency,
        default_resync: args.resync_period,
        per_cloud_limit: args.per_cloud_limit,
        readiness,
        policy: imageshare::openstack::CloudPolicy {
            auth_urls: args.allowed_auth_url,
            endpoint_overrides: args.allowed_endpoint_override,
            keystone_max_db_limit: args.keystone_max_db_limit,
        },
        fence: Fence::unfenced(),
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
        // Holding the Lease, or running without leader election.
        metrics.set_leader(true);
        // This term's fence: every Glance and status write asks it first.
        let options = Options {
            fence: leadership
                .as_ref()
                .map_or_else(Fence::unfenced, Leadership::fence),
            ..options.clone()
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
            () = controller::run(client.clone(), options, metrics.clone()) => false,
            () = lost => true,
        };
        if lost_it {
            metrics.set_leader(false);
            tracing::warn!("lost the leader lease; stopped reconciling, waiting for it again");
            continue;
        }
        // SIGTERM: the controller finished its in-flight passes; hand the Lease over now.
        metrics.set_leader(false);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        Cli::try_parse_from(std::iter::once("imageshare").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn plan_leaves_the_namespace_to_the_kubeconfig_and_lists_one_namespace() {
        let Ok(Cli {
            command: Command::Plan(args),
        }) = parse(&["plan", "golden"])
        else {
            panic!("plan NAME does not parse");
        };
        assert_eq!(args.namespace, None);
        assert!(!args.all_namespaces);
        let Ok(Cli {
            command: Command::Plan(args),
        }) = parse(&["plan", "-A", "-n", "a", "golden"])
        else {
            panic!("plan -A -n NS NAME does not parse");
        };
        assert_eq!(args.namespace.as_deref(), Some("a"));
        assert!(args.all_namespaces);
        assert!(
            parse(&["plan", "-A", "-f", "x.yaml"]).is_err(),
            "-A is for the cluster only"
        );
    }

    #[test]
    fn kubeconfig_is_not_read_from_the_environment_as_one_path() {
        // KUBECONFIG is a list (a:b); kube's loader reads it when --kubeconfig is not given.
        let command = <Cli as clap::CommandFactory>::command();
        for sub in ["operator", "plan"] {
            let sub = command
                .find_subcommand(sub)
                .map(|c| c.get_arguments().collect::<Vec<_>>());
            let kubeconfig = sub
                .into_iter()
                .flatten()
                .find(|a| a.get_id() == "kubeconfig");
            assert!(kubeconfig.is_some_and(|a| a.get_env().is_none()));
        }
    }

    #[test]
    fn version_and_completion_parse() {
        assert!(matches!(
            parse(&["version"]),
            Ok(Cli {
                command: Command::Version
            })
        ));
        assert!(matches!(
            parse(&["completion", "zsh"]),
            Ok(Cli {
                command: Command::Completion {
                    shell: clap_complete::Shell::Zsh
                }
            })
        ));
        assert!(parse(&["completion", "cmd.exe"]).is_err());
        assert!(LONG_VERSION.contains(COMMIT) && LONG_VERSION.starts_with(VERSION));
    }
}
