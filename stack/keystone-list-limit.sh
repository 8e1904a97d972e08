#!/usr/bin/env bash
# Sets Keystone's [resource] list_limit in the running local stack and reloads Keystone (see
# keystone_list_limit in stack/openstack.sh). Without an argument the limit is removed.
#   bash stack/keystone-list-limit.sh 50   # project lists with more candidates come back truncated
#   bash stack/keystone-list-limit.sh      # no limit again (the stack's default)
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/openstack.sh"
keystone_list_limit "${1:-}"
