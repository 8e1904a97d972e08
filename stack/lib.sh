# shellcheck shell=bash
# Shared settings for the local stack scripts: versions, ports, paths, and helpers.
# Sourced by the other scripts in this folder; does no I/O by itself beyond mkdir.

set -euo pipefail

STACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$STACK_DIR/.." && pwd)"

# Versions (pinned).
KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KEYSTONE_VERSION="${KEYSTONE_VERSION:-30.0.0}"
GLANCE_VERSION="${GLANCE_VERSION:-33.0.0}"
OSC_VERSION="${OSC_VERSION:-10.5.0}"
HELM_VERSION="${HELM_VERSION:-v3.22.0}"   # packaging check (deploy-check.sh) and installs (e2e-pod.sh)
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"   # the node (node.sh)
CNI_VERSION="${CNI_VERSION:-v1.10.0}"
GGCR_VERSION="v0.22.1"   # go-containerregistry, pinned in stack/imagetool/go.mod

# Cache outside git: built binaries, Go module/build caches, the Python virtualenv.
CACHE_DIR="${IMAGESHARE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/imageshare-stack}"
BIN_DIR="$CACHE_DIR/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
HELM_BIN_DIR="$CACHE_DIR/bin/helm-$HELM_VERSION"
NODE_BIN_DIR="$CACHE_DIR/bin/containerd-$CONTAINERD_VERSION"
CNI_BIN_DIR="$CACHE_DIR/bin/cni-$CNI_VERSION"
VENV_DIR="$CACHE_DIR/venv/keystone-$KEYSTONE_VERSION-glance-$GLANCE_VERSION"

# Runtime state (data dirs, logs, pids, kubeconfig, clouds.yaml): inside the repo, ignored by git.
STATE_DIR="${IMAGESHARE_STATE:-$REPO_DIR/.stack}"
LOG_DIR="$STATE_DIR/logs"
PID_DIR="$STATE_DIR/pids"
KUBECONFIG_PATH="$STATE_DIR/kubeconfig"
CLOUDS_PATH="$STATE_DIR/clouds.yaml"

# Ports on 127.0.0.1, chosen away from the usual 2379/6443/5000/9292.
ETCD_PORT="${ETCD_PORT:-23790}"
ETCD_PEER_PORT="${ETCD_PEER_PORT:-23800}"
KUBE_PORT="${KUBE_PORT:-26443}"
KCM_PORT="${KCM_PORT:-20257}"   # kube-controller-manager's own HTTPS port (health checks)
KEYSTONE_PORT="${KEYSTONE_PORT:-25000}"
GLANCE_PORT="${GLANCE_PORT:-29292}"     # Glance of region RegionOne
GLANCE2_PORT="${GLANCE2_PORT:-29293}"   # a second, independent Glance: region RegionTwo
OPERATOR_PORT="${OPERATOR_PORT:-28080}"
# The node (NODE=1, stack/node.sh): kubelet, kube-scheduler, and the pod network whose gateway
# is the node's address.
NODE="${NODE:-0}"
KUBELET_PORT="${KUBELET_PORT:-20250}"
KUBELET_HEALTHZ_PORT="${KUBELET_HEALTHZ_PORT:-20248}"
SCHEDULER_PORT="${SCHEDULER_PORT:-20259}"
POD_CIDR="${POD_CIDR:-10.213.0.0/24}"
NODE_IP="${POD_CIDR%.*}.1"

# The two regions of the test bed's Keystone catalog: RegionOne's image endpoints are Glance
# on GLANCE_PORT, RegionTwo's the second Glance on GLANCE2_PORT (own database, own images).
REGION_ONE=RegionOne
REGION_TWO=RegionTwo
# Glance's image_member_quota (members per image; Glance's default is 128), on both Glances:
# high enough to share one image with 2,000 projects.
GLANCE_MEMBER_QUOTA="${GLANCE_MEMBER_QUOTA:-3000}"
# Keystone's [DEFAULT] max_db_limit (empty: Keystone's default, 1000), the most rows one list
# answers. Keystone 30 cuts a list asked without `limit` there without saying so (no
# "truncated", no next link), and filters by tag after the cut. `make bench` raises it for its
# 2,000 tagged projects; the stack otherwise keeps Keystone's default, as clouds have it.
KEYSTONE_MAX_DB_LIMIT="${KEYSTONE_MAX_DB_LIMIT:-}"

# Demo/test identities. Local-only throwaway passwords for a loopback test bed.
ADMIN_PASSWORD="${ADMIN_PASSWORD:-stack-admin-secret}"
USER_PASSWORD="${USER_PASSWORD:-stack-user-secret}"

# The test bed's operator (and every replica the tests start) may use the loopback Keystone
# and loopback Glance endpoint overrides (the tests' fault proxies); anything else is refused.
export IMAGESHARE_ALLOWED_AUTH_URLS="${IMAGESHARE_ALLOWED_AUTH_URLS:-http://127.0.0.1:}"
export IMAGESHARE_ALLOWED_ENDPOINT_OVERRIDES="${IMAGESHARE_ALLOWED_ENDPOINT_OVERRIDES:-http://127.0.0.1:}"
# The operator knows Keystone's max_db_limit when the stack raised it (see above).
if [[ -n "$KEYSTONE_MAX_DB_LIMIT" ]]; then
  export IMAGESHARE_KEYSTONE_MAX_DB_LIMIT="$KEYSTONE_MAX_DB_LIMIT"
fi

export GOMODCACHE="$CACHE_DIR/go/mod"
export GOCACHE="$CACHE_DIR/go/build"
export GOFLAGS="-buildvcs=false"
export PIP_CACHE_DIR="$CACHE_DIR/pip"

die() { echo "stack: error: $*" >&2; exit 1; }
log() { echo "stack: $*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "missing tool '$1': $2"
}

# port_free PORT -> fails with a clear line if something listens on 127.0.0.1:PORT.
port_free() {
  local port="$1" name="$2"
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "port 127.0.0.1:$port for $name is already in use (set ${name^^}_PORT to another port, or run 'make down')"
  fi
}

# kubectl ARGS... -> the locally built kubectl as the stack's admin.
kubectl() { "$BIN_DIR/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# start_bg NAME CMD... -> starts CMD in the background, output to $LOG_DIR/NAME.log, pid file.
start_bg() {
  local name="$1"; shift
  nohup "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$PID_DIR/$name.pid"
}

# alive PID -> true if PID runs and is not a zombie.
alive() {
  local stat
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
  stat="${stat##*) }"
  [[ "${stat:0:1}" != Z ]]
}

# wait_for NAME TIMEOUT CHECK... -> polls CHECK until it succeeds; on failure stops the stack
# and dies with one line naming NAME and its log.
wait_for() {
  local name="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if ! alive "$(cat "$PID_DIR/$name.pid" 2>/dev/null)"; then
      die "$name exited during start-up; see $LOG_DIR/$name.log (last lines: $(tail -3 "$LOG_DIR/$name.log" | tr '\n' ' '))"
    fi
    if ((SECONDS >= deadline)); then
      die "$name not ready after ${timeout}s; see $LOG_DIR/$name.log"
    fi
    sleep 0.3
  done
}

# stop_pidfile NAME [SIGNAL] -> SIGNAL (default TERM), wait up to 10 s, then KILL; silent when
# nothing runs. Only kills a process whose command line mentions $STATE_DIR (a stale pid file
# may name someone else).
stop_pidfile() {
  local file="$PID_DIR/$1.pid" sig="${2:-TERM}" pid i
  [[ -f "$file" ]] || return 0
  pid="$(cat "$file")"
  if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$STATE_DIR/"; then
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

mkdir -p "$CACHE_DIR/go"   # build logs and Go caches live here
