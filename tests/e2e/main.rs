//! End-to-end tests on the real local stack: kube-apiserver + etcd, Keystone + Glance, and the
//! operator running as its ServiceAccount with the RBAC from deploy/ (`make e2e` starts all of
//! it). Each test works in its own namespace and its own images, so tests run in parallel.
//! The harness (namespaces, the tests' own OpenStack client, the fault proxy, the hostile
//! endpoint) is the `imageshare-testbed` crate; the tests are grouped by topic, one module
//! each (the map is in README.md, "Tests").
#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

mod basics;
mod consumers;
mod deletion;
mod doubt;
mod faults;
mod guard;
mod images;
mod leader;
mod limits;
mod metrics;
mod overlaps;
mod plan;
mod projects;
mod rbac;
mod regions;
mod revocation;
mod rotation;
mod secrets;
mod tenancy;
mod validation;
