#!/usr/bin/env bash
# Builds helm from its Go module (helm.sh/helm/v3 at $HELM_VERSION, with its own go.mod's
# dependency versions) into the cache folder, for the packaging check of deploy/helm.
# A second run finds the binary and returns at once.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ -x "$HELM_BIN_DIR/helm" ]] && exit 0
need go "install Go (https://go.dev/doc/install); it builds helm"

mkdir -p "$HELM_BIN_DIR"
BUILD_LOG="$CACHE_DIR/go/build-helm-$HELM_VERSION.log"
: >"$BUILD_LOG"
log "building helm $HELM_VERSION (first time only)"
(
  # The same -X flags as helm's own Makefile: its version, and the Kubernetes version its
  # client-go is built for (the default of `helm template`'s .Capabilities.KubeVersion).
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  client_go="$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")"   # v0.MINOR.PATCH
  minor="${client_go#v0.}"; minor="${minor%%.*}"
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  CGO_ENABLED=0 GOBIN="$HELM_BIN_DIR/tmp" go install -trimpath -ldflags="$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$HELM_BIN_DIR/tmp/helm" "$HELM_BIN_DIR/helm"
  rmdir "$HELM_BIN_DIR/tmp"
) >>"$BUILD_LOG" 2>&1 || die "helm build failed; see $BUILD_LOG (last lines: $(tail -3 "$BUILD_LOG" | tr '\n' ' '))"
log "built: helm $("$HELM_BIN_DIR/helm" version --short) ($(du -h "$HELM_BIN_DIR/helm" | cut -f1))"
