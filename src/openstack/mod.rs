//! OpenStack side: clouds.yaml parsing, Keystone auth with a shared token cache, a typed
//! Glance v2 client, Keystone project lookups, and the one error classifier. Every HTTP
//! call to OpenStack is here.
//!
//! Modules, each using only those listed before it:
//!
//! - [`error`]: [`Error`] and [`classify`]; the controller never sees HTTP codes.
//! - [`clouds`]: clouds.yaml text → [`CloudConfig`] (no I/O).
//! - [`policy`]: which Keystones and Glance endpoint overrides credentials may use.
//! - [`metrics`]: [`RequestMetrics`], the request and token counters, and the bounded
//!   operation names they are labelled with.
//! - [`transport`]: the one HTTP path: send with the token, one new token and retry after a
//!   401, hand non-success answers to the classifier, decode JSON, record every request.
//! - [`auth`]: Keystone token request and [`Token`] parsing, catalog endpoint selection,
//!   when to renew.
//! - [`session`]: [`Session`] (client, cached token, concurrency limit) and [`Clouds`], the
//!   process-wide session cache keyed by [`CloudConfig`].
//! - [`glance`]: typed image and member calls on [`Session`].
//! - [`identity`]: Keystone project and domain lookups on [`Session`] ([`ProjectEntry`],
//!   [`same_name`]).

pub mod auth;
pub mod clouds;
pub mod error;
pub mod glance;
pub mod identity;
pub mod metrics;
pub mod policy;
pub mod session;
pub mod transport;

pub use auth::Token;
pub use clouds::{
    Auth, CaCert, CloudConfig, CloudsError, Domain, Interface, Project, Secret, User,
};
pub use error::{Error, TerminalKind, classify};
pub use glance::{Image, ImageQuery, Member, MemberStatus, Removal};
pub use identity::{ProjectEntry, same_name};
pub use metrics::RequestMetrics;
pub use policy::CloudPolicy;
pub use session::{Clouds, Session};

/// Installs ring as the process-wide rustls crypto provider (the one provider this binary
/// uses). Idempotent; call before building any reqwest client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod prop_support;
#[cfg(test)]
mod stand_in;
