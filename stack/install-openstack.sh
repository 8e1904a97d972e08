#!/usr/bin/env bash
# Creates a virtualenv in the cache folder with Keystone, Glance and the OpenStack CLI,
# pinned (stack/constraints.txt pins every transitive package). A second run returns at once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MARKER="$VENV_DIR/.installed-$(sha256sum "$STACK_DIR/constraints.txt" | cut -c1-12)"
if [[ -f "$MARKER" ]]; then
  exit 0
fi

need python3 "install Python 3.10+ with the venv module; it runs Keystone and Glance"

log "installing keystone $KEYSTONE_VERSION, glance $GLANCE_VERSION, python-openstackclient $OSC_VERSION (first time only)"
INSTALL_LOG="$CACHE_DIR/pip-install.log"
rm -rf "$VENV_DIR"
{
  python3 -m venv "$VENV_DIR" &&
    "$VENV_DIR/bin/pip" install --quiet --upgrade pip &&
    "$VENV_DIR/bin/pip" install --quiet -c "$STACK_DIR/constraints.txt" \
      "keystone==$KEYSTONE_VERSION" "glance==$GLANCE_VERSION" "python-openstackclient==$OSC_VERSION"
} >"$INSTALL_LOG" 2>&1 || die "pip install failed; see $INSTALL_LOG (last lines: $(tail -3 "$INSTALL_LOG" | tr '\n' ' '))"
touch "$MARKER"
