//! The local stack as `make up` leaves it: its state directory, clouds.yaml and the Keystone
//! identities in it, its scripts, the operator stack/operator.sh runs, and extra replicas of
//! the operator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The repository this harness belongs to (the parent of its own folder).
pub fn repo_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testbed/ lies in the repository")
}

/// Where `make up` left its state.
pub fn state_dir() -> PathBuf {
    std::env::var_os("IMAGESHARE_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_dir().join(".stack"))
}

/// clouds.yaml of the local stack, parsed.
pub fn clouds() -> &'static Value {
    static CLOUDS: OnceLock<Value> = OnceLock::new();
    CLOUDS.get_or_init(|| {
        let text = std::fs::read_to_string(state_dir().join("clouds.yaml"))
            .expect("the local stack is up (make up): .stack/clouds.yaml");
        serde_saphyr::from_str(&text).expect("clouds.yaml parses")
    })
}

/// Keystone project IDs of the local identities (producer, consumer-a, ...).
pub fn project_id(identity: &str) -> String {
    static IDS: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    let ids = IDS.get_or_init(|| {
        std::fs::read_to_string(state_dir().join("projects.env"))
            .expect("projects.env")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    let key = format!("{}_PROJECT_ID", identity.to_uppercase().replace('-', "_"));
    ids.get(&key).cloned().expect("known identity")
}

/// clouds.yaml text holding only `identity`'s entry, named `openstack`, optionally with a
/// different password.
pub fn clouds_yaml_for(identity: &str, password: Option<&str>) -> String {
    let mut entry = clouds()["clouds"][identity].clone();
    if let Some(p) = password {
        entry["auth"]["password"] = json!(p);
    }
    as_clouds_yaml(entry)
}

/// clouds.yaml text holding only `identity`'s entry, named `openstack`, reaching Glance at
/// `glance` instead of the catalog's address (image_endpoint_override).
pub fn clouds_yaml_via(identity: &str, glance: &str) -> String {
    let mut entry = clouds()["clouds"][identity].clone();
    entry["image_endpoint_override"] = json!(glance);
    as_clouds_yaml(entry)
}

/// A clouds.yaml with `entry` as its cloud `openstack`.
pub fn as_clouds_yaml(entry: Value) -> String {
    serde_saphyr::to_string(&json!({"clouds": {"openstack": entry}})).expect("yaml")
}

/// A name no other test or run uses (`e2e-<prefix>-<random>`), for images and tags.
pub fn unique(prefix: &str) -> String {
    format!("e2e-{prefix}-{:08x}", fastrand::u32(..))
}

/// Runs the stack's openstack CLI (from its virtualenv) as `cloud` of the stack's
/// clouds.yaml; returns its standard output, panics with its error on failure.
pub fn openstack(cloud: &str, args: &[&str]) -> String {
    let script = r#"source "$1/stack/lib.sh"; shift; exec "$VENV_DIR/bin/openstack" "$@""#;
    let out = std::process::Command::new("bash")
        .args(["-c", script, "openstack"])
        .arg(repo_dir())
        .args(["--os-cloud", cloud])
        .args(args)
        .env("OS_CLIENT_CONFIG_FILE", state_dir().join("clouds.yaml"))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "openstack {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Runs a stack script, returning its standard output; panics with its error on failure.
pub fn stack(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new("bash")
        .arg(repo_dir().join("stack").join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The pid of the operator started by stack/operator.sh.
pub fn operator_pid() -> u32 {
    std::fs::read_to_string(state_dir().join("pids/operator.pid"))
        .expect("operator pid file")
        .trim()
        .parse()
        .expect("a pid")
}

/// kill -9 of the operator, then a new start as stack/operator.sh does it (it returns once
/// /readyz answers), with the binary `bin` when given.
pub fn crash_and_restart_operator(bin: Option<&str>) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &operator_pid().to_string()])
        .status();
    let env: Vec<(&str, &str)> = bin.map(|b| ("IMAGESHARE_BIN", b)).into_iter().collect();
    stack("operator.sh", &[], &env);
}

/// Starts an extra replica of the operator binary `bin` (a test passes
/// `env!("CARGO_BIN_EXE_imageshare")`) with identity `name` on Lease `lease`, watching only
/// `namespace`, with `kubeconfig` (the operator's own when None); its log (in `format`) goes
/// to logs/LEASE-NAME.log.
pub fn replica(
    bin: &str,
    name: &str,
    lease: &str,
    namespace: &str,
    kubeconfig: Option<&Path>,
    format: &str,
) -> std::process::Child {
    let log = state_dir().join(format!("logs/{lease}-{name}.log"));
    let own = state_dir().join("operator.kubeconfig");
    std::process::Command::new(bin)
        .args([
            "operator",
            "--log-format",
            format,
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .args(["--namespace", namespace, "--leader-election"])
        .args(["--leader-election-lease", lease])
        .args(["--leader-election-identity", name])
        .arg("--kubeconfig")
        .arg(kubeconfig.unwrap_or(&own))
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("start a replica")
}

/// The operator's log so far (to check that no secret leaks into it).
pub fn operator_log() -> String {
    std::fs::read_to_string(state_dir().join("logs/operator.log")).unwrap_or_default()
}

/// Prints one row of the reliability table (docs/reliability.md, collected by `make chaos`):
/// the fault, what the operator did, the figures measured.
pub fn row(fault: &str, behaviour: &str, figures: &str) {
    println!("chaos-row: | {fault} | {behaviour} | {figures} |");
}
