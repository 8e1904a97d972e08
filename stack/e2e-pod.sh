#!/usr/bin/env bash
# `make e2e-pod`: the operator as a pod. Starts the stack with a node (NODE=1), builds the
# operator image (make image) and loads it into the node's containerd, then installs the
# operator twice, each time unmodified from this repository, and checks it does its job:
#   1. `kubectl apply -k deploy/base` (2 replicas, leader election): both pods Ready through
#      their probes, the start-up log line names the version and commit, the demo
#      ImageShares InSync, the leader pod deleted -> the Lease moves to the other replica,
#      which reconciles the next change; then uninstalled (demo namespace first).
#   2. `helm install` of deploy/helm/imageshare with 1 replica: Ready, demo InSync, the pod
#      deleted -> the Deployment's new pod carries on; `helm upgrade --set replicas=2` ->
#      leader election, one holder; the holder deleted -> the Lease is handed over.
# The pods reach the API server as the `kubernetes` Service and Keystone/Glance at the node's
# address (stack/node.sh). Stops everything afterwards, also on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/kube.sh"
source "$STACK_DIR/node.sh"
export NODE=1
shopt -s inherit_errexit   # a failure inside $(...) fails the step too
trap 'rc=$?; ((rc)) && pod_debug; bash "$STACK_DIR/down.sh"; exit $rc' EXIT
start=$SECONDS
helm() { "$HELM_BIN_DIR/helm" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
step() { log "e2e-pod: $* ($((SECONDS - start))s)"; }
fail() { die "e2e-pod: $*"; }

# pod_debug -> on failure: pods, events and operator logs, to see why.
pod_debug() {
  [[ -f "$KUBECONFIG_PATH" ]] || return 0
  {
    kubectl get pods -A -o wide
    kubectl get events -A --sort-by=.lastTimestamp | tail -30
    for ns in imageshare-system imageshare; do
      kubectl -n "$ns" logs -l app.kubernetes.io/name=imageshare --tail=30 --prefix
    done
    kubectl get imageshares -A
  } >&2 2>&1 || true
}

bash "$STACK_DIR/build-helm.sh"
bash "$STACK_DIR/up.sh"
step "stack with node up"
IMAGE_TARBALL="$(bash "$STACK_DIR/image.sh")"
node_import "$IMAGE_TARBALL"
COMMIT="$(git -C "$REPO_DIR" rev-parse HEAD)"
step "image $(basename "$IMAGE_TARBALL") ($(du -h "$IMAGE_TARBALL" | cut -f1)) loaded into the node"

# The demo's Secrets with the address a pod reaches Keystone at, and the catalog's internal
# image endpoint (the node's address; stack/openstack.sh).
export EXAMPLES_KEYSTONE_URL="http://$NODE_IP:$KEYSTONE_PORT/v3" EXAMPLES_INTERFACE=internal

# wait_rollout NS DEPLOYMENT -> every replica updated and Ready (through its probes).
wait_rollout() {
  kubectl -n "$1" rollout status "deployment/$2" --timeout=180s >/dev/null ||
    fail "deployment $1/$2 not rolled out within 180s"
}

# lease_holder NS LEASE -> the holder's identity (the pod name), empty when none.
lease_holder() { kubectl -n "$1" get lease "$2" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true; }

# failover NS LEASE -> deletes the Lease holder's pod and waits for another replica to hold
# the Lease; the holder releases it on SIGTERM, so that takes less than the 15 s lease
# duration (a crash would take longer). Prints "old new".
failover() {
  local old new t0
  old="$(wait_holder "$1" "$2" "")"
  t0=$SECONDS
  kubectl -n "$1" delete pod "$old" --wait=false >/dev/null
  new="$(wait_holder "$1" "$2" "$old")"
  ((SECONDS - t0 < 15)) || fail "lease $1/$2 moved from $old to $new after $((SECONDS - t0))s: not released on SIGTERM"
  echo "$old $new"
}

# wait_holder NS LEASE NOT -> waits until a holder other than NOT (and not empty) holds the
# Lease and is a running pod; prints it.
wait_holder() {
  local deadline=$((SECONDS + 90)) holder
  while ((SECONDS < deadline)); do
    holder="$(lease_holder "$1" "$2")"
    if [[ -n "$holder" && "$holder" != "$3" ]] &&
      [[ "$(kubectl -n "$1" get pod "$holder" -o jsonpath='{.status.phase}' 2>/dev/null)" == Running ]]; then
      echo "$holder"
      return 0
    fi
    sleep 1
  done
  fail "lease $1/$2 not held by a running pod other than '${3:-}' within 90s (holder: '$(lease_holder "$1" "$2")')"
}

# demo_insync -> the demo ImageShares all Ready with reason InSync, for their current
# generation (all-golden and golden-ubuntu overlap on one image and agree).
demo_insync() {
  DEMO_NO_WAIT=1 bash "$STACK_DIR/demo.sh" >"$LOG_DIR/demo.log" 2>&1 || fail "demo: $(tail -5 "$LOG_DIR/demo.log")"
  wait_insync
}
# wait_insync [NAME [OR_REASON]] -> the demo ImageShares (or just NAME) Ready InSync (or
# OR_REASON) for their generation.
wait_insync() {
  local deadline=$((SECONDS + 120)) out row ok
  while ((SECONDS < deadline)); do
    out="$(kubectl -n demo get imageshares ${1:+--field-selector metadata.name="$1"} -o jsonpath='{range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].reason}@{.status.observedGeneration}/{.metadata.generation}{" "}{end}')"
    ok=1
    for row in $out; do
      [[ "$row" =~ ^[a-z0-9-]+=(InSync|${2:-InSync})@([0-9]+)/([0-9]+)$ && "${BASH_REMATCH[2]}" == "${BASH_REMATCH[3]}" ]] || ok=0
    done
    [[ -n "$out" ]] && ((ok)) && return 0
    sleep 1
  done
  fail "demo ImageShares not InSync for their generation within 120s: $out"
}

# change_and_check -> a change after a failover is reconciled: consumer-b leaves golden-ubuntu
# (revocation through the operator pod, checked in Glance), then comes back.
change_and_check() {
  local image members
  image="$(kubectl -n demo get imageshare golden-ubuntu -o jsonpath='{.status.images[0].id}')"
  kubectl -n demo patch imageshare golden-ubuntu --type json -p '[{"op":"remove","path":"/spec/members/1"}]' >/dev/null
  wait_insync golden-ubuntu
  members="$(OS_CLIENT_CONFIG_FILE="$CLOUDS_PATH" "$VENV_DIR/bin/openstack" --os-cloud producer image member list "$image" -f value -c "Member ID")"
  ! grep -q "$CONSUMER_B_PROJECT_ID" <<<"$members" || fail "consumer-b still a member of $image after the change: $members"
  # Back as it was.
  bash "$STACK_DIR/examples.sh" | kubectl apply -n demo -f - >/dev/null
  wait_insync
}
# shellcheck source=/dev/null
source "$STATE_DIR/projects.env"

# --- 1. kustomize: kubectl apply -k deploy/base -------------------------------------------
NS=imageshare-system
kubectl apply -k "$REPO_DIR/deploy/base" >"$LOG_DIR/install-kustomize.log" 2>&1 ||
  fail "kubectl apply -k deploy/base: $(tail -3 "$LOG_DIR/install-kustomize.log")"
wait_rollout "$NS" imageshare-operator
# The examples' placeholders are rejected by the CRD until filled in.
out="$(kubectl apply --dry-run=server -n default -f "$REPO_DIR/examples/share-by-name.yaml" 2>&1)" &&
  fail "examples/share-by-name.yaml with its placeholders was accepted: $out"
grep -q "project must be a Keystone project ID" <<<"$out" || fail "placeholders refused for another reason: $out"
step "kubectl apply -k deploy/base: $(kubectl -n "$NS" get pods -l app.kubernetes.io/name=imageshare --no-headers | awk '{print $1 " " $2}' | tr '\n' ' ')"
for pod in $(kubectl -n "$NS" get pods -l app.kubernetes.io/name=imageshare -o name); do
  kubectl -n "$NS" logs "$pod" | head -5 | grep -q "imageshare operator $(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_DIR/Cargo.toml" | head -1) (commit $COMMIT)" ||
    fail "$pod: no start-up line with the version and commit $COMMIT in its log: $(kubectl -n "$NS" logs "$pod" | head -3)"
done
demo_insync
step "demo ImageShares InSync through the operator pod"
# The CLI as a namespace user would run it: KUBECONFIG a list (a missing file, skipped as
# kubectl does; cluster and user; the context with namespace demo), no -n: plan finds the
# object in the context's namespace and, InSync, has nothing to change (exit 0).
kc="$STATE_DIR/kubeconfig.d"
mkdir -p "$kc"
sed '/^contexts:/,$d' "$KUBECONFIG_PATH" >"$kc/credentials"
printf 'apiVersion: v1\nkind: Config\ncontexts:\n- name: demo\n  context: {cluster: local, user: admin, namespace: demo}\ncurrent-context: demo\n' >"$kc/context"
out="$(KUBECONFIG="$kc/missing:$kc/credentials:$kc/context" "${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/imageshare" plan golden-ubuntu 2>&1)" ||
  fail "imageshare plan with KUBECONFIG=a:b and the context's namespace: exit $?: $out"
step "imageshare plan with a KUBECONFIG list and the context's namespace: nothing to change"
pair="$(failover "$NS" imageshare-operator)"
read -r leader new <<<"$pair"
step "leader $leader deleted: Lease released on SIGTERM, held by $new"
change_and_check
wait_rollout "$NS" imageshare-operator
step "a change after the failover reconciled; deployment back to 2 Ready replicas"
# Uninstall in the documented order: ImageShares first (the operator removes their members),
# then the install.
kubectl delete namespace demo --timeout=120s >/dev/null || fail "namespace demo not deleted within 120s"
kubectl delete -k "$REPO_DIR/deploy/base" --timeout=120s >/dev/null 2>&1 || fail "kubectl delete -k deploy/base failed"
step "uninstalled (kustomize)"

# --- 2. helm install, pod deletion, helm upgrade to 2 replicas ----------------------------
NS=imageshare
helm install imageshare "$REPO_DIR/deploy/helm/imageshare" --namespace "$NS" --create-namespace \
  --set replicas=1 --set "allowedAuthUrls[0]=http://$NODE_IP:$KEYSTONE_PORT/" \
  --wait --timeout 180s >"$LOG_DIR/install-helm.log" 2>&1 ||
  fail "helm install: $(tail -3 "$LOG_DIR/install-helm.log")"
grep -q "kubectl -n $NS get pods -l app.kubernetes.io/instance=imageshare" "$LOG_DIR/install-helm.log" ||
  fail "helm install: NOTES.txt does not say how to find the pods"
wait_rollout "$NS" imageshare
step "helm install: $(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=imageshare --no-headers | awk '{print $1 " " $2}')"
demo_insync
step "demo ImageShares InSync through the operator pod"
old="$(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=imageshare -o jsonpath='{.items[0].metadata.name}')"
kubectl -n "$NS" delete pod "$old" >/dev/null
wait_rollout "$NS" imageshare
change_and_check
step "pod $old deleted: $(kubectl -n "$NS" get pods -l app.kubernetes.io/instance=imageshare --no-headers | awk '{print $1}') carries on (a change reconciled)"
helm upgrade imageshare "$REPO_DIR/deploy/helm/imageshare" --namespace "$NS" --reuse-values \
  --set replicas=2 --wait --timeout 180s >>"$LOG_DIR/install-helm.log" 2>&1 ||
  fail "helm upgrade: $(tail -3 "$LOG_DIR/install-helm.log")"
wait_rollout "$NS" imageshare
leader="$(wait_holder "$NS" imageshare "")"
step "helm upgrade --set replicas=2: leader election on, Lease held by $leader"
pair="$(failover "$NS" imageshare)"
read -r leader new <<<"$pair"
change_and_check
step "leader $leader deleted: Lease handed over to $new, a change reconciled"
helm uninstall imageshare --namespace "$NS" --wait >/dev/null 2>&1 || true
step "passed"
