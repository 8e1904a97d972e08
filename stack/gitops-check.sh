#!/usr/bin/env bash
# GitOps health check (`make gitops`): runs the Go tests in tests/gitops. They evaluate the
# Argo CD health script deploy/gitops/argocd-health.lua in gopher-lua, the Lua VM Argo CD
# uses, restricted as Argo CD restricts custom scripts, kstatus (what Flux's health checks
# compute by default), and the Flux healthCheckExprs of deploy/gitops/flux-kustomization.yaml
# (with cel-go, set up as Flux sets it up) on the fixtures in deploy/gitops/testdata, against
# the expectations in deploy/gitops/health_test.yaml. The pinned Go modules come from the Go
# module proxy into the stack cache (outside git) on first use; a warm run takes a few
# seconds.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

need go "install Go (https://go.dev/doc/install); it runs the GitOps health tests"
cd "$REPO_DIR/tests/gitops"
go test -count=1 ./...
