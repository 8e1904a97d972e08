#!/usr/bin/env bash
# Smoke test of the running Keystone + Glance (stack/openstack.sh): image membership works with
# the real rules. Producer shares an image with consumer-a (pending), consumer-a accepts, the
# producer may not set the consumer's status. Both regions answer: the catalog has RegionTwo's
# image endpoints, and an image created through RegionTwo's Glance is not in RegionOne's.
# Prints PASS/FAIL lines; exits non-zero on failure.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=/dev/null
source "$STATE_DIR/projects.env"

KS="http://127.0.0.1:$KEYSTONE_PORT/v3"
GL="http://127.0.0.1:$GLANCE_PORT/v2"
PY="$VENV_DIR/bin/python"
failures=0
IMAGE_ID=""
IMAGE2_ID=""
GL2=""
BODY="$(mktemp)"

pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# token USER -> project-scoped token for USER in the same-named project.
token() {
  curl -sf -D - -o /dev/null -H 'Content-Type: application/json' "$KS/auth/tokens" -d "$(
    printf '{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"%s","domain":{"id":"default"},"password":"%s"}}},"scope":{"project":{"name":"%s","domain":{"id":"default"}}}}}' \
      "$1" "$USER_PASSWORD" "$1")" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p' || true
}

# gl_at BASE TOKEN METHOD PATH [JSON] -> prints the HTTP status; body in $BODY.
gl_at() {
  local args=(-s -o "$BODY" -w '%{http_code}' -X "$3" -H "X-Auth-Token: $2" "$1$4")
  [[ $# -ge 5 ]] && args+=(-H 'Content-Type: application/json' -d "$5")
  curl "${args[@]}" || true # a connection failure prints 000
}

# gl TOKEN METHOD PATH [JSON] -> gl_at on RegionOne's Glance.
gl() { gl_at "$GL" "$@"; }

field() { # field NAME -> top-level JSON field of the last response body, or empty
  "$PY" -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))
except Exception: print("")' "$BODY" "$1"
}

check() { # check NAME EXPECTED ACTUAL
  if [[ "$3" == "$2" ]]; then pass "$1"; else fail "$1 (expected $2, got $3: $(head -c 300 "$BODY"))"; fi
}

cleanup() {
  if [[ -n "$IMAGE_ID" ]]; then
    [[ "$(gl "$PRODUCER" DELETE "/images/$IMAGE_ID")" == 204 ]] && pass "producer deletes the image" ||
      fail "producer deletes the image"
    IMAGE_ID=""
  fi
  if [[ -n "$IMAGE2_ID" ]]; then
    [[ "$(gl_at "$GL2" "$PRODUCER" DELETE "/images/$IMAGE2_ID")" == 204 ]] &&
      pass "producer deletes the $REGION_TWO image" || fail "producer deletes the $REGION_TWO image"
    IMAGE2_ID=""
  fi
}
trap 'cleanup; rm -f "$BODY"' EXIT

PRODUCER="$(token producer)"
CONSUMER_A="$(token consumer-a)"
CONSUMER_B="$(token consumer-b)"
[[ -n "$PRODUCER" && -n "$CONSUMER_A" && -n "$CONSUMER_B" ]] && pass "keystone issues tokens to producer and consumers" ||
  { fail "keystone issues tokens to producer and consumers"; exit 1; }

code="$(gl "$PRODUCER" POST /images \
  '{"name":"smoke-image","visibility":"shared","disk_format":"raw","container_format":"bare"}')"
check "producer creates a shared image" 201 "$code"
[[ "$code" == 201 ]] || exit 1
IMAGE_ID="$(field id)"

code="$(curl -s -o "$BODY" -w '%{http_code}' -X PUT -H "X-Auth-Token: $PRODUCER" \
  -H 'Content-Type: application/octet-stream' --data-binary 'smoke test data' "$GL/images/$IMAGE_ID/file" || true)"
check "producer uploads image data" 204 "$code"
gl "$PRODUCER" GET "/images/$IMAGE_ID" >/dev/null
check "image is active" active "$(field status)"

code="$(gl "$PRODUCER" POST "/images/$IMAGE_ID/members" "{\"member\":\"$CONSUMER_A_PROJECT_ID\"}")"
check "producer adds consumer-a as member" 200 "$code"
check "new member is pending" pending "$(field status)"

code="$(gl "$CONSUMER_A" PUT "/images/$IMAGE_ID/members/$CONSUMER_A_PROJECT_ID" '{"status":"accepted"}')"
check "consumer-a accepts" 200 "$code"
check "member is accepted" accepted "$(field status)"

if OS_CLIENT_CONFIG_FILE="$CLOUDS_PATH" "$VENV_DIR/bin/openstack" --os-cloud consumer-a image list -f value -c ID |
  grep -qx "$IMAGE_ID"; then
  pass "consumer-a's image list (openstack CLI, clouds.yaml) shows the image"
else
  fail "consumer-a's image list (openstack CLI, clouds.yaml) shows the image"
fi

code="$(gl "$PRODUCER" PUT "/images/$IMAGE_ID/members/$CONSUMER_A_PROJECT_ID" '{"status":"rejected"}')"
if [[ "$code" == 403 || "$code" == 404 ]]; then
  pass "producer may not set consumer-a's status (HTTP $code)"
else
  fail "producer may not set consumer-a's status (got HTTP $code: $(head -c 300 "$BODY"))"
fi
gl "$CONSUMER_A" GET "/images/$IMAGE_ID/members/$CONSUMER_A_PROJECT_ID" >/dev/null
check "member is still accepted" accepted "$(field status)"

check "consumer-b (not a member) cannot see the image" 404 "$(gl "$CONSUMER_B" GET "/images/$IMAGE_ID")"

# Regions. The producer's catalog: one line "REGION INTERFACE URL" per image endpoint, in
# the catalog's order.
curl -s -o "$BODY" -H "X-Auth-Token: $PRODUCER" "$KS/auth/catalog" || true
endpoints="$("$PY" -c 'import json,sys
try:
    for s in json.load(open(sys.argv[1]))["catalog"]:
        if s["type"] == "image":
            for e in s["endpoints"]:
                print(e["region_id"], e["interface"], e["url"].rstrip("/"))
except Exception: pass' "$BODY")"
check "catalog: $REGION_TWO's public image endpoint is the second Glance" \
  "http://127.0.0.1:$GLANCE2_PORT" "$(awk -v r="$REGION_TWO" '$1 == r && $2 == "public" {print $3}' <<<"$endpoints")"
check "catalog: $REGION_TWO has public, internal and admin image endpoints" "admin internal public" \
  "$(awk -v r="$REGION_TWO" '$1 == r {print $2}' <<<"$endpoints" | sort | xargs)"
# Clients that ignore the region take the first public image endpoint: keep it RegionOne's.
check "catalog: the first public image endpoint is $REGION_ONE's" \
  "$REGION_ONE http://127.0.0.1:$GLANCE_PORT" "$(awk '$2 == "public" {print $1, $3; exit}' <<<"$endpoints")"
GL2="$(awk -v r="$REGION_TWO" '$1 == r && $2 == "public" {print $3; exit}' <<<"$endpoints")/v2"

code="$(gl_at "$GL2" "$PRODUCER" POST /images \
  '{"name":"smoke-image-region-two","visibility":"shared","disk_format":"raw","container_format":"bare"}')"
check "producer creates an image through $REGION_TWO's Glance" 201 "$code"
if [[ "$code" == 201 ]]; then
  IMAGE2_ID="$(field id)"
  check "$REGION_TWO's Glance shows its image" 200 "$(gl_at "$GL2" "$PRODUCER" GET "/images/$IMAGE2_ID")"
  check "$REGION_ONE's Glance does not have $REGION_TWO's image" 404 "$(gl "$PRODUCER" GET "/images/$IMAGE2_ID")"
  gl "$PRODUCER" GET "/images?limit=1000" >/dev/null
  if grep -qF "$IMAGE2_ID" "$BODY"; then
    fail "$REGION_ONE's image list does not show $REGION_TWO's image"
  else
    pass "$REGION_ONE's image list does not show $REGION_TWO's image"
  fi
  check "$REGION_TWO's Glance does not have $REGION_ONE's image" 404 "$(gl_at "$GL2" "$PRODUCER" GET "/images/$IMAGE_ID")"
fi

cleanup
if ((failures > 0)); then
  echo "smoke-openstack: $failures check(s) failed"
  exit 1
fi
echo "smoke-openstack: all checks passed"
