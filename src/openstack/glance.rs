//! Typed Glance v2 calls (I/O) on a [`Session`]: images (get, list with pagination) and
//! image members (list, get, create, update status, delete).
//!
//! Every call takes one of the session's request slots, gets a token, sends, and on a 401
//! drops that token, authenticates again and retries exactly once. Non-success answers go
//! through the one classifier ([`classify`]); the caller sees [`Error`] kinds, never HTTP
//! codes. Each call is logged at debug with method, path, status and elapsed time; the
//! token is sent as a sensitive header and never logged.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{Error, TerminalKind, classify};
use super::keystone::Session;

/// Status of an image member in Glance. The same type as the CRD's member status: its serde
/// form (`pending`, `accepted`, `rejected`) is Glance's wire format.
pub use crate::api::MemberStatus;

/// Page size asked of Glance when listing images.
pub const PAGE_SIZE: u32 = 100;
/// Most pages read in one listing (100,000 images); beyond, the listing is an error and the
/// pass changes nothing.
pub const MAX_PAGES: usize = 1000;
/// Longest one listing may take, all pages together; beyond, the listing is an error and the
/// pass changes nothing (an endpoint serving an endless chain of slow pages must not hold an
/// object for hours).
pub const MAX_LISTING_TIME: Duration = Duration::from_secs(5 * 60);

/// A Glance image, as much of it as imageshare needs.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Image {
    /// Image ID.
    pub id: String,
    /// Image name (Glance allows none).
    #[serde(default)]
    pub name: Option<String>,
    /// `public`, `community`, `shared` or `private`; only `shared` images have members.
    pub visibility: String,
    /// The owning project ID.
    #[serde(default)]
    pub owner: Option<String>,
    /// When Glance created it (RFC 3339), as Glance reports it.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// One member row of an image.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// The image.
    pub image_id: String,
    /// The member project ID.
    pub member_id: String,
    /// The member's answer.
    pub status: MemberStatus,
}

/// How [`Session::remove_member`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Glance removed the member now.
    Removed,
    /// The member was not there: Glance answered 404 and a 200 answer confirmed it (the
    /// member list without it, or an image list without the image).
    AlreadyGone,
}

/// Filters for [`Session::list_images`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageQuery {
    /// Exact name (`name=`).
    pub name: Option<String>,
    /// Images carrying all these tags (repeated `tag=`).
    pub tags: Vec<String>,
    /// Owning project ID (`owner=`).
    pub owner: Option<String>,
    /// Name prefix, filtered here: Glance has no prefix filter.
    pub name_prefix: Option<String>,
}

impl ImageQuery {
    /// Whether `image` passes the filters Glance cannot apply.
    pub fn matches_locally(&self, image: &Image) -> bool {
        match &self.name_prefix {
            Some(prefix) => image
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix.as_str())),
            None => true,
        }
    }

    fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![("limit", PAGE_SIZE.to_string())];
        if let Some(name) = &self.name {
            pairs.push(("name", name.clone()));
        }
        for tag in &self.tags {
            pairs.push(("tag", tag.clone()));
        }
        if let Some(owner) = &self.owner {
            pairs.push(("owner", owner.clone()));
        }
        pairs
    }
}

/// One page of `GET /v2/images`.
#[derive(Deserialize)]
pub(super) struct ImagePage {
    /// The images on this page.
    pub(super) images: Vec<Image>,
    /// The link to the next page (`/v2/images?marker=…`), absent on the last page.
    #[serde(default)]
    pub(super) next: Option<String>,
}

/// The answer of `GET /v2/images/{image}/members`.
#[derive(Deserialize)]
pub(super) struct MemberList {
    /// The image's members.
    pub(super) members: Vec<Member>,
}

/// Where an image page's `next` link leads, as the query to send to `/v2/images` on our own
/// endpoint `base` (the Glance v2 base URL); `Ok(None)` when there is no next page. Glance
/// writes `/v2/images?limit=…&marker=…`. Refused (the answer is not what Glance sends, and
/// following it could send the token elsewhere or never end): a link to another scheme,
/// host or port than `base`, to another path than `…/v2/images`, or without a query.
pub(super) fn next_page_query(next: Option<&str>, base: &Url) -> Result<Option<String>, String> {
    let Some(link) = next else {
        return Ok(None);
    };
    let url = base
        .join(link)
        .map_err(|e| format!("next link is not a url ({e})"))?;
    if url.origin() != base.origin() {
        return Err("next link points to another host than the image endpoint".to_owned());
    }
    if !url.path().trim_end_matches('/').ends_with("/v2/images") {
        return Err("next link points to another path than /v2/images".to_owned());
    }
    match url.query() {
        Some(query) if !query.is_empty() => Ok(Some(query.to_owned())),
        _ => Err("next link has no query (no marker)".to_owned()),
    }
}

/// Limits on following `next` links in one image listing.
#[derive(Clone, Copy, Debug)]
pub(super) struct PageBounds {
    /// Most pages read (the first one included).
    pub(super) pages: usize,
    /// Longest time the whole listing may take.
    pub(super) time: Duration,
}

/// The bounds of [`Session::list_images`]: [`MAX_PAGES`] pages, [`MAX_LISTING_TIME`].
const LISTING_BOUNDS: PageBounds = PageBounds {
    pages: MAX_PAGES,
    time: MAX_LISTING_TIME,
};

/// Decodes the body of a 2xx Glance answer (no I/O). A body that is not the documented JSON
/// is [`Error::unexpected`] (transient).
pub(super) fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| Error::unexpected(what, e))
}

/// The Glance v2 base URL for a catalog endpoint: `/v2` appended unless already there.
pub fn glance_base(endpoint: &str) -> Result<Url, Error> {
    let bad = |detail: &str| Error::config(format!("image endpoint {endpoint} {detail}"));
    let mut url = Url::parse(endpoint).map_err(|e| bad(&format!("is not a url: {e}")))?;
    let has_version = url
        .path_segments()
        .and_then(|mut segments| segments.rfind(|s| !s.is_empty()))
        .is_some_and(|last| last == "v2");
    // Every trailing slash goes, so `…/v2//` gives `…/v2`, not `…/v2/` (and `…/v2//images`).
    let trailing_slashes = url.path_segments().map_or(0, |segments| {
        segments.rev().take_while(|s| s.is_empty()).count()
    });
    {
        let mut segments = url
            .path_segments_mut()
            .map_err(|()| bad("cannot have a path"))?;
        for _ in 0..trailing_slashes {
            segments.pop_if_empty();
        }
        if !has_version {
            segments.push("v2");
        }
    }
    url.set_query(None);
    Ok(url)
}

/// `base` with `segments` appended, each percent-encoded as one path segment. A segment
/// that cannot travel as itself is refused ([`TerminalKind::BadRequest`]): an empty one,
/// `.` and `..` (the URL parser drops them or removes the segment before) and one with a
/// tab, CR or LF (the URL parser strips these, so `.\t.` would become `..`). Glance accepts
/// such member ids, but a request for one would address another resource: member `a\nb`
/// would act on member `ab`, and removing `.\t.` would send `DELETE /v2/images/{id}/`,
/// whose 404 reads as "already removed" while the member stays.
pub(super) fn join(mut base: Url, segments: &[&str], what: &str) -> Result<Url, Error> {
    if let Some(bad) = segments
        .iter()
        .find(|s| matches!(**s, "" | "." | "..") || s.contains(['\t', '\n', '\r']))
    {
        return Err(Error::Terminal {
            kind: TerminalKind::BadRequest,
            message: format!("{what}: the id {bad:?} cannot be sent as one url path segment"),
        });
    }
    let text = base.to_string();
    base.path_segments_mut()
        .map_err(|()| Error::config(format!("image endpoint {text} cannot have a path")))?
        .extend(segments);
    Ok(base)
}

/// Where a request goes: relative to the Glance v2 base, or to Keystone's auth_url.
pub(super) enum Target<'a> {
    /// Path segments under `/v2`, plus query pairs.
    Path(&'a [&'a str], Vec<(&'static str, String)>),
    /// Path segments under Keystone's `/v3`, plus query pairs.
    Identity(&'a [&'a str], Vec<(&'static str, String)>),
    /// `/v2/images` with a raw query string taken from a `next` link.
    ImagesQuery(&'a str),
}

impl Session {
    /// `GET /v2/images/{id}`.
    pub async fn get_image(&self, id: &str) -> Result<Image, Error> {
        let what = format!("get image {id}");
        self.json(
            Method::GET,
            Target::Path(&["images", id], vec![]),
            None,
            &what,
        )
        .await
    }

    /// `GET /v2/images` with the query's filters, following `next` links; the name prefix
    /// is applied here. Pagination is bounded ([`MAX_PAGES`], [`MAX_LISTING_TIME`]) and a
    /// `next` link that leaves the endpoint or returns to a page already read is refused:
    /// each is an error (transient), never a shorter list.
    pub async fn list_images(&self, query: &ImageQuery) -> Result<Vec<Image>, Error> {
        self.list_images_within(query, LISTING_BOUNDS).await
    }

    /// [`Session::list_images`] within `bounds`.
    pub(super) async fn list_images_within(
        &self,
        query: &ImageQuery,
        bounds: PageBounds,
    ) -> Result<Vec<Image>, Error> {
        let what = match &query.owner {
            Some(owner) => format!("list images of project {owner}"),
            None => "list images".to_owned(),
        };
        let started = Instant::now();
        let first = query.query_pairs();
        // The first page's query, as a next link would spell it.
        let mut first_url = glance_base("http://first.invalid")?;
        first_url.query_pairs_mut().extend_pairs(&first);
        let mut seen: HashSet<String> = first_url.query().map(str::to_owned).into_iter().collect();
        let mut page: ImagePage = self
            .json(Method::GET, Target::Path(&["images"], first), None, &what)
            .await?;
        let mut found = Vec::new();
        let mut read = 1;
        loop {
            found.extend(page.images.into_iter().filter(|i| query.matches_locally(i)));
            let base = glance_base(self.token().await?.image_endpoint())?;
            let next = next_page_query(page.next.as_deref(), &base)
                .map_err(|why| Error::unexpected(&what, why))?;
            let Some(next) = next else {
                return Ok(found);
            };
            if read >= bounds.pages {
                return Err(Error::unexpected(
                    &what,
                    format!(
                        "more than {} pages of images; nothing was changed",
                        bounds.pages
                    ),
                ));
            }
            if started.elapsed() >= bounds.time {
                return Err(Error::unexpected(
                    &what,
                    format!(
                        "listing took longer than {} s ({read} pages); nothing was changed",
                        bounds.time.as_secs()
                    ),
                ));
            }
            if !seen.insert(next.clone()) {
                return Err(Error::unexpected(
                    &what,
                    format!("next link goes back to a page already read (page {read})"),
                ));
            }
            page = self
                .json(Method::GET, Target::ImagesQuery(&next), None, &what)
                .await?;
            read += 1;
        }
    }

    /// `GET /v2/images/{image}/members`.
    pub async fn list_members(&self, image: &str) -> Result<Vec<Member>, Error> {
        let what = format!("list members of image {image}");
        let list: MemberList = self
            .json(
                Method::GET,
                Target::Path(&["images", image, "members"], vec![]),
                None,
                &what,
            )
            .await?;
        Ok(list.members)
    }

    /// `GET /v2/images/{image}/members/{project}`.
    pub async fn get_member(&self, image: &str, project: &str) -> Result<Member, Error> {
        let what = format!("get member {project} of image {image}");
        self.json(
            Method::GET,
            Target::Path(&["images", image, "members", project], vec![]),
            None,
            &what,
        )
        .await
    }

    /// `POST /v2/images/{image}/members`. An existing member is [`Error::Conflict`].
    pub async fn create_member(&self, image: &str, project: &str) -> Result<Member, Error> {
        let what = format!("add member {project} to image {image}");
        let body = json!({ "member": project });
        self.json(
            Method::POST,
            Target::Path(&["images", image, "members"], vec![]),
            Some(&body),
            &what,
        )
        .await
    }

    /// `PUT /v2/images/{image}/members/{project}` with the new status. Only the member
    /// project itself (or an admin) may do this; a non-member is [`Error::NotFound`].
    pub async fn update_member_status(
        &self,
        image: &str,
        project: &str,
        status: MemberStatus,
    ) -> Result<Member, Error> {
        let what = format!(
            "set status of member {project} of image {image} to {}",
            status.as_str()
        );
        let body = json!({ "status": status });
        self.json(
            Method::PUT,
            Target::Path(&["images", image, "members", project], vec![]),
            Some(&body),
            &what,
        )
        .await
    }

    /// `DELETE /v2/images/{image}/members/{project}`. A missing member is
    /// [`Error::NotFound`], as answered: see [`Session::remove_member`] for a removal that
    /// believes a 404 only once confirmed.
    pub async fn delete_member(&self, image: &str, project: &str) -> Result<(), Error> {
        let what = format!("remove member {project} from image {image}");
        self.send(
            Method::DELETE,
            Target::Path(&["images", image, "members", project], vec![]),
            None,
            &what,
        )
        .await
        .map(drop)
    }

    /// Removes member `project` from `image`, believing a 404 only once Glance confirms it
    /// with a 200 answer: the image's member list without the project, or (when the member
    /// list answers 404 too) an image list without the image. Anything else after a 404 (a
    /// proxy's default backend answering 404 to everything during an outage, a fault, the
    /// member still listed) is doubt: a transient error, so the pair stays recorded and the
    /// removal is retried. Never returns [`Error::NotFound`].
    pub async fn remove_member(&self, image: &str, project: &str) -> Result<Removal, Error> {
        let what = match self.delete_member(image, project).await {
            Ok(()) => return Ok(Removal::Removed),
            Err(Error::NotFound { what }) => what,
            Err(e) => return Err(e),
        };
        let doubt = |detail: String| {
            Error::transient(format!(
                "{what}: glance answered 404 (not found) but {detail}; the member is kept \
                 recorded and the removal is retried"
            ))
        };
        match self.list_members(image).await {
            Ok(members) => {
                if members
                    .iter()
                    .any(|m| m.member_id.eq_ignore_ascii_case(project))
                {
                    Err(doubt("the image's member list still has it".to_owned()))
                } else {
                    Ok(Removal::AlreadyGone)
                }
            }
            Err(Error::NotFound { .. }) => match self.image_listed(image).await {
                Ok(false) => Ok(Removal::AlreadyGone),
                Ok(true) => Err(doubt(
                    "its member list answered 404 while the image is still listed".to_owned(),
                )),
                Err(e) => Err(doubt(format!(
                    "neither the member list (404) nor the image list confirmed it ({e})"
                ))),
            },
            Err(e) => Err(doubt(format!("the member list did not confirm it ({e})"))),
        }
    }

    /// Whether `GET /v2/images?id=in:{image}` (with every visibility, hidden images in a
    /// second request) lists the image. `Ok(false)` is a 200 answer proving the image is
    /// gone (Glance deletes an image's members with it); an ID the `in:` filter cannot
    /// carry, or any other answer, is an error.
    async fn image_listed(&self, image: &str) -> Result<bool, Error> {
        let what = format!("list image {image} by id");
        if image.is_empty() || image.contains([',', '"', ':']) {
            return Err(Error::unexpected(
                &what,
                "the id cannot travel in an id=in: filter",
            ));
        }
        for hidden in ["false", "true"] {
            let pairs = vec![
                ("id", format!("in:{image}")),
                ("visibility", "all".to_owned()),
                ("os_hidden", hidden.to_owned()),
            ];
            let page: ImagePage = self
                .json(Method::GET, Target::Path(&["images"], pairs), None, &what)
                .await?;
            if page.images.iter().any(|i| i.id == image) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Sends one request and decodes the body of its 2xx answer.
    pub(super) async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<&Value>,
        what: &str,
    ) -> Result<T, Error> {
        let text = self.send(method, target, body, what).await?;
        decode(&text, what)
    }

    /// Sends one Glance request (with one re-authentication and retry on 401) and returns
    /// the body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        target: Target<'_>,
        body: Option<&Value>,
        what: &str,
    ) -> Result<String, Error> {
        let _permit = self.permit().await?;
        let client = self.client()?;
        let mut retried = false;
        loop {
            let token = self.token().await?;
            if !matches!(target, Target::Identity(..)) {
                self.project_scoped(&token)?;
            }
            let url = match &target {
                Target::Path(segments, pairs) | Target::Identity(segments, pairs) => {
                    let base = match target {
                        Target::Identity(..) => Url::parse(&self.config().auth_url)
                            .map_err(|e| Error::config(format!("auth_url: {e}")))?,
                        _ => glance_base(token.image_endpoint())?,
                    };
                    let mut url = join(base, segments, what)?;
                    if !pairs.is_empty() {
                        url.query_pairs_mut().extend_pairs(pairs);
                    }
                    url
                }
                Target::ImagesQuery(query) => {
                    let mut url = join(glance_base(token.image_endpoint())?, &["images"], what)?;
                    url.set_query(Some(query));
                    url
                }
            };
            let mut auth = HeaderValue::from_str(token.secret().expose())
                .map_err(|_| Error::unexpected(what, "keystone token is not a valid header"))?;
            auth.set_sensitive(true);
            let mut request = client
                .request(method.clone(), url.clone())
                .header("X-Auth-Token", auth)
                .header(ACCEPT, "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let started = Instant::now();
            let sent = request.send().await;
            let elapsed_ms = started.elapsed().as_millis() as u64;
            let cloud = &self.config().cloud_name;
            let response = match sent {
                Ok(response) => response,
                Err(err) => {
                    let err = Error::transport(what, &err);
                    tracing::debug!(cloud = %cloud, method = %method, path = url.path(),
                        elapsed_ms, error = %err, "glance call failed");
                    return Err(err);
                }
            };
            let status = response.status();
            tracing::debug!(cloud = %cloud, method = %method, path = url.path(),
                status = status.as_u16(), elapsed_ms, "glance call");
            if status == StatusCode::UNAUTHORIZED && !retried {
                retried = true;
                self.invalidate_token(&token).await;
                continue;
            }
            let retry_after = response.headers().get(RETRY_AFTER).cloned();
            let text = response
                .text()
                .await
                .map_err(|e| Error::transport(what, &e))?;
            return if status.is_success() {
                Ok(text)
            } else {
                Err(classify(status, retry_after.as_ref(), &text, what))
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_is_appended_unless_already_there() {
        let base = |e: &str| glance_base(e).expect("valid").to_string();
        assert_eq!(base("http://127.0.0.1:9292"), "http://127.0.0.1:9292/v2");
        assert_eq!(base("http://127.0.0.1:9292/"), "http://127.0.0.1:9292/v2");
        assert_eq!(base("https://cloud/image"), "https://cloud/image/v2");
        assert_eq!(base("https://cloud/image/v2/"), "https://cloud/image/v2");
        assert_eq!(base("https://cloud/v2"), "https://cloud/v2");
        // Found by a property test: these kept a slash before the path that follows.
        assert_eq!(base("https://cloud/v2//"), "https://cloud/v2");
        assert_eq!(base("http://g///"), "http://g/v2");
    }

    #[test]
    fn path_segments_are_escaped() {
        let url = join(
            glance_base("http://g:9292").expect("valid"),
            &["images", "a/b?c", "members"],
            "list members of image a/b?c",
        )
        .expect("joined");
        assert_eq!(url.as_str(), "http://g:9292/v2/images/a%2Fb%3Fc/members");
    }

    #[test]
    fn ids_that_would_not_stay_one_path_segment_are_refused() {
        let base = glance_base("http://g:9292").expect("valid");
        let what = "remove member from image i1";
        // Before: `.\t.` lost its tab and became `..`, so removing that member sent
        // DELETE /v2/images/i1/ (a 404, read as removed); `a\nb` addressed member `ab`;
        // `.` and `..` the member list.
        for bad in ["", ".", "..", ".\t.", "a\nb", "\r", "x\ty"] {
            let err =
                join(base.clone(), &["images", "i1", "members", bad], what).expect_err("refused");
            assert!(
                matches!(
                    err,
                    Error::Terminal {
                        kind: TerminalKind::BadRequest,
                        ..
                    }
                ),
                "{bad:?}: {err:?}"
            );
            assert!(err.to_string().starts_with(what), "{err}");
        }
        let url = join(base, &["images", "i1", "members", "%2e%2e", "..."], what)
            .expect("literal dots and percent signs stay one segment");
        assert_eq!(url.path(), "/v2/images/i1/members/%252e%252e/...");
    }

    #[test]
    fn image_query_uses_exact_name_repeated_tags_and_owner() {
        let query = ImageQuery {
            name: Some("ubuntu 24.04".into()),
            tags: vec!["golden".into(), "lts".into()],
            owner: Some("p1".into()),
            name_prefix: None,
        };
        let mut url = Url::parse("http://g/v2/images").expect("url");
        url.query_pairs_mut().extend_pairs(query.query_pairs());
        assert_eq!(
            url.query(),
            Some("limit=100&name=ubuntu+24.04&tag=golden&tag=lts&owner=p1")
        );
    }

    #[test]
    fn name_prefix_is_filtered_locally() {
        let image = |name: Option<&str>| Image {
            id: "i".into(),
            name: name.map(Into::into),
            visibility: "shared".into(),
            owner: None,
            created_at: None,
        };
        let query = ImageQuery {
            name_prefix: Some("ubuntu-".into()),
            ..ImageQuery::default()
        };
        assert!(query.matches_locally(&image(Some("ubuntu-24.04"))));
        assert!(!query.matches_locally(&image(Some("debian-12"))));
        assert!(!query.matches_locally(&image(None)));
        assert!(ImageQuery::default().matches_locally(&image(None)));
    }

    #[test]
    fn glance_member_json_is_read() {
        let member: Member = serde_json::from_str(
            r#"{"created_at": "2026-01-01T00:00:00Z", "image_id": "i1", "member_id": "p1",
                "schema": "/v2/schemas/member", "status": "accepted", "updated_at": "2026-01-01T00:00:00Z"}"#,
        )
        .expect("member");
        assert_eq!(member.status, MemberStatus::Accepted);
        for (status, text) in [
            (MemberStatus::Pending, "\"pending\""),
            (MemberStatus::Accepted, "\"accepted\""),
            (MemberStatus::Rejected, "\"rejected\""),
        ] {
            assert_eq!(serde_json::to_string(&status).expect("json"), text);
            assert_eq!(format!("\"{}\"", status.as_str()), text);
        }
    }

    #[test]
    fn glance_image_json_with_nulls_is_read() {
        let image: Image = serde_json::from_str(
            r#"{"id": "i1", "name": null, "owner": "p1", "visibility": "shared", "tags": [],
                "status": "queued", "min_disk": 0, "locations": []}"#,
        )
        .expect("image");
        assert_eq!(image.name, None);
    }
}
