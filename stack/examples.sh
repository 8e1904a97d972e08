#!/usr/bin/env bash
# Prints the examples/ manifests with the local stack's project IDs filled in, ready for
# `kubectl apply -n NAMESPACE -f -`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
[[ -f "$STATE_DIR/projects.env" ]] || die "no $STATE_DIR/projects.env; run 'make up' first"
set -a
# shellcheck source=/dev/null
source "$STATE_DIR/projects.env"
set +a
for file in "$REPO_DIR"/examples/*.yaml; do
  echo "---"
  sed -e "s/\${CONSUMER_A_PROJECT_ID}/$CONSUMER_A_PROJECT_ID/g" \
    -e "s/\${CONSUMER_B_PROJECT_ID}/$CONSUMER_B_PROJECT_ID/g" \
    -e "s/\${CONSUMER_C_PROJECT_ID}/$CONSUMER_C_PROJECT_ID/g" \
    -e "s#http://127.0.0.1:25000/v3#http://127.0.0.1:$KEYSTONE_PORT/v3#g" \
    -e "s/stack-user-secret/$USER_PASSWORD/g" "$file"
done
