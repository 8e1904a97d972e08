#!/usr/bin/env bash
# Installs deploy/base (CRD, RBAC, ServiceAccount, ...) into the running local stack and starts
# the operator binary as that ServiceAccount (its token from the TokenRequest API), so it runs
# with exactly the RBAC from deploy/. Log: .stack/logs/operator.log.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/kube.sh"

BINARY="${IMAGESHARE_BIN:-$REPO_DIR/target/debug/imageshare}"
[[ -x "$BINARY" ]] || die "operator binary $BINARY not built; run 'cargo build'"
[[ -f "$KUBECONFIG_PATH" ]] || die "no $KUBECONFIG_PATH; run 'make up' first"

kubectl apply -k "$REPO_DIR/deploy/base" >"$LOG_DIR/deploy.log" 2>&1 ||
  die "applying deploy/base failed; see $LOG_DIR/deploy.log"
kubectl wait --for condition=Established --timeout=30s crd/imageshares.imageshare.dev >/dev/null

token="$(kubectl -n imageshare-system create token imageshare --duration 24h)"
write_kubeconfig "$STATE_DIR/operator.kubeconfig" imageshare "$token"

stop_pidfile operator
port_free "$OPERATOR_PORT" operator
start_bg operator "$BINARY" operator --kubeconfig "$STATE_DIR/operator.kubeconfig" \
  --metrics-addr "127.0.0.1:$OPERATOR_PORT" --log-format text --resync-period 10m \
  --leader-election --leader-election-namespace imageshare-system --leader-election-identity local-operator
wait_for operator 30 curl -sf "http://127.0.0.1:$OPERATOR_PORT/readyz"
log "operator running as system:serviceaccount:imageshare-system:imageshare; log: $LOG_DIR/operator.log, metrics: http://127.0.0.1:$OPERATOR_PORT/metrics"
