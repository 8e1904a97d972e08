#!/usr/bin/env bash
# Restarts one control-plane process of the running local stack, for the chaos tests:
#   stack/restart.sh etcd|kube-apiserver [DOWN_SECONDS]
# Kills it (SIGKILL: a crash), keeps it down DOWN_SECONDS (default 0), starts it again with
# the same data and certificates, and waits until it is ready. Prints the seconds it was
# unavailable.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/kube.sh"

what="${1:-}"
down="${2:-0}"
[[ -f "$KUBECONFIG_PATH" ]] || die "no $KUBECONFIG_PATH; run 'make up' first"
start=$SECONDS
case "$what" in
  etcd | kube-apiserver)
    pid="$(cat "$PID_DIR/$what.pid" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || die "$what is not running"
    kill -KILL "$pid"
    while alive "$pid"; do sleep 0.1; done
    sleep "$down"
    if [[ "$what" == etcd ]]; then etcd_start; else apiserver_start; fi
    ;;
  *) die "usage: stack/restart.sh etcd|kube-apiserver [DOWN_SECONDS]" ;;
esac
echo "$((SECONDS - start))"
