//! The tests' own OpenStack client: Keystone tokens and Glance calls as the stack's
//! identities, plain HTTP and independent of the operator's client, so what a test sees in
//! Glance does not depend on the code under test.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::stack::clouds;
use crate::wait::wait_until;

/// A request body for [`Os::send`].
enum Body {
    Json(Value),
    Patch(Value),
}

/// A Keystone-authenticated identity of the local stack, for the tests' own Glance calls.
pub struct Os {
    http: reqwest::Client,
    token: String,
    glance: String,
}

/// A project-scoped token of `identity` (producer, consumer-a, ..., admin) from the stack's
/// Keystone: the client, the token and the token body. A passing 5xx or a dropped
/// connection (Keystone reloading) is retried: it must not fail a test about something else.
pub async fn authenticate(identity: &str) -> (reqwest::Client, String, Value) {
    imageshare::openstack::install_crypto_provider();
    let auth = &clouds()["clouds"][identity]["auth"];
    let http = reqwest::Client::new();
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": auth["username"], "password": auth["password"],
            "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": auth["project_name"], "domain": {"name": "Default"}}}}});
    let url = format!(
        "{}/auth/tokens",
        auth["auth_url"].as_str().expect("auth_url")
    );
    for attempt in 1..=8 {
        match http.post(&url).json(&body).send().await {
            Ok(resp) if resp.status().is_success() => {
                let token = resp.headers()["x-subject-token"]
                    .to_str()
                    .expect("token")
                    .to_string();
                let answer: Value = resp.json().await.expect("token body");
                return (http, token, answer);
            }
            Ok(resp) if !resp.status().is_server_error() => {
                panic!("login {identity}: {}", resp.status())
            }
            _ => tokio::time::sleep(Duration::from_millis(250 * attempt)).await,
        }
    }
    panic!("login {identity}: keystone kept failing")
}

impl Os {
    /// Authenticates as `identity` (producer, consumer-a, ..., admin), on the Glance of
    /// region `RegionOne`.
    pub async fn login(identity: &str) -> Os {
        Os::login_in(identity, "RegionOne").await
    }

    /// Authenticates as `identity`, on the Glance of `region` (the stack has `RegionOne`
    /// and `RegionTwo`, one Keystone).
    pub async fn login_in(identity: &str, region: &str) -> Os {
        let (http, token, catalog) = authenticate(identity).await;
        let in_region = |e: &&Value| {
            e["interface"] == "public" && (e["region_id"] == region || e["region"] == region)
        };
        let glance = catalog["token"]["catalog"]
            .as_array()
            .expect("catalog")
            .iter()
            .find(|s| s["type"] == "image")
            .and_then(|s| s["endpoints"].as_array()?.iter().find(in_region))
            .and_then(|e| e["url"].as_str())
            .unwrap_or_else(|| panic!("no public image endpoint in {region}"))
            .trim_end_matches('/')
            .to_string();
        Os {
            http,
            token,
            glance,
        }
    }

    /// One Glance call; retried on 5xx (a passing fault must not fail a test about something
    /// else). Returns status and JSON body (Null when not JSON).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body.map(Body::Json)).await
    }

    /// [`Os::call`] with either kind of body: JSON, or a JSON patch of an image.
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Body>) -> (u16, Value) {
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}/v2{path}", self.glance))
                .header("X-Auth-Token", &self.token);
            match &body {
                Some(Body::Json(b)) => req = req.json(b),
                Some(Body::Patch(b)) => {
                    req = req
                        .header(
                            "Content-Type",
                            "application/openstack-images-v2.1-json-patch",
                        )
                        .body(b.to_string())
                }
                None => {}
            }
            let resp = req.send().await.expect("glance");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            attempt += 1;
            if status >= 500 && attempt < 8 {
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                continue;
            }
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return (status, value);
        }
    }

    /// The Glance base URL from the service catalog.
    pub fn glance_url(&self) -> &str {
        &self.glance
    }

    /// Creates an image (metadata only: membership needs no data) and returns its ID.
    pub async fn create_image(&self, name: &str, visibility: &str, tags: &[&str]) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/images",
                Some(json!({"name": name, "visibility": visibility, "tags": tags,
                    "disk_format": "raw", "container_format": "bare"})),
            )
            .await;
        assert_eq!(status, 201, "create image {name}: {body}");
        body["id"].as_str().expect("id").to_string()
    }

    /// Sets an image's visibility.
    pub async fn set_visibility(&self, image: &str, visibility: &str) {
        self.replace_image_field(image, "visibility", visibility)
            .await;
    }

    /// Replaces one field of an image (JSON patch), e.g. its name.
    pub async fn replace_image_field(&self, image: &str, field: &str, value: &str) {
        let patch = json!([{"op": "replace", "path": format!("/{field}"), "value": value}]);
        let (status, body) = self
            .send(
                reqwest::Method::PATCH,
                &format!("/images/{image}"),
                Some(Body::Patch(patch)),
            )
            .await;
        assert_eq!(status, 200, "set image {field}: {body}");
    }

    /// Members of an image: project to status (as the producer).
    pub async fn members(&self, image: &str) -> BTreeMap<String, String> {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/images/{image}/members"),
                None,
            )
            .await;
        assert_eq!(status, 200, "list members: {body}");
        body["members"]
            .as_array()
            .expect("members")
            .iter()
            .map(|m| {
                (
                    m["member_id"].as_str().unwrap_or_default().to_string(),
                    m["status"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Waits up to `timeout` until `project` is a member of `image`; Some once it is.
    pub async fn wait_member_added(
        &self,
        image: &str,
        project: &str,
        timeout: Duration,
    ) -> Option<()> {
        wait_until(timeout, || async {
            self.members(image)
                .await
                .contains_key(project)
                .then_some(())
        })
        .await
    }

    /// Waits up to `timeout` until `project` is no longer a member of `image`; Some once it
    /// is gone.
    pub async fn wait_member_gone(
        &self,
        image: &str,
        project: &str,
        timeout: Duration,
    ) -> Option<()> {
        wait_until(timeout, || async {
            (!self.members(image).await.contains_key(project)).then_some(())
        })
        .await
    }

    /// Waits up to `timeout` until `image` has no member left; Some once it has none.
    pub async fn wait_no_members(&self, image: &str, timeout: Duration) -> Option<()> {
        wait_until(timeout, || async {
            self.members(image).await.is_empty().then_some(())
        })
        .await
    }

    /// Adds a member by hand (as the producer).
    pub async fn add_member(&self, image: &str, project: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/images/{image}/members"),
                Some(json!({"member": project})),
            )
            .await;
        assert_eq!(status, 200, "add member: {body}");
    }

    /// Sets a member's status (as that member).
    pub async fn set_status(&self, image: &str, project: &str, status: &str) {
        let (code, body) = self
            .call(
                reqwest::Method::PUT,
                &format!("/images/{image}/members/{project}"),
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(code, 200, "set member status: {body}");
    }

    /// Removes one tag from an image (as its owner).
    pub async fn remove_tag(&self, image: &str, tag: &str) {
        let (status, body) = self
            .call(
                reqwest::Method::DELETE,
                &format!("/images/{image}/tags/{tag}"),
                None,
            )
            .await;
        assert_eq!(status, 204, "remove tag {tag}: {body}");
    }

    /// Deletes an image (as its owner).
    pub async fn delete_image(&self, image: &str) {
        let (status, body) = self
            .call(reqwest::Method::DELETE, &format!("/images/{image}"), None)
            .await;
        assert_eq!(status, 204, "delete image {image}: {body}");
    }

    /// IDs of the images this identity's default image list shows.
    pub async fn listed_images(&self) -> Vec<String> {
        let (status, body) = self
            .call(reqwest::Method::GET, "/images?limit=1000", None)
            .await;
        assert_eq!(status, 200, "list images: {body}");
        body["images"]
            .as_array()
            .expect("images")
            .iter()
            .filter_map(|i| i["id"].as_str().map(String::from))
            .collect()
    }
}
