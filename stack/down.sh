#!/usr/bin/env bash
# Stops every process of the local stack (operator, Glance, Keystone, kube-apiserver, etcd).
# Safe to run when nothing runs, and after a crash (stale pid files).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/kube.sh"
source "$STACK_DIR/openstack.sh"

mkdir -p "$PID_DIR"
stop_pidfile operator
openstack_stop
kube_stop
# Anything left that was started from this state folder (pid files lost in a crash).
pkill -KILL -f -- "$STATE_DIR/" 2>/dev/null || true
pkill -KILL -f -- "--etcd-servers http://127.0.0.1:$ETCD_PORT" 2>/dev/null || true
pkill -KILL -f -- "--listen-client-urls http://127.0.0.1:$ETCD_PORT" 2>/dev/null || true
