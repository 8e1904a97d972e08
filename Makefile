# Entry points. `make demo` and `make test` work on a fresh machine: they build and start the
# local stack (etcd, kube-apiserver, kube-controller-manager, PostgreSQL, Keystone, Glance on
# 127.0.0.1) themselves.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: up down build crds check unit gitops e2e e2e-pod image release test demo operator bench chaos

## Start the local stack (builds/installs it the first time, cached outside git); NODE=1
## adds a node (containerd, kubelet, kube-scheduler) that runs pods.
up:
	bash stack/up.sh

## Stop everything the stack and the operator started.
down:
	bash stack/down.sh

build:
	$(CARGO) build --locked

## Regenerate the committed CRD YAML from src/api.rs (and its copies in deploy/).
crds: build
	$(CARGO) run --locked -q -- crd > crds/imageshare.dev_imageshares.yaml
	cp crds/imageshare.dev_imageshares.yaml deploy/base/crd.yaml
	cp crds/imageshare.dev_imageshares.yaml deploy/helm/imageshare/crds/imageshare.dev_imageshares.yaml

## Static checks: formatting and lints.
check:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Unit tests (pure parts and whole passes in-process, no server needed), and the code's
## shape (no import cycle, no file over 700 lines before its tests).
unit:
	$(CARGO) test --locked --lib --bins --test shape

## Start the operator as its own ServiceAccount against the running stack.
operator: build
	bash stack/operator.sh

## End-to-end tests against the real stack; the operator runs with the RBAC from deploy/.
## Starts the stack and stops it afterwards.
e2e: build
	bash stack/e2e.sh

## Faults, crashes, control-plane restarts and failover on the local stack; rewrites
## docs/reliability.md. Long (several minutes): not part of `make test`.
chaos: build
	bash stack/chaos.sh

## GitOps health: the Argo CD health script (in Argo CD's Lua VM) and kstatus (Flux) on the
## fixtures in deploy/gitops/testdata. Seconds when the Go module cache is warm.
gitops:
	bash stack/gitops-check.sh

## The operator as a pod: the stack with a node, `make image` loaded into it, installed with
## `kubectl apply -k deploy/base` and with `helm install`, the demo InSync through it, pod
## deletion and Lease hand-over. Starts the stack and stops it afterwards.
e2e-pod:
	bash stack/e2e-pod.sh

## The container image as an OCI tarball (target/image/), built without pulling anything,
## checked against the Dockerfile.
image:
	bash stack/image.sh

## Release artefacts in dist/: binary, image tarball, install-crds.yaml + install.yaml, chart
## package, SBOM, checksums.
release:
	bash stack/release.sh

## Everything CI runs.
test: check unit gitops e2e e2e-pod

## The main job: stack up, operator running, examples applied and Ready.
demo: build
	bash stack/up.sh
	bash stack/operator.sh
	bash stack/demo.sh

## Benchmarks that print numbers: the pure plan/status path, and the operator next to the
## direct-call limit on the local stack (starts it, with the release build); rewrites
## BENCHMARKS.md. Long: not part of `make test`.
bench:
	bash stack/bench.sh
