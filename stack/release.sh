#!/usr/bin/env bash
# `make release`: the release artefacts in dist/, from this checkout:
#   imageshare-vX-linux-ARCH.tar.gz   the binary with LICENSE, README.md, CHANGELOG.md
#   imageshare-vX.oci.tar             the container image (make image), for `ctr images
#                                     import`, `docker load` or `crane push`
#   install-crds.yaml, install.yaml   the CRD, and the rest of deploy/base (namespace
#                                     imageshare-system, RBAC, Deployment), as cert-manager
#                                     ships them: CRDs apart, so they can be managed apart
#   imageshare-X.tgz                  the Helm chart package
#   imageshare-vX.cdx.json            CycloneDX SBOM of the Rust crates in the binary
#   SHA256SUMS                        checksums of all the above
# Uses kubectl (kustomize) and helm built by the stack scripts (cached).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO_DIR/Cargo.toml" | head -1)"
CHART_VERSION="$(sed -n 's/^version: //p' "$REPO_DIR/deploy/helm/imageshare/Chart.yaml")"
[[ "$CHART_VERSION" == "$VERSION" ]] || die "Chart.yaml version $CHART_VERSION differs from Cargo.toml's $VERSION"
grep -q "^appVersion: \"v$VERSION\"$" "$REPO_DIR/deploy/helm/imageshare/Chart.yaml" || die "Chart.yaml appVersion is not v$VERSION"
grep -q "newTag: v$VERSION$" "$REPO_DIR/deploy/base/kustomization.yaml" || die "deploy/base/kustomization.yaml image tag is not v$VERSION"
grep -q "^## \[$VERSION\]" "$REPO_DIR/CHANGELOG.md" || die "CHANGELOG.md has no section for $VERSION"
COMMIT="$(git -C "$REPO_DIR" rev-parse HEAD)"
ARCH="$(go env GOARCH 2>/dev/null || uname -m)"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
DIST="$REPO_DIR/dist"

bash "$STACK_DIR/build-kube.sh"   # kubectl (kustomize)
bash "$STACK_DIR/build-helm.sh"
image="$(bash "$STACK_DIR/image.sh")"   # also builds target/release/imageshare
rm -rf "$DIST"
mkdir -p "$DIST/tmp/imageshare-v$VERSION-linux-$ARCH"

stage="$DIST/tmp/imageshare-v$VERSION-linux-$ARCH"
cp "${CARGO_TARGET_DIR:-$REPO_DIR/target}/release/imageshare" "$REPO_DIR"/{LICENSE,README.md,CHANGELOG.md} "$stage/"
tar -C "$DIST/tmp" --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git -C "$REPO_DIR" log -1 --format=%ct)" \
  -czf "$DIST/imageshare-v$VERSION-linux-$ARCH.tar.gz" "imageshare-v$VERSION-linux-$ARCH"
cp "$image" "$DIST/imageshare-v$VERSION.oci.tar"

cp "$REPO_DIR/crds/imageshare.dev_imageshares.yaml" "$DIST/install-crds.yaml"
# install.yaml: deploy/base rendered, without the CRD document.
"$BIN_DIR/kubectl" kustomize "$REPO_DIR/deploy/base" | awk '
  function flush() { if (doc != "" && !skip) printf "%s", doc; doc = ""; skip = 0 }
  /^---$/ { flush(); doc = $0 "\n"; next }
  { doc = doc $0 "\n"; if ($0 == "kind: CustomResourceDefinition") skip = 1 }
  END { flush() }' >"$DIST/install.yaml"
grep -q '^kind: CustomResourceDefinition' "$DIST/install.yaml" && die "install.yaml still has the CRD"
grep -q "image: ghcr.io/imageshare-dev/imageshare:v$VERSION" "$DIST/install.yaml" || die "install.yaml does not name the v$VERSION image"

"$HELM_BIN_DIR/helm" package "$REPO_DIR/deploy/helm/imageshare" -d "$DIST" >/dev/null || die "helm package failed"
python3 "$STACK_DIR/sbom.py" "$REPO_DIR" "$TRIPLE" "$COMMIT" "$(git -C "$REPO_DIR" log -1 --format=%ct)" \
  >"$DIST/imageshare-v$VERSION.cdx.json" || die "SBOM generation failed"
rm -rf "$DIST/tmp"
(cd "$DIST" && sha256sum -- * >SHA256SUMS)
log "release v$VERSION (commit $COMMIT) in dist/:"
(cd "$DIST" && du -h -- * | awk '{print "  " $2 " " $1}' >&2)
