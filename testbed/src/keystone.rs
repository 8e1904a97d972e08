//! Keystone as the stack's admin, through its REST API (the CLI takes a second per call):
//! domains and projects for the tests and benchmarks that need more of them than the stack
//! creates.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{authenticate, clouds};

/// A client of Keystone with a token of the stack's admin (project-scoped, role admin).
pub struct KeystoneAdmin {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl KeystoneAdmin {
    /// Authenticates as the stack's admin.
    pub async fn login() -> KeystoneAdmin {
        let (http, token, _) = authenticate("admin").await;
        let auth = &clouds()["clouds"]["admin"]["auth"];
        let url = auth["auth_url"].as_str().expect("auth_url");
        let url = url.trim_end_matches('/').to_string();
        KeystoneAdmin { http, url, token }
    }

    /// One call; retried on 5xx and dropped connections (Keystone reloads in some tests).
    /// Returns the status and the JSON body (Null when not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.url))
                .header("X-Auth-Token", &self.token)
                .timeout(Duration::from_secs(60));
            if let Some(b) = &body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) if resp.status().as_u16() < 500 || attempt >= 8 => {
                    let status = resp.status().as_u16();
                    let text = resp.text().await.unwrap_or_default();
                    return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
                }
                Err(e) if attempt >= 8 => panic!("keystone {method} {path}: {e}"),
                _ => tokio::time::sleep(Duration::from_millis(250 * attempt)).await,
            }
        }
    }

    /// Creates domain `name`; returns its ID.
    pub async fn create_domain(&self, name: &str) -> String {
        let domain = json!({"domain": {"name": name}});
        let (status, body) = self
            .call(reqwest::Method::POST, "/domains", Some(domain))
            .await;
        assert_eq!(status, 201, "create domain {name}: {body}");
        body["domain"]["id"].as_str().expect("id").to_string()
    }

    /// Creates project `name` in `domain` (an ID) with `tags`; returns its ID.
    pub async fn create_project(&self, domain: &str, name: &str, tags: &[&str]) -> String {
        let project = json!({"project": {"name": name, "domain_id": domain, "tags": tags}});
        let (status, body) = self
            .call(reqwest::Method::POST, "/projects", Some(project))
            .await;
        assert_eq!(status, 201, "create project {name}: {body}");
        body["project"]["id"].as_str().expect("id").to_string()
    }

    /// `GET /v3/projects?domain_id=…&enabled=true[&tags=…]`, as the operator asks it.
    pub async fn list(&self, domain: &str, tag: Option<&str>) -> Value {
        let mut path = format!("/projects?domain_id={domain}&enabled=true");
        if let Some(tag) = tag {
            path.push_str(&format!("&tags={tag}"));
        }
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "list projects: {body}");
        body
    }

    /// Deletes a project (gone already is fine).
    pub async fn delete_project(&self, id: &str) {
        let path = format!("/projects/{id}");
        let (status, body) = self.call(reqwest::Method::DELETE, &path, None).await;
        assert!(
            status == 204 || status == 404,
            "delete project {id}: {body}"
        );
    }

    /// Disables and deletes a domain (and with it its projects).
    pub async fn delete_domain(&self, id: &str) {
        let path = format!("/domains/{id}");
        let disable = json!({"domain": {"enabled": false}});
        self.call(reqwest::Method::PATCH, &path, Some(disable))
            .await;
        let (status, body) = self.call(reqwest::Method::DELETE, &path, None).await;
        assert_eq!(status, 204, "delete domain {id}: {body}");
    }
}
