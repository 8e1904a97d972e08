#!/usr/bin/env bash
# Builds (first time) and starts the whole local stack on 127.0.0.1: etcd, kube-apiserver,
# kube-controller-manager, PostgreSQL, Keystone and two Glances (regions RegionOne and
# RegionTwo); with NODE=1 also a node (containerd, kubelet, kube-scheduler; stack/node.sh).
# Writes .stack/kubeconfig, .stack/clouds.yaml, .stack/projects.env and .stack/stack.env.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/kube.sh"
source "$STACK_DIR/openstack.sh"
source "$STACK_DIR/node.sh"

bash "$STACK_DIR/build-kube.sh"
[[ "$NODE" == 1 ]] && bash "$STACK_DIR/build-node.sh"
bash "$STACK_DIR/install-openstack.sh"

# Start from a clean state: a previous run may have crashed or been killed.
bash "$STACK_DIR/down.sh"
rm -rf "$STATE_DIR"
mkdir -p "$LOG_DIR" "$PID_DIR"

# On any failure, leave nothing running.
trap 'rc=$?; if ((rc)); then bash "$STACK_DIR/down.sh" >/dev/null 2>&1; fi; exit $rc' EXIT

start=$SECONDS
log "postgresql: starting (unix socket in $PG_DATA)"
openstack_db_start
kube_start
log "kube-apiserver ready on https://127.0.0.1:$KUBE_PORT, kube-controller-manager on :$KCM_PORT ($((SECONDS - start))s)"
openstack_start
if [[ "$NODE" == 1 ]]; then
  node_start
  log "node $NODE_NAME Ready at $NODE_IP (pods reach the stack's services there) ($((SECONDS - start))s)"
fi
log "keystone on http://127.0.0.1:$KEYSTONE_PORT/v3, glance on http://127.0.0.1:$GLANCE_PORT ($REGION_ONE) and http://127.0.0.1:$GLANCE2_PORT ($REGION_TWO) ($((SECONDS - start))s)"
log "export KUBECONFIG=$KUBECONFIG_PATH OS_CLIENT_CONFIG_FILE=$CLOUDS_PATH"
