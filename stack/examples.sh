#!/usr/bin/env bash
# Prints the examples/ manifests with the local stack's project IDs filled in (the examples'
# "<ID of project ...>" placeholders, which the CRD rejects until filled in), ready for
# `kubectl apply -n NAMESPACE -f -`.
# For an operator running as a pod (NODE=1), EXAMPLES_KEYSTONE_URL is the address it reaches
# Keystone at (the node's address) and EXAMPLES_INTERFACE=internal makes the Secrets take
# Glance from the catalog's internal endpoint, which names the node's address too.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$STATE_DIR/projects.env" ]] || die "no $STATE_DIR/projects.env; run 'make up' first"
set -a
# shellcheck source=/dev/null
source "$STATE_DIR/projects.env"
set +a
keystone_url="${EXAMPLES_KEYSTONE_URL:-http://127.0.0.1:$KEYSTONE_PORT/v3}"
interface="${EXAMPLES_INTERFACE:-public}"
for file in "$REPO_DIR"/examples/*.yaml; do
  echo "---"
  sed -e "s/<ID of project consumer-a>/$CONSUMER_A_PROJECT_ID/g" \
    -e "s/<ID of project consumer-b>/$CONSUMER_B_PROJECT_ID/g" \
    -e "s/<ID of project consumer-c>/$CONSUMER_C_PROJECT_ID/g" \
    -e "s#http://127.0.0.1:25000/v3#$keystone_url#g" \
    -e "s/^\( *\)interface: public\$/\1interface: $interface/" \
    -e "s/stack-user-secret/$USER_PASSWORD/g" "$file"
done
