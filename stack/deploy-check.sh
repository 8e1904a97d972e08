#!/usr/bin/env bash
# Checks the install artefacts against the running local kube-apiserver: `helm lint` of
# deploy/helm/imageshare; `kubectl kustomize deploy/base` and `helm template` (default values
# and each ci/*-values.yaml) applied with `kubectl apply --server-side --dry-run=server`;
# the chart's RBAC rules and security contexts equal to deploy/base's; its CRD copy not
# stale; and the Dockerfile's non-negotiables. Fails on the first error. Run by stack/e2e.sh
# right after the stack is up, before the operator is installed; builds helm the first time.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bash "$STACK_DIR/build-helm.sh"
mkdir -p "$LOG_DIR"
[[ -f "$KUBECONFIG_PATH" ]] || die "no $KUBECONFIG_PATH; run 'make up' first"
helm() { "$HELM_BIN_DIR/helm" "$@"; }
CHART="$REPO_DIR/deploy/helm/imageshare"
WATCHED=imageshare-check-watched   # watchNamespace of ci/one-namespace-values.yaml
RELEASE_NS=imageshare-check        # the chart's release namespace here
start=$SECONDS
fail() { die "deploy-check: $*"; }

# Static checks.
for copy in deploy/base/crd.yaml deploy/helm/imageshare/crds/imageshare.dev_imageshares.yaml; do
  cmp -s "$REPO_DIR/crds/imageshare.dev_imageshares.yaml" "$REPO_DIR/$copy" ||
    fail "$copy differs from crds/imageshare.dev_imageshares.yaml: run 'make crds' and commit the result"
done
# The Dockerfile (make image builds the same image here and compares its config with this
# file): multi-stage, runs as 65532 like deploy/, exposes the metrics port, starts the binary
# itself (exec form; the runtime image has no shell).
df="$REPO_DIR/Dockerfile"
(($(grep -c '^FROM ' "$df") >= 2)) || fail "Dockerfile: not multi-stage"
grep -qx 'USER 65532:65532' "$df" || fail "Dockerfile: no 'USER 65532:65532'"
grep -qx 'EXPOSE 8080' "$df" || fail "Dockerfile: no 'EXPOSE 8080'"
grep -qx 'ENTRYPOINT \["/imageshare"\]' "$df" || fail "Dockerfile: ENTRYPOINT is not [\"/imageshare\"]"
grep -q '^FROM .*distroless.*:nonroot$' "$df" || fail "Dockerfile: runtime stage is not a distroless :nonroot image"
for values in "" "$CHART"/ci/*-values.yaml; do
  out="$(helm lint --strict "$CHART" ${values:+-f "$values"} 2>&1)" ||
    fail "helm lint${values:+ -f ${values#"$REPO_DIR/"}} failed: $(grep -vE '^(==>|\[INFO\]|$)' <<<"$out" | head -5)"
done

# without_kind KIND -> the multi-document YAML on stdin without the documents of KIND.
without_kind() {
  awk -v kind="$1" '
    function flush() { if (doc != "" && !skip) printf "%s", doc; doc = ""; skip = 0 }
    /^---$/ { flush(); doc = $0 "\n"; next }
    { doc = doc $0 "\n"; if ($0 == "kind: " kind) skip = 1 }
    END { flush() }'
}

# dry_run NAME -> applies stdin with a server-side dry run; prints one line per object:
# kind/name, then the RBAC rules or the pod's securityContext, the container's
# securityContext and args. Server warnings (e.g. Pod Security) fail too, except the one about
# objects a client-side `kubectl apply` made (when run after stack/operator.sh); so does a
# field owned by that apply (--force-conflicts: this checks what the server accepts, not who
# owns what).
dry_run() {
  local out err="$LOG_DIR/deploy-check.stderr"
  out="$(kubectl apply --server-side --force-conflicts --dry-run=server -f - -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}{"\t"}{.rules}{.spec.template.spec.securityContext}{"\t"}{.spec.template.spec.containers[0].securityContext}{"\t"}{.spec.template.spec.containers[0].args}{"\n"}{end}' 2>"$err")" ||
    fail "$1: kubectl apply --server-side --dry-run=server failed: $(cat "$err")"
  ! grep -v 'failed to migrate kubectl.kubernetes.io/last-applied-configuration' "$err" | grep -q . ||
    fail "$1: warnings from the API server: $(cat "$err")"
  grep -q '^Deployment/' <<<"$out" || fail "$1: no Deployment in the output: $out"
  printf '%s\n' "$out"
}

# Namespaces must exist for a dry run of what goes in them. imageshare-system is created as
# stack/operator.sh does it (so the later install is unchanged), and left out of the dry run;
# the two others are this check's own, warn about anything the "restricted" Pod Security
# Standard forbids, and are deleted at the end.
kubectl apply -f "$REPO_DIR/deploy/base/namespace.yaml" >/dev/null
for ns in "$RELEASE_NS" "$WATCHED"; do
  # A run just before may have left it Terminating: wait until it is gone.
  kubectl wait --for=delete "namespace/$ns" --timeout=60s >/dev/null 2>&1 || fail "namespace $ns still there after 60s"
  kubectl create namespace "$ns" >/dev/null
  kubectl label namespace "$ns" pod-security.kubernetes.io/warn=restricted >/dev/null
done
trap 'kubectl delete namespace "$RELEASE_NS" "$WATCHED" --wait=false >/dev/null 2>&1 || true' EXIT

base="$(kubectl kustomize "$REPO_DIR/deploy/base" | without_kind Namespace | dry_run deploy/base)"
# field N of the line for OBJECT (a kind/name regex) in a dry_run output.
field() { awk -F '\t' -v re="^($2)\$" -v n="$3" '$1 ~ re {print $n}' <<<"$1"; }
rules="$(field "$base" 'ClusterRole/imageshare-operator' 2)"
lease_rules="$(field "$base" 'Role/imageshare-leader-election' 2)"
pod_sc="$(field "$base" 'Deployment/.*' 2)"
container_sc="$(field "$base" 'Deployment/.*' 3)"
[[ -n "$rules" && -n "$lease_rules" && -n "$pod_sc" && -n "$container_sc" ]] || fail "deploy/base: rules or securityContexts not found in: $base"
log "deploy-check: deploy/base: $(cut -f1 <<<"$base" | tr '\n' ' ')"

for values in "" "$CHART"/ci/*-values.yaml; do
  name="helm template${values:+ -f ${values#"$REPO_DIR/"}}"
  rendered="$(helm template imageshare "$CHART" --namespace "$RELEASE_NS" --include-crds \
    --kube-version "$KUBE_VERSION" ${values:+-f "$values"})" || fail "$name failed"
  # The ServiceMonitor's CRD (prometheus-operator) is not in this API server, so its
  # document is not sent; it is only required to render, with the Service it scrapes.
  if grep -qx 'kind: ServiceMonitor' <<<"$rendered"; then
    grep -qx 'kind: Service' <<<"$rendered" || fail "$name: a ServiceMonitor without its Service"
  fi
  out="$(without_kind ServiceMonitor <<<"$rendered" | dry_run "$name")"
  [[ "$(field "$out" '(Cluster)?Role/imageshare' 2)" == "$rules" ]] || fail "$name: operator RBAC rules differ from deploy/base/rbac.yaml"
  [[ "$(field "$out" 'Deployment/.*' 2)" == "$pod_sc" && "$(field "$out" 'Deployment/.*' 3)" == "$container_sc" ]] ||
    fail "$name: securityContexts differ from deploy/base/deployment.yaml"
  # Leader election (flag and Lease Role) exactly when there is more than one replica here.
  replicas="$(grep -m1 '^  replicas: ' <<<"$rendered" | awk '{print $2}')"
  if ((replicas > 1)); then
    field "$out" 'Deployment/.*' 4 | grep -q '"--leader-election"' || fail "$name: $replicas replicas without --leader-election"
    [[ "$(field "$out" 'Role/imageshare-leader-election' 2)" == "$lease_rules" ]] || fail "$name: leader-election Role differs from deploy/base"
  else
    field "$out" 'Deployment/.*' 4 | grep -q '"--leader-election"' && fail "$name: leader election with $replicas replica"
  fi
  log "deploy-check: $name: $(cut -f1 <<<"$out" | tr '\n' ' ')"
done
log "deploy-check: helm lint, CRD copies, Dockerfile, deploy/base and the chart checked against the API server ($((SECONDS - start))s)"
