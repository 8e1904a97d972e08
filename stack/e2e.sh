#!/usr/bin/env bash
# End-to-end run: starts the local stack and the operator (as its ServiceAccount), runs the
# e2e tests against them, and stops everything afterwards, also when the tests fail. To keep
# the stack for debugging, run `make up operator` and `cargo test --test e2e` instead.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap 'bash "$STACK_DIR/down.sh"' EXIT
bash "$STACK_DIR/up.sh"
bash "$STACK_DIR/deploy-check.sh"   # packaging: Helm chart, deploy/base, Dockerfile (dry runs)
bash "$STACK_DIR/smoke-openstack.sh"
bash "$STACK_DIR/operator.sh"
start=$SECONDS
cargo test --locked --test e2e -- --test-threads=32
log "e2e tests passed in $((SECONDS - start))s"
