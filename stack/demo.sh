#!/usr/bin/env bash
# The demo on the running stack and operator: creates two producer images, applies examples/
# into namespace "demo", waits until every ImageShare is Ready, and shows how to look around.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
openstack() { OS_CLIENT_CONFIG_FILE="$CLOUDS_PATH" "$VENV_DIR/bin/openstack" "$@"; }

payload="$STATE_DIR/demo-image.raw"
head -c 1024 /dev/zero >"$payload"
for name in demo-golden-ubuntu demo-golden-debian demo-gpu-driver; do
  if ! openstack --os-cloud producer image show "$name" >/dev/null 2>&1; then
    tag=golden && [[ "$name" == demo-gpu-driver ]] && tag=gpu
    openstack --os-cloud producer image create --shared --tag "$tag" \
      --disk-format raw --container-format bare --file "$payload" "$name" >/dev/null ||
      die "creating image $name as the producer failed"
    log "created image $name (visibility shared, tag $tag) as the producer"
  fi
done
# The projects examples/share-with-tagged-projects.yaml selects by their Keystone tag.
for project in consumer-a consumer-c; do
  openstack --os-cloud admin project set --tag gpu-tenants "$project" ||
    die "tagging project $project failed"
done

kubectl create namespace demo --dry-run=client -o yaml | kubectl apply -f - >/dev/null
bash "$STACK_DIR/examples.sh" | kubectl apply -n demo -f -
[[ "${DEMO_NO_WAIT:-0}" == 1 ]] && exit 0   # the caller waits itself (stack/e2e-pod.sh)
if ! kubectl wait -n demo --for=condition=Ready imageshare --all --timeout=120s >/dev/null; then
  kubectl get imageshares -n demo -o wide
  die "not every example became Ready within 120s; see $LOG_DIR/operator.log and 'kubectl describe imageshare -n demo'"
fi

# The state gauges count what the API server shows: the operator computes them at each
# scrape from its watch cache, which may see the last status a moment after kubectl did.
want_objects="$(kubectl get imageshares -A -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].reason}{"\n"}{end}' | grep -cx InSync || true)"
want_members="$(kubectl get imageshares -A -o jsonpath='{range .items[*]}{.status.memberCounts.InSync}{"\n"}{end}' | awk '{n += $1} END {print n + 0}')"
want=("imageshare_imageshares{reason=\"InSync\"} $want_objects" "imageshare_members{state=\"InSync\"} $want_members" "imageshare_leader 1")
metrics_agree() {
  local text line
  text="$(curl -sf "http://127.0.0.1:$OPERATOR_PORT/metrics")" || return 1
  for line in "${want[@]}"; do grep -qxF "$line" <<<"$text" || return 1; done
}
for ((i = 0; i < 50; i++)); do metrics_agree && break; sleep 0.2; done
metrics_agree || die "the operator's metrics do not show ${want[*]}: $(curl -sf "http://127.0.0.1:$OPERATOR_PORT/metrics" | grep -E '^imageshare_(imageshares|members|leader)' | tr '\n' ' ')"
log "metrics agree: ${want[*]}"

echo
kubectl get imageshares -A
cat <<EOF

The stack and the operator keep running ('make down' stops them). Try:
  export KUBECONFIG=$KUBECONFIG_PATH OS_CLIENT_CONFIG_FILE=$CLOUDS_PATH
  alias kubectl=$BIN_DIR/kubectl openstack=$VENV_DIR/bin/openstack
  kubectl describe imageshare -n demo golden-ubuntu        # per-member state, Events
  kubectl explain imageshare.spec.members
  openstack --os-cloud consumer-a image list               # the accepted image shows up
  openstack --os-cloud producer image member list demo-golden-ubuntu
  openstack --os-cloud consumer-a image set --reject \$(openstack --os-cloud producer image show -f value -c id demo-golden-ubuntu)
      # drift: the operator puts it back to accepted on the next resync (1m)
  kubectl -n demo patch imageshare golden-ubuntu --type json -p '[{"op":"remove","path":"/spec/members/1"}]'
      # revocation: consumer-b loses the image (see status.ledger and the MemberRemoved Event)
  openstack --os-cloud admin project set --tag gpu-tenants consumer-b   # (b is named too)
  openstack --os-cloud admin project set --remove-tag gpu-tenants consumer-c
      # selection: consumer-c leaves it and loses demo-gpu-driver at the next resync (1m);
      # kubectl get imageshare -n demo gpu-driver -o jsonpath='{.status.projects}'
  kubectl delete namespace demo
      # golden-ubuntu (Delete) takes its members with it, all-golden (Orphan) leaves its own;
      # the producer Secret waits for the cleanup (finalizer imageshare.dev/credentials-in-use)
  Operator log: $LOG_DIR/operator.log   metrics: curl http://127.0.0.1:$OPERATOR_PORT/metrics
EOF
