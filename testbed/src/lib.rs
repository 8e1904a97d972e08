//! Harness for imageshare's end-to-end tests (`tests/e2e`), chaos scenarios (`tests/chaos`)
//! and convergence benchmark (`benches/converge.rs`): the real local stack (`make up`) and
//! the operator running as its own ServiceAccount (`stack/operator.sh`). Each test gets a
//! fresh namespace with a random suffix and Secrets for every local identity ([`TestNs`]);
//! OpenStack is driven with plain HTTP calls ([`Os`]), the tests' own, independent of the
//! operator's client. A dev-dependency only: the operator binary never links it.
//!
//! Everything but the two stand-in servers is re-exported at the crate root, so a test file
//! starts with `use imageshare_testbed::*;`.

pub mod cloud;
pub mod fault_proxy;
pub mod hostile_glance;
pub mod keystone;
pub mod namespace;
pub mod scenario;
mod server;
pub mod stack;
pub mod wait;

pub use cloud::*;
pub use keystone::*;
pub use namespace::*;
pub use scenario::*;
pub use stack::*;
pub use wait::*;
