# shellcheck shell=bash
# The node half of the local stack: containerd (runc, CNI bridge network) and a kubelet
# registered with the local kube-apiserver, and kube-scheduler. Sourced by up.sh/down.sh after
# lib.sh and kube.sh. Defines node_start, node_stop and node_import.
#
# Networking: pods get addresses on a bridge ($NODE_BRIDGE, $POD_CIDR) whose gateway
# address is the node's address ($NODE_IP; the kubelet refuses a loopback one). The stack's
# services listen on 127.0.0.1 only; a pod reaches them at $NODE_IP through a NAT rule on
# the bridge (DNAT to 127.0.0.1, with route_localnet), and reaches the API server through
# the `kubernetes` Service address (10.0.0.1:443, no kube-proxy here: a second rule). A third
# does the same for the host's own connections to $NODE_IP. One
# node per machine: it uses the host's cgroups.

NODE_STATE="$STATE_DIR/node"
NODE_NAME="${NODE_NAME:-imageshare-node}"
NODE_BRIDGE="${NODE_BRIDGE:-isnode0}"
KUBERNETES_SERVICE_IP=10.0.0.1   # first address of kube.sh's --service-cluster-ip-range
CONTAINERD_SOCK="$NODE_STATE/containerd/containerd.sock"
PAUSE_IMAGE="localhost/imageshare/pause:stack"
NAT_COMMENT="imageshare-stack ${STATE_DIR//[^A-Za-z0-9\/._-]/_}"

ctr() { "$NODE_BIN_DIR/ctr" --address "$CONTAINERD_SOCK" -n k8s.io "$@"; }

# nat_rules add|delete -> the DNAT rules of this stack (idempotent).
nat_rules() {
  local rule
  local -a rules=(
    "-i $NODE_BRIDGE -d $NODE_IP -p tcp -m multiport --dports $KUBE_PORT,$KEYSTONE_PORT,$GLANCE_PORT,$GLANCE2_PORT -j DNAT --to-destination 127.0.0.1"
    "-i $NODE_BRIDGE -d $KUBERNETES_SERVICE_IP -p tcp --dport 443 -j DNAT --to-destination 127.0.0.1:$KUBE_PORT"
  )
  # The same for connections from the host itself (a CLI reading the pods' Secrets).
  rules+=("-d $NODE_IP -p tcp -m multiport --dports $KUBE_PORT,$KEYSTONE_PORT,$GLANCE_PORT,$GLANCE2_PORT -j DNAT --to-destination 127.0.0.1")
  local chains=(PREROUTING PREROUTING OUTPUT) i
  for i in "${!rules[@]}"; do
    rule="${rules[$i]}"
    # shellcheck disable=SC2086  # the rule is a list of words
    if [[ "$1" == add ]]; then
      iptables -w -t nat -C "${chains[$i]}" $rule -m comment --comment "$NAT_COMMENT" 2>/dev/null ||
        iptables -w -t nat -A "${chains[$i]}" $rule -m comment --comment "$NAT_COMMENT"
    else
      while iptables -w -t nat -D "${chains[$i]}" $rule -m comment --comment "$NAT_COMMENT" 2>/dev/null; do :; done
    fi
  done
}

node_config() {
  mkdir -p "$NODE_STATE"/{containerd,cni/net.d,cni/ipam,kubelet,pod-logs}
  # Lowering a process's oom_score_adj (the kubelet asks -998 for sandboxes) needs
  # CAP_SYS_RESOURCE (capability 24), which root in some VMs and containers lacks; runc then
  # fails every sandbox with "can't get final child's PID from pipe". Without it, containerd
  # keeps scores at or above its own.
  local cap_eff restrict_oom=true
  cap_eff="$(awk '/^CapEff:/ {print $2}' /proc/self/status)"
  (((16#$cap_eff >> 24) & 1)) && restrict_oom=false
  cat >"$NODE_STATE/containerd/config.toml" <<TOML
# containerd for the local node: everything under $NODE_STATE, nothing in /var/lib or /etc.
# Version 3 (containerd 2.4 migrates it and says so): version 4 moved the [grpc] address.
version = 3
root = "$NODE_STATE/containerd/root"
state = "$NODE_STATE/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.image-verifier.v1.bindir"]
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "$NODE_STATE/containerd/opt"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = $restrict_oom
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$CNI_BIN_DIR"]
    conf_dir = "$NODE_STATE/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
TOML
  cat >"$NODE_STATE/cni/net.d/10-imageshare.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "imageshare",
  "plugins": [
    {
      "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false,
      "ipam": {
        "type": "host-local", "dataDir": "$NODE_STATE/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$NODE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "loopback"}
  ]
}
JSON
  cat >"$NODE_STATE/kubelet/config.yaml" <<YAML
# Kubelet of the local node. cgroup v1 hosts need cgroupfs and failCgroupV1: false.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $KUBE_STATE/pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
podLogsDir: $NODE_STATE/pod-logs
resolvConf: /etc/resolv.conf
serializeImagePulls: false
# Test machines have small or full disks: no evictions or image GC for disk space here.
evictionHard: {memory.available: "100Mi", nodefs.available: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
YAML
}

node_start() {
  need iptables "install iptables (Debian: apt-get install iptables); the pod network needs one NAT rule"
  [[ "$(id -u)" == 0 ]] || die "the node (kubelet, containerd) needs root"
  local bin
  for bin in "$BIN_DIR/kubelet" "$BIN_DIR/kube-scheduler" "$NODE_BIN_DIR/containerd" "$NODE_BIN_DIR/pause"; do
    [[ -x "$bin" ]] || die "$bin not built; run stack/build-kube.sh and stack/build-node.sh with NODE=1"
  done
  port_free "$KUBELET_PORT" kubelet
  port_free "$KUBELET_HEALTHZ_PORT" kubelet_healthz
  port_free "$SCHEDULER_PORT" scheduler
  node_config

  # What a kubelet outside a real node needs from the host (as kind's entrypoint does):
  # shared mount propagation, /dev/kmsg, the bridge with the node's address, NAT rules.
  [[ "$(findmnt -no PROPAGATION /)" == shared ]] || mount --make-rshared /
  [[ -e /dev/kmsg ]] || ln -s /dev/console /dev/kmsg
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 || ip link add "$NODE_BRIDGE" type bridge
  ip addr replace "$NODE_IP/${POD_CIDR#*/}" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  sysctl -qw "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1" net.ipv4.ip_forward=1
  nat_rules add

  PATH="$NODE_BIN_DIR:$PATH" start_bg containerd "$NODE_BIN_DIR/containerd" --config "$NODE_STATE/containerd/config.toml"
  wait_for containerd 30 "$NODE_BIN_DIR/ctr" --address "$CONTAINERD_SOCK" version
  node_pause_image

  write_kubeconfig "$NODE_STATE/admin.kubeconfig" admin "$(cat "$ADMIN_TOKEN_FILE")"
  start_bg kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig "$NODE_STATE/admin.kubeconfig" \
    --authentication-kubeconfig "$NODE_STATE/admin.kubeconfig" --authorization-kubeconfig "$NODE_STATE/admin.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" --leader-elect=false
  wait_for kube-scheduler 60 curl -skf "https://127.0.0.1:$SCHEDULER_PORT/healthz"

  # The kubelet authenticates as the stack's admin (no Node authorizer here); the API server
  # reaches it (logs, exec) with the kubelet-client certificate kube.sh made.
  start_bg kubelet "$BIN_DIR/kubelet" --config "$NODE_STATE/kubelet/config.yaml" \
    --kubeconfig "$NODE_STATE/admin.kubeconfig" --root-dir "$NODE_STATE/kubelet" \
    --cert-dir "$NODE_STATE/kubelet/pki" --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
  wait_for kubelet 60 curl -sf "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz"
  local deadline=$((SECONDS + 90))
  until kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "node $NODE_NAME not Ready after 90s; see $LOG_DIR/kubelet.log and $LOG_DIR/containerd.log"
    alive "$(cat "$PID_DIR/kubelet.pid")" || die "kubelet exited; see $LOG_DIR/kubelet.log (last lines: $(tail -3 "$LOG_DIR/kubelet.log" | tr '\n' ' '))"
  done
}

# node_import TARBALL -> loads an OCI image tarball into the node's containerd, pinned (the
# kubelet's image garbage collection spares pinned images).
node_import() {
  ctr images import --label io.cri-containerd.pinned=pinned --platform "linux/$(go env GOARCH 2>/dev/null || echo amd64)" "$1" >>"$LOG_DIR/images.log" 2>&1 ||
    die "importing $1 into containerd failed; see $LOG_DIR/images.log"
}

# node_pause_image -> the sandbox image, built from the pause binary (cached by its digest).
node_pause_image() {
  local tarball="$CACHE_DIR/images/pause.tar"
  mkdir -p "$CACHE_DIR/images"
  if [[ ! -f "$tarball" || "$NODE_BIN_DIR/pause" -nt "$tarball" ]]; then
    "$NODE_BIN_DIR/imagetool" -o "$tarball" -name "$PAUSE_IMAGE" -file "$NODE_BIN_DIR/pause:/pause" \
      -entrypoint '["/pause"]' -user 65535:65535 >>"$LOG_DIR/images.log" 2>&1 || die "building the pause image failed; see $LOG_DIR/images.log"
  fi
  node_import "$tarball"
}

node_stop() {
  [[ -d "$NODE_STATE" ]] || { nat_rules delete 2>/dev/null || true; return 0; }
  stop_pidfile kubelet
  stop_pidfile kube-scheduler
  # Containers outlive containerd (their shims are separate processes): kill them first,
  # then containerd, then whatever a crash left mounted under the node's folder.
  # Deleting a task makes runc drop its state and the shim exit (removing its socket).
  if [[ -S "$CONTAINERD_SOCK" ]]; then
    local task
    for task in $(ctr tasks ls -q 2>/dev/null); do
      ctr tasks kill -s KILL "$task" >/dev/null 2>&1 || true
      ctr tasks delete --force "$task" >/dev/null 2>&1 || true
    done
  fi
  stop_pidfile containerd
  pkill -KILL -f -- "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCK" 2>/dev/null || true
  local mnt
  for mnt in $(awk -v d="$NODE_STATE/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
    umount -l "$mnt" 2>/dev/null || true
  done
  nat_rules delete 2>/dev/null || true
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
}
