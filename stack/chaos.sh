#!/usr/bin/env bash
# Reliability run on the real local stack (`make chaos`): starts the stack and the operator,
# runs the fault tests (HTTP and connection faults through a fault proxy, leader failover)
# and the chaos scenarios (operator killed at random, kube-apiserver and etcd restarted, a
# leader cut off from the apiserver, a leader's apiserver paused with SIGSTOP in the middle
# of its Glance writes, the growth of the backoff through a lasting Glance outage; scenarios
# that pause or restart the shared apiserver, or measure timing ratios, cannot share the
# stack with the 32-thread e2e run), prints one summary line per scenario and rewrites
# docs/reliability.md with the table of what was tried and measured. Stops everything
# afterwards, also on failure.
# CHAOS_OUT=FILE CHAOS_SECONDS=N only rewrites the table from the output of an earlier run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [[ -n "${CHAOS_OUT:-}" ]]; then
  out="$CHAOS_OUT"
  elapsed="${CHAOS_SECONDS:-?}"
else
  trap 'bash "$STACK_DIR/down.sh"' EXIT
  start=$SECONDS
  bash "$STACK_DIR/up.sh"
  bash "$STACK_DIR/operator.sh"
  out="$STATE_DIR/chaos.out"
  : >"$out"
  set -o pipefail
  cargo test --locked --test e2e -- --nocapture --test-threads=8 faults:: leader:: 2>&1 | tee -a "$out"
  # The chaos scenarios kill and restart shared processes: one at a time.
  cargo test --locked --test chaos -- --nocapture --test-threads=1 2>&1 | tee -a "$out"
  elapsed=$((SECONDS - start))
fi

# Test output may share a line with a row ("test x ... chaos-row: | ...").
rows="$(grep -o 'chaos-row: .*' "$out" | sed 's/^chaos-row: //')"
[[ -n "$rows" ]] || die "no scenario reported a result; see $out"
{
  cat <<EOF2
# Reliability

What the operator does under faults, crashes, control-plane restarts and failover, measured
on the local stack (real kube-apiserver, etcd, Keystone and Glance on 127.0.0.1). Generated
by \`make chaos\` ($elapsed s for the whole run, stack start included); do not edit by hand.

| Fault | What the operator did | Figures |
| --- | --- | --- |
$rows

Scenarios: \`tests/e2e/faults.rs\` (faults injected between the operator and Glance by a
forwarding proxy, \`testbed/src/fault_proxy.rs\`), \`tests/e2e/leader.rs\` (failover), and
\`tests/chaos/main.rs\` (crash rounds, control-plane restarts, a leader cut off from the
apiserver). Backoff caps and the pure decisions behind these figures are unit-tested
(\`src/controller/backoff.rs\`, \`pass.rs\`, \`contest.rs\`, \`src/leader.rs\`).
EOF2
} >"$REPO_DIR/docs/reliability.md"
echo
sed -n 's/^| \([^|]*\) |.*| \([^|]*\) |$/chaos: \1: \2/p' <<<"$rows"
log "chaos run finished in ${elapsed}s; table in docs/reliability.md"
