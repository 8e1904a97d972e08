//! OpenStack side: clouds.yaml parsing, Keystone auth with a shared token cache, a typed
//! Glance v2 client, and the one error classifier. Every HTTP call to OpenStack is here.
//!
//! - [`clouds`]: clouds.yaml text → [`CloudConfig`] (no I/O).
//! - [`keystone`]: [`Session`] (client, cached token, concurrency limit) and [`Clouds`], the
//!   process-wide session cache keyed by [`CloudConfig`].
//! - [`glance`]: typed image and member calls on [`Session`].
//! - [`policy`]: which Keystones and Glance endpoint overrides credentials may use.
//! - [`error`]: [`Error`] and [`classify`]; the controller never sees HTTP codes.

pub mod clouds;
pub mod error;
pub mod glance;
pub mod keystone;
pub mod policy;

pub use clouds::{
    Auth, CaCert, CloudConfig, CloudsError, Domain, Interface, Project, Secret, User,
};
pub use error::{Error, TerminalKind, classify};
pub use glance::{Image, ImageQuery, Member, MemberStatus, Removal};
pub use keystone::{Clouds, Session, Token};
pub use policy::CloudPolicy;

/// Installs ring as the process-wide rustls crypto provider (the one provider this binary
/// uses). Idempotent; call before building any reqwest client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod http_tests;
#[cfg(test)]
mod prop_tests;
