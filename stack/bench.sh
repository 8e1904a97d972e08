#!/usr/bin/env bash
# Benchmarks on the local stack (`make bench`): starts the stack and the operator (release
# build), runs the pure plan/status benchmark and the convergence benchmark (the operator
# next to the direct-call limit, calls counted, incremental latency, scale and start-up),
# and rewrites BENCHMARKS.md. Stops everything afterwards. BENCH_ONLY=plan|incremental|
# statuses|matrix|cluster|scale|steady runs one part: then only the sections it measured are
# replaced, each saying when it was measured; the others, and the header, are kept from the
# existing BENCHMARKS.md.
# BENCH_OUT=FILE BENCH_SECONDS=N only rewrites BENCHMARKS.md from the output of earlier runs.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# The cluster part selects 2,000 of the domain's projects: Keystone must answer them all (see
# KEYSTONE_MAX_DB_LIMIT in lib.sh).
export KEYSTONE_MAX_DB_LIMIT="${KEYSTONE_MAX_DB_LIMIT:-10000}"
# The operator is told, or it refuses a list that long as possibly cut.
export IMAGESHARE_KEYSTONE_MAX_DB_LIMIT="$KEYSTONE_MAX_DB_LIMIT"
if [[ -n "${BENCH_OUT:-}" ]]; then
  out="$BENCH_OUT"
  elapsed="${BENCH_SECONDS:-?}"
else
  trap 'bash "$STACK_DIR/down.sh"' EXIT
  start=$SECONDS
  cargo build --locked --release --quiet
  bash "$STACK_DIR/up.sh"
  IMAGESHARE_BIN="$REPO_DIR/target/release/imageshare" bash "$STACK_DIR/operator.sh"
  out="$STATE_DIR/bench.out"
  set -o pipefail
  : >"$out"
  if [[ -z "${BENCH_ONLY:-}" || "$BENCH_ONLY" == plan ]]; then
    cargo bench --locked --bench plan 2>&1 | tee -a "$out"
  fi
  if [[ "${BENCH_ONLY:-}" != plan ]]; then
    cargo bench --locked --bench converge 2>&1 | tee -a "$out"
  fi
  elapsed=$((SECONDS - start))
fi

table() { grep -o "$1: .*" "$out" | sed "s/^$1: //"; }
generated="$(mktemp)"
{
  cat <<EOF2
# Benchmarks

Measured by \`make bench\` on $(date -u +%Y-%m-%d) in ${elapsed} s, on this machine: $(nproc) cores,
$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr). Stack: kube-apiserver
$KUBE_VERSION, etcd $ETCD_VERSION, Keystone $KEYSTONE_VERSION, Glance $GLANCE_VERSION, all on 127.0.0.1
(see README, "What runs where"); the operator is the release build with its default flags
(8 ImageShares and 8 OpenStack requests per credential at a time). Regenerate with
\`make bench\`; do not edit by hand.

## Converge time and calls, next to the limit

The limit is a direct client on the same HTTP stack making exactly the minimum calls (one
member list per image, one write per difference) at the same concurrency (8), against the
same Glance, in the same run. Operator times run from the \`kubectl apply\` (ImageShares
created or edited) to every ImageShare Ready for its generation. Glance calls are counted
on the way in by a forwarding proxy both go through.

![Converge time, operator and limit](docs/bench/converge.svg)

| Operation | Images x members | Operator s | Limit s | Ratio | Operator calls | Minimum calls | Calls ratio |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(table bench-row)

Reading the figures:

- Calls: the operator's only call above the minimum is one image GET per image and pass,
  which checks the image's owner and visibility before any member write (calls ratio
  1 + images / minimum). No pass is repeated.
- Time: each object's pass also makes Kubernetes calls the direct client never makes (the
  ledger write before the adds, the status write, one Event per kind of change and one for
  the Ready change; the credential Secret is read once per version, not per pass). Small
  cases are bound by those round trips (a single removal); with many objects,
  kube-apiserver and etcd take CPU from Glance on the same machine. The ledger write stays:
  it is what makes a crash unable to forget a member it added.

Calls by kind (operator):

\`\`\`
$(table bench-calls)
\`\`\`

## A cluster-wide selection, next to the limit

One ImageShare whose members come from \`spec.projectSelector\` (the projects of the Default
domain carrying a Keystone tag, listed with a domain reader's credentials at every pass):
one image shared with 2,000 projects; 20 images chosen by an image tag, shared with 500;
and a family of 10 builds (\`keepNewest: 10\`) shared with 500 when an 11th is published,
timed from the new build's creation (the ImageShare then annotated, as a resync would find
it) to the new build shared with all 500 and the oldest with none. The limit, measured in
the same run as in the first section (the same HTTP client, 8 requests at a time), is given
the project and image IDs: it makes no Keystone or image-list call, only one member list
per image it touches and one write per difference (for the rotation: 500 adds on the new
build, 500 removals on the oldest). Glance calls are counted by the forwarding proxy both go
through; Keystone calls are the operator's own \`imageshare_openstack_requests_total\`
(service identity) over the measured time; peak RSS is the operator's VmHWM over that time
(reset at its start; the process is restarted before the first scenario); the status size is
the object's \`.status\` as JSON once converged. The 1-minute load average of the machine
is taken before the limit and after the operator; the stack's own Glance, Keystone and
kube-apiserver, busy during the measurement, count in it.

Keystone runs with \`max_db_limit = $KEYSTONE_MAX_DB_LIMIT\` here. With its default,
1,000, Keystone $KEYSTONE_VERSION answers a project list asked without \`limit\` (as
the operator asks it) with the domain's first 1,000 projects, filtered by tag afterwards,
and marks nothing as truncated. Before the operator knew this, a run with the default
shared the image with 995 of the 2,000 projects and reported InSync; it now refuses a list
that long, and a tag query in a domain that large, as possibly cut (told the raised value
with \`--keystone-max-db-limit\`, as here).

![A cluster-wide selection, operator and limit](docs/bench/cluster.svg)

| Scenario | Operator s | Limit s | Ratio | Glance calls, operator / limit (ratio) | Peak RSS MiB | Status bytes | Keystone calls | Load avg 1 min, before / after |
| --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(table bench-cluster)

Reading the figures:

- Glance calls: above the limit's, the operator makes one image GET (an image by ID) or one
  image list (an image selector) per pass. In the rotation it lists the members of every
  current build, where the limit lists only the two builds that change; the oldest build's
  members are removed as the ledger records them, without a list.
- Keystone calls: one project list per pass, however many projects it selects, and a token
  only for a credential the operator has not used yet (each scenario's producer Secret
  reaches Glance through a new proxy, so it is a new credential; the reader's is reused).
- Status size: it grows with the selected projects (\`status.projects\`, and the ledger's
  project IDs), not with the images: the ledger groups the images that share one project
  list, and \`status.members\` keeps at most 200 rows.

Calls by kind (operator):

\`\`\`
$(table bench-cluster-calls)
\`\`\`

## One more member (ms)

| Change | To the Glance call p50 | p99 | To Ready p50 | p99 |
| --- | --- | --- | --- | --- |
$(table bench-incr)

## Steady state

Nothing changes for the whole window; the operator resyncs every object once a minute.
Glance and Keystone calls are counted by proxies in front of them; goals: no write, at most
one member list per image per resync, one Keystone authentication per credential per
token lifetime (Keystone's default, 1 h).

| Objects, window | Glance writes | ImageShares changed | New Events | Member lists per image per resync | Keystone authentications while converging | in the window |
| --- | --- | --- | --- | --- | --- | --- |
$(table bench-steady)

## Scale: memory and CPU (release build)

| Objects | Seconds until all reported | Peak RSS MiB | CPU s |
| --- | --- | --- | --- |
$(table bench-scale)

| Start-up (from kill -9 of the old process) | First pass s | /readyz, every object cached, s (incl. applying deploy/) |
| --- | --- | --- |
$(table bench-startup)

## Pure decisions (plan and status build)

\`\`\`
$(awk '/images +members +steps/ {p = 1; print; next} p && /^ *[0-9]/ {print; next} p {exit}' "$out")
\`\`\`
EOF2
} >"$generated"

# A partial run (BENCH_ONLY) keeps the header and every section it did not measure from the
# existing file. A section was measured when it has a table row or a line in a code block;
# it then says so under its heading.
if [[ -n "${BENCH_ONLY:-}" && -f "$REPO_DIR/BENCHMARKS.md" ]]; then
  note="Measured by \`BENCH_ONLY=$BENCH_ONLY make bench\` on $(date -u +%Y-%m-%d) in ${elapsed} s, a run of one part;"
  note+=" the sections without such a line are from the full run described at the top."
  awk -v note="$note" '
    FNR == 1 { f++; sec = ""; code = 0; prev = "" }
    /^## / { sec = $0; if (f == 2) order[++n] = sec }
    /^```/ { code = !code }
    f == 2 && ((code && !/^```/ && NF) || (/^\| / && prev ~ /^\|/ && !/^\| ---/)) { fresh[sec] = 1 }
    { prev = $0 }
    f == 1 { old[sec] = old[sec] $0 "\n"; next }
    { new[sec] = new[sec] $0 "\n" }
    END {
      printf "%s", old[""]
      for (i = 1; i <= n; i++) {
        s = order[i]
        if (!fresh[s]) printf "%s", (s in old) ? old[s] : new[s]
        else printf "%s\n\n%s\n%s", s, note, substr(new[s], length(s) + 2)
      }
    }' "$REPO_DIR/BENCHMARKS.md" "$generated" >"$generated.merged"
  mv "$generated.merged" "$generated"
fi
cat "$generated" >"$REPO_DIR/BENCHMARKS.md"
rm -f "$generated"
log "benchmarks finished in ${elapsed}s; BENCHMARKS.md rewritten"
