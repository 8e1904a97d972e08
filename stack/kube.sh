# shellcheck shell=bash
# etcd + kube-apiserver + kube-controller-manager half of the local stack. Sourced by
# up.sh/down.sh after lib.sh. Defines kube_start and kube_stop. Everything listens on
# 127.0.0.1 only.

KUBE_STATE="$STATE_DIR/kube"
ADMIN_TOKEN_FILE="$KUBE_STATE/admin.token"

kube_certs() {
  local d="$KUBE_STATE/pki"
  mkdir -p "$d"
  (
    cd "$d"
    openssl ecparam -name prime256v1 -genkey -noout -out ca.key
    openssl req -x509 -new -key ca.key -sha256 -days 365 -subj "/CN=imageshare-local-ca" -out ca.crt
    openssl ecparam -name prime256v1 -genkey -noout -out serving.key
    openssl req -new -key serving.key -subj "/CN=kube-apiserver" -out serving.csr
    # Pods (NODE=1) reach the API server as the kubernetes Service (10.0.0.1) or the node.
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,IP:%s,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' "$NODE_IP" >serving.ext
    openssl x509 -req -in serving.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 -extfile serving.ext -out serving.crt
    # The API server's client certificate towards the kubelet (logs, exec).
    openssl ecparam -name prime256v1 -genkey -noout -out kubelet-client.key
    openssl req -new -key kubelet-client.key -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" -out kubelet-client.csr
    printf 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n' >client.ext
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -sha256 -extfile client.ext -out kubelet-client.crt
    openssl genrsa -out sa.key 2048
    openssl rsa -in sa.key -pubout -out sa.pub
  ) >"$LOG_DIR/pki.log" 2>&1 || die "certificate generation failed; see $LOG_DIR/pki.log"
}

kube_start() {
  need openssl "install openssl; it makes the local API server's certificates"
  need curl "install curl; it checks readiness"
  local bin
  for bin in etcd kube-apiserver kube-controller-manager; do
    [[ -x "$BIN_DIR/$bin" ]] || die "$bin not built; run stack/build-kube.sh"
  done
  port_free "$ETCD_PORT" etcd
  port_free "$ETCD_PEER_PORT" etcd_peer
  port_free "$KUBE_PORT" kube
  port_free "$KCM_PORT" kcm
  mkdir -p "$KUBE_STATE"
  kube_certs

  etcd_start

  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ADMIN_TOKEN_FILE"
  printf '%s,admin,admin-uid,system:masters\n' "$(cat "$ADMIN_TOKEN_FILE")" >"$KUBE_STATE/tokens.csv"
  chmod 600 "$ADMIN_TOKEN_FILE" "$KUBE_STATE/tokens.csv"

  apiserver_start
  write_kubeconfig "$KUBECONFIG_PATH" admin "$(cat "$ADMIN_TOKEN_FILE")"
  kcm_start
}

# etcd_start -> etcd on its data dir (kept across restarts), waits until healthy.
etcd_start() {
  start_bg etcd "$BIN_DIR/etcd" --name local --data-dir "$KUBE_STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --listen-metrics-urls ""
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
}

# apiserver_start -> kube-apiserver with the certificates and tokens of this stack, waits
# until ready.
apiserver_start() {
  start_bg kube-apiserver "$BIN_DIR/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$KUBE_PORT" \
    --tls-cert-file "$KUBE_STATE/pki/serving.crt" --tls-private-key-file "$KUBE_STATE/pki/serving.key" \
    --cert-dir "$KUBE_STATE/pki" \
    --client-ca-file "$KUBE_STATE/pki/ca.crt" \
    --token-auth-file "$KUBE_STATE/tokens.csv" \
    --authorization-mode RBAC \
    --service-cluster-ip-range 10.0.0.0/24 \
    --service-account-issuer "https://127.0.0.1:$KUBE_PORT" \
    --service-account-key-file "$KUBE_STATE/pki/sa.pub" \
    --service-account-signing-key-file "$KUBE_STATE/pki/sa.key" \
    --api-audiences "https://127.0.0.1:$KUBE_PORT" \
    --kubelet-client-certificate "$KUBE_STATE/pki/kubelet-client.crt" --kubelet-client-key "$KUBE_STATE/pki/kubelet-client.key" \
    --kubelet-preferred-address-types InternalIP \
    --allow-privileged=false --profiling=false --enable-priority-and-fairness=false
  wait_for kube-apiserver 120 curl -sf --cacert "$KUBE_STATE/pki/ca.crt" \
    -H "Authorization: Bearer $(cat "$ADMIN_TOKEN_FILE")" "https://127.0.0.1:$KUBE_PORT/readyz"
}

# kcm_start -> kube-controller-manager with only the controllers the tests need: "namespace"
# (a deleted namespace is emptied and removed instead of staying Terminating) and
# "garbagecollector" (objects go when their ownerReferences' owners go). It acts as the
# admin (no per-controller service accounts), serves a self-signed cert held in memory, and
# its /healthz is open to anonymous callers by default, so no delegated-auth kubeconfigs.
# For pods (NODE=1): "deployment" and "replicaset", "serviceaccount" (each namespace's default
# ServiceAccount), "root-ca-cert-publisher" (the kube-root-ca.crt ConfigMap that a pod's
# service-account token volume mounts) and "nodelifecycle" (lifts the not-ready taint a node
# registers with once it is Ready).
kcm_start() {
  start_bg kube-controller-manager "$BIN_DIR/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_PATH" \
    --controllers namespace,garbagecollector,deployment,replicaset,serviceaccount,root-ca-cert-publisher,nodelifecycle \
    --root-ca-file "$KUBE_STATE/pki/ca.crt" \
    --use-service-account-credentials=false \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --leader-elect=false --profiling=false
  wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$KCM_PORT/healthz"
}

# write_kubeconfig PATH USER TOKEN -> a kubeconfig for the local API server with a bearer token.
write_kubeconfig() {
  cat >"$1" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$KUBE_PORT
    certificate-authority: $KUBE_STATE/pki/ca.crt
users:
- name: $2
  user:
    token: $3
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
KCFG
  chmod 600 "$1"
}

kube_stop() {
  stop_pidfile kube-controller-manager
  stop_pidfile kube-apiserver
  stop_pidfile etcd
}
