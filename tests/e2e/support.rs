//! Harness for the end-to-end tests: the real local stack (`make up`) and the operator running
//! as its own ServiceAccount (`stack/operator.sh`). Each test gets a fresh namespace with a
//! random suffix and Secrets for every local identity; OpenStack is driven with plain HTTP
//! calls (the tests' own, independent of the operator's client).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use imageshare::api::{ImageShare, ImageShareSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

/// Where `make up` left its state.
pub fn state_dir() -> PathBuf {
    std::env::var_os("IMAGESHARE_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".stack"))
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

/// A `credentialsRef` source for the Secret `secret` of a [`TestNs`], cloud `openstack`.
pub fn creds(secret: &str) -> Value {
    json!({"credentialsRef": {"secretName": secret, "cloudName": "openstack"}})
}

/// A name no other test or run uses (`e2e-<prefix>-<random>`), for images and tags.
pub fn unique(prefix: &str) -> String {
    format!("e2e-{prefix}-{:08x}", fastrand::u32(..))
}

/// Admin kube client (cluster-admin through the stack's static token).
pub async fn admin() -> Client {
    let path = state_dir().join("kubeconfig");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    Client::try_from(config).expect("client")
}

/// A test namespace with credentials Secrets `producer-cloud`, `consumer-{a,b,c}-cloud`.
pub struct TestNs {
    /// Namespace name.
    pub name: String,
    /// Admin client.
    pub client: Client,
}

impl TestNs {
    /// Creates `e2e-<prefix>-<random>` and its Secrets.
    pub async fn new(prefix: &str) -> TestNs {
        imageshare::openstack::install_crypto_provider();
        let client = admin().await;
        let name = format!("e2e-{prefix}-{:06x}", fastrand::u32(..0xff_ffff));
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let t = TestNs { name, client };
        for identity in ["producer", "consumer-a", "consumer-b", "consumer-c"] {
            t.put_secret(
                &format!("{identity}-cloud"),
                &clouds_yaml_for(identity, None),
            )
            .await;
        }
        t
    }

    /// ImageShares in this namespace.
    pub fn shares(&self) -> Api<ImageShare> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Secrets in this namespace.
    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Creates or replaces a Secret with key clouds.yaml.
    pub async fn put_secret(&self, name: &str, clouds_yaml: &str) {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name},
            "stringData": {"clouds.yaml": clouds_yaml},
        }))
        .expect("secret");
        let api = self.secrets();
        let pp = kube::api::PatchParams::apply("e2e").force();
        api.patch(name, &pp, &kube::api::Patch::Apply(&secret))
            .await
            .expect("apply secret");
    }

    /// Deletes a Secret.
    pub async fn delete_secret(&self, name: &str) {
        self.secrets()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete secret");
    }

    /// Creates an ImageShare from a JSON spec.
    pub async fn create(&self, name: &str, spec: Value) -> ImageShare {
        let spec: ImageShareSpec = serde_json::from_value(spec).expect("spec");
        self.shares()
            .create(&PostParams::default(), &ImageShare::new(name, spec))
            .await
            .expect("create imageshare")
    }

    /// Merge-patches an ImageShare's spec.
    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.shares()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch imageshare");
    }

    /// Makes the operator run a pass of the ImageShare now (as a resync would) by changing an
    /// annotation: Glance has no watch API, so drift is otherwise noticed at the next resync.
    pub async fn poke(&self, name: &str) {
        let patch =
            json!({"metadata": {"annotations": {"e2e/poke": fastrand::u64(..).to_string()}}});
        self.shares()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect("annotate imageshare");
    }

    /// Waits until ImageShare `name`'s status describes its current generation, whatever
    /// the reason; returns the object.
    pub async fn wait_processed(&self, name: &str) -> ImageShare {
        wait_until(CONVERGE, || async {
            let s = self.shares().get(name).await.expect("get imageshare");
            let seen = s.status.as_ref().and_then(|st| st.observed_generation);
            (seen == s.metadata.generation).then_some(s)
        })
        .await
        .unwrap_or_else(|| panic!("{name}: its current generation was not processed"))
    }

    /// Waits until the ImageShare's Ready condition has `reason` for the current generation;
    /// returns the object. Panics with the last status seen on timeout.
    pub async fn wait_reason(&self, name: &str, reason: &str, timeout: Duration) -> ImageShare {
        let deadline = Instant::now() + timeout;
        loop {
            let share = self.shares().get(name).await.expect("get imageshare");
            let reached = share.ready_condition().is_some_and(|c| {
                c.reason == reason && c.observed_generation == share.metadata.generation
            });
            if reached {
                return share;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}: Ready reason {reason} not reached in {timeout:?}; last status: {:#?}",
                    share.status
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Deletes an ImageShare and waits until it is gone (finalizer released).
    pub async fn delete_and_wait_gone(&self, name: &str, timeout: Duration) {
        self.shares()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete imageshare");
        let gone = wait_until(timeout, || async {
            matches!(self.shares().get_opt(name).await, Ok(None)).then_some(())
        })
        .await;
        assert!(gone.is_some(), "{name} still exists after {timeout:?}");
    }

    /// Deletes the whole namespace and waits until the apiserver no longer has it (the
    /// namespace controller has deleted its content and every finalizer was released).
    /// Panics with the namespace's last status on timeout.
    pub async fn delete_namespace_and_wait_gone(&self, timeout: Duration) {
        let namespaces = Api::<Namespace>::all(self.client.clone());
        namespaces
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("delete namespace");
        let gone = wait_until(timeout, || async {
            matches!(namespaces.get_opt(&self.name).await, Ok(None)).then_some(())
        })
        .await;
        if gone.is_none() {
            let last = namespaces.get_opt(&self.name).await.ok().flatten();
            panic!(
                "namespace {} still exists after {timeout:?}; last status: {:#?}",
                self.name,
                last.and_then(|ns| ns.status)
            );
        }
    }

    /// Event reasons recorded for an object.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        self.events(name)
            .await
            .into_iter()
            .filter_map(|e| e.reason)
            .collect()
    }

    /// Whether ImageShare `name` gets an Event with `reason` within 10 s. Events follow the
    /// status write of a pass, so a test that saw the status must wait for them, not race.
    pub async fn has_event(&self, name: &str, reason: &str) -> bool {
        wait_until(Duration::from_secs(10), || async {
            let reasons = self.event_reasons(name).await;
            reasons.iter().any(|r| r == reason).then_some(())
        })
        .await
        .is_some()
    }

    /// The Events about ImageShare `name`.
    pub async fn events(&self, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.name);
        events
            .list(&Default::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect()
    }
}

/// Polls `check` every 500 ms until it returns Some or `timeout` passes.
pub async fn wait_until<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A request body for [`Os::send`].
enum Body {
    Json(Value),
    Patch(Value),
}

/// A Keystone-authenticated identity of the local stack, for the tests' own Glance calls.
pub struct Os {
    http: reqwest::Client,
    token: String,
    glance: String,
}

/// A project-scoped token of `identity` (producer, consumer-a, ..., admin) from the stack's
/// Keystone: the client, the token and the token body. A passing 5xx or a dropped
/// connection (Keystone reloading) is retried: it must not fail a test about something else.
pub async fn authenticate(identity: &str) -> (reqwest::Client, String, Value) {
    imageshare::openstack::install_crypto_provider();
    let auth = &clouds()["clouds"][identity]["auth"];
    let http = reqwest::Client::new();
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": auth["project_name"], "domain": {"name": "Default"}}}}});
    let url = format!(
        "{}/auth/tokens",
        auth["auth_url"].as_str().expect("auth_url")
    );
    for attempt in 1..=8 {
        match http.post(&url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => {
                let token = resp.headers()["x-subject-token"]
                    .to_str()
                    .expect("token")
                    .to_string();
                let answer: Value = resp.json().await.expect("token body");
                return (http, token, answer);
            }
            Ok(resp) if !resp.status().is_server_error() => {
                panic!("login {identity}: {}", resp.status())
            }
            _ => tokio::time::sleep(Duration::from_millis(250 * attempt)).await,
        }
    }
    panic!("login {identity}: keystone kept failing")
}

/// The (image, project) pairs of an ImageShare's ledger.
pub fn ledger_pairs(share: &ImageShare) -> std::collections::BTreeSet<(String, String)> {
    share
        .status
        .iter()
        .flat_map(|s| &s.ledger)
        .flat_map(|e| {
            e.images
                .iter()
                .flat_map(|i| e.projects.iter().map(move |p| (i.clone(), p.clone())))
        })
        .collect()
}

impl Os {
    /// Authenticates as `identity` (producer, consumer-a, ..., admin).
    pub async fn login(identity: &str) -> Os {
        let (http, token, catalog) = authenticate(identity).await;
        let glance = catalog["token"]["catalog"]
            .as_array()
            .expect("catalog")
            .iter()
            .find(|s| s["type"] == "image")
            .and_then(|s| {
                s["endpoints"]
                    .as_array()?
                    .iter()
                    .find(|e| e["interface"] == "public")
            })
            .and_then(|e| e["url"].as_str())
            .expect("image endpoint")
            .trim_end_matches('/')
            .to_string();
        Os {
            http,
            token,
            glance,
        }
    }

    /// One Glance call; retried on 5xx (a passing fault must not fail a test about something
    /// else). Returns status and JSON body (Null when not JSON).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body.map(Body::Json)).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Body>) -> (u16, Value) {
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}/v2{path}", self.glance))
                .header("X-Auth-Token", &self.token);
            match &body {
                Some(Body::Json(b)) => req = req.json(b),
                Some(Body::Patch(b)) => {
                    req = req
                        .header(
                            "Content-Type",
                            "application/openstack-images-v2.1-json-patch",
                        )
                        .body(b.to_string())
                }
                None => {}
            }
            let resp = req.send().await.expect("glance");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            attempt += 1;
            if status >= 500 && attempt < 8 {
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                continue;
            }
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return (status, value);
        }
    }

    /// The Glance base URL from the service catalog.
    pub fn glance_url(&self) -> &str {
        &self.glance
    }

    /// Creates an image (metadata only: membership needs no data) and returns its ID.
    pub async fn create_image(&self, name: &str, visibility: &str, tags: &[&str]) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/images",
                Some(json!({"name": name, "visibility": visibility, "tags": tags,
                    "disk_format": "raw", "container_format": "bare"})),
            )
            .await;
        assert_eq!(status, 201, "create image {name}: {body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Sets an image's visibility.
    pub async fn set_visibility(&self, image: &str, visibility: &str) {
        self.replace_image_field(image, "visibility", visibility)
            .await;
    }

    /// Replaces one field of an image (JSON patch), e.g. its name.
    pub async fn replace_image_field(&self, image: &str, field: &str, value: &str) {
        let patch = json!([{"op": "replace", "path": format!("/{field}"), "value": value}]);
        let (status, body) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/images/{image}"),
                Some(Body::Patch(patch)),
            )
            .await;
        assert_eq!(status, 200, "set image {field}: {body}");
    }

    /// Members of an image: project to status (as the producer).
    pub async fn members(&self, image: &str) -> BTreeMap<String, String> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/images/{image}/members"),
                None,
            )
            .await;
        assert_eq!(status, 200, "list members: {body}");
        body["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["member_id"].as_str().unwrap_or_default().to_string(),
                    m["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Adds a member by hand (as the producer).
    pub async fn add_member(&self, image: &str, project: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/images/{image}/members"),
                Some(json!({"member": project})),
            )
            .await;
        assert_eq!(status, 200, "add member: {body}");
    }

    /// Sets a member's status (as that member).
    pub async fn set_status(&self, image: &str, project: &str, status: &str) {
        let (code, body) = self
            .call(
                reqwest::Method::PUT,
                &format!("/images/{image}/members/{project}"),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(code, 200, "set member status: {body}");
    }

    /// Removes one tag from an image (as its owner).
    pub async fn remove_tag(&self, image: &str, tag: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::DELETE,
                &format!("/images/{image}/tags/{tag}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "remove tag {tag}: {body}");
    }

    /// IDs of the images this identity's default image list shows.
    pub async fn listed_images(&self) -> Vec<String> {
        let (status, body) = self
            .call(reqwest::Method::GET, "/images?limit=1000", None)
            .await;
        assert_eq!(status, 200, "list images: {body}");
        body["images"]
            .as_array()
            .expect("images")
            .iter()
            .filter_map(|i| i["id"].as_str().map(String::from))
            .collect()
    }
}

/// Runs the stack's openstack CLI (from its virtualenv) as `cloud` of the stack's
/// clouds.yaml; returns its standard output, panics with its error on failure.
pub fn openstack(cloud: &str, args: &[&str]) -> String {
    let script = r#"source "$1/stack/lib.sh"; shift; exec "$VENV_DIR/bin/openstack" "$@""#;
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            script,
            "openstack",
            env!("CARGO_MANIFEST_DIR"),
            "--os-cloud",
            cloud,
        ])
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
        .arg(format!("{}/stack/{script}", env!("CARGO_MANIFEST_DIR")))
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

/// Starts an extra replica of the operator with identity `name` on Lease `lease`, watching
/// only `namespace`, with `kubeconfig` (the operator's own when None); its log (in
/// `format`) goes to logs/LEASE-NAME.log.
pub fn replica(
    name: &str,
    lease: &str,
    namespace: &str,
    kubeconfig: Option<&std::path::Path>,
    format: &str,
) -> std::process::Child {
    let log = state_dir().join(format!("logs/{lease}-{name}.log"));
    let own = state_dir().join("operator.kubeconfig");
    std::process::Command::new(env!("CARGO_BIN_EXE_imageshare"))
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

/// Waits until every ImageShare of `t` is Ready with reason InSync for its current
/// generation, looking every 50 ms; returns how long that took. Panics after `timeout`.
pub async fn all_in_sync(t: &TestNs, timeout: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if let Ok(list) = t.shares().list(&Default::default()).await
            && list.items.iter().all(|s: &ImageShare| {
                s.ready_condition().is_some_and(|c| {
                    c.reason == "InSync" && c.observed_generation == s.metadata.generation
                })
            })
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "not all InSync within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Standard timeout for the operator to converge.
pub const CONVERGE: Duration = Duration::from_secs(60);
/// Timeout for changes only a resync notices (resyncPeriod 30s in those tests).
pub const RESYNC: Duration = Duration::from_secs(90);
