#!/usr/bin/env bash
# Stops or starts the Glance of the second region (RegionTwo) in the running local stack, so
# a test can show that one region failing changes nothing in the other.
#   bash stack/region-two.sh stop
#   bash stack/region-two.sh start   # waits until it answers
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$STACK_DIR/openstack.sh"
case "${1:-}" in
  stop) stop_pidfile glance2 INT ;;
  start)
    _os_launch glance2 glance.wsgi.api:application "$GLANCE2_PORT" OS_GLANCE_CONFIG_DIR="$OS_STATE_DIR/glance2"
    wait_for glance2 "$OPENSTACK_TIMEOUT" curl -sf -o /dev/null --max-time 3 "http://127.0.0.1:$GLANCE2_PORT/healthcheck"
    ;;
  *) die "usage: region-two.sh stop|start" ;;
esac
