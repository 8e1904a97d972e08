//! Which clouds namespace users may make the operator talk to: the cluster operator's choice
//! (operator flags, Helm values), never a tenant's. A credential Secret is checked against it
//! before any request is sent, so a tenant cannot point the operator at an address of its
//! choosing (its own fake Glance, or an internal service reachable from the operator's pod).
//! Pure; no I/O.

use super::CloudConfig;

/// Allowed Keystone URLs and Glance endpoint overrides, as URL prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloudPolicy {
    /// `auth_url` prefixes a credential may use; empty allows any Keystone.
    pub auth_urls: Vec<String>,
    /// `image_endpoint_override` prefixes a credential may use; empty refuses every override
    /// (the Glance endpoint then always comes from the allowed Keystone's catalog).
    pub endpoint_overrides: Vec<String>,
    /// Keystone's `[DEFAULT] max_db_limit` (None: its default, [`KEYSTONE_MAX_DB_LIMIT`]).
    /// Keystone cuts a project list at that many rows without marking it truncated, so a
    /// list that long may be partial: it is refused like a truncated one.
    pub keystone_max_db_limit: Option<usize>,
}

/// Keystone's default `[DEFAULT] max_db_limit`.
pub const KEYSTONE_MAX_DB_LIMIT: usize = 1000;

impl CloudPolicy {
    /// The number of rows at which a Keystone list may have been cut silently.
    pub fn list_cap(&self) -> usize {
        self.keystone_max_db_limit.unwrap_or(KEYSTONE_MAX_DB_LIMIT)
    }

    /// Why `config` may not be used, or `None` when it may. The message names the URL that
    /// was refused (clouds.yaml parsing already refused URLs that carry credentials) and the
    /// setting that would allow it.
    pub fn refusal(&self, config: &CloudConfig) -> Option<String> {
        if !self.auth_urls.is_empty() && !allowed(&self.auth_urls, &config.auth_url) {
            return Some(format!(
                "auth_url {} is not a Keystone this operator may use (allowed: {}; the cluster \
                 operator sets --allowed-auth-url)",
                config.auth_url,
                self.auth_urls.join(", ")
            ));
        }
        match &config.image_endpoint_override {
            Some(url) if !allowed(&self.endpoint_overrides, url) => Some(format!(
                "image_endpoint_override {url} is not allowed: the Glance endpoint comes from \
                 the Keystone catalog unless the cluster operator allows the override with \
                 --allowed-endpoint-override"
            )),
            _ => None,
        }
    }
}

/// Whether `url` starts with one of `prefixes`, comparing scheme and host without regard to
/// case (as URLs do) and the path as written. A prefix that ends inside the host matches only
/// that host (`https://k.example` does not allow `https://k.example.evil.io`).
fn allowed(prefixes: &[String], url: &str) -> bool {
    let url = normalize(url);
    prefixes.iter().any(|prefix| {
        let prefix = normalize(prefix);
        url.strip_prefix(&prefix).is_some_and(|rest| {
            prefix.ends_with(['/', ':'])
                || rest.is_empty()
                || rest.starts_with(['/', ':', '?'])
                || prefix
                    .split_once("://")
                    .is_some_and(|(_, r)| r.contains('/'))
        })
    })
}

/// A URL with its scheme and host in lowercase, for prefix comparison.
fn normalize(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth_url: &str, over: Option<&str>) -> CloudConfig {
        let yaml = format!(
            "clouds: {{c: {{auth: {{auth_url: '{auth_url}', user_id: u, password: p, project_id: x}}{}}}}}",
            over.map(|o| format!(", image_endpoint_override: '{o}'"))
                .unwrap_or_default()
        );
        CloudConfig::from_clouds_yaml(&yaml, "c", None).expect("valid clouds.yaml")
    }

    #[test]
    fn without_settings_any_keystone_is_allowed_but_no_endpoint_override() {
        let policy = CloudPolicy::default();
        assert_eq!(policy.refusal(&config("https://k.example/v3", None)), None);
        let refused = policy
            .refusal(&config(
                "https://k.example/v3",
                Some("http://10.0.0.5:9292"),
            ))
            .unwrap_or_default();
        assert!(refused.contains("--allowed-endpoint-override"), "{refused}");
    }

    #[test]
    fn only_listed_keystones_and_overrides_pass_whatever_the_case_of_the_host() {
        let policy = CloudPolicy {
            auth_urls: vec!["https://keystone.example.com".into()],
            endpoint_overrides: vec!["https://glance.example.com".into()],
            ..CloudPolicy::default()
        };
        let ok = config(
            "https://KEYSTONE.example.com/v3",
            Some("https://glance.example.com:443/v2"),
        );
        assert_eq!(policy.refusal(&ok), None);
        let fake = config("https://keystone.example.com.evil.io/v3", None);
        assert!(
            policy.refusal(&fake).is_some(),
            "a longer host is not a prefix match"
        );
        let internal = config("http://169.254.169.254/v3", None);
        let why = policy.refusal(&internal).unwrap_or_default();
        assert!(why.contains("169.254.169.254") && why.contains("--allowed-auth-url"));
        let elsewhere = config(
            "https://keystone.example.com/v3",
            Some("http://127.0.0.1:8080"),
        );
        assert!(policy.refusal(&elsewhere).is_some());
    }
}
