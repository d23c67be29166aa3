//! `Idempotency-Key` for mutating requests: a client that retries (after a timeout, a dropped
//! connection) gets the first answer again instead of acting twice.
//!
//! A route opts in by declaring the header as a parameter in its OpenAPI annotation
//! ([`IDEMPOTENCY_PARAM`]), as routes declare their roles; this middleware honours the header on
//! exactly those routes and ignores it elsewhere. Routes whose answers hold secrets (login,
//! tokens) must never declare it: the answer is stored in the database for replay.
//!
//! For each (user, key) the first answer is kept with a fingerprint of the request (method,
//! path, query, body). The same request again gets the kept answer with
//! `Idempotent-Replayed: true`; the same key with a different request is refused (422); a retry
//! while the first is still running gets 409. Server errors (5xx) are not kept, so a retry runs
//! again. Keys are kept for [`KEEP`]. The change and its kept answer are two transactions: if
//! the server dies between them, a retry after [`STALE`] runs the request again, which the
//! routes that declare the header tolerate (they set whole records or fields to given values).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sluice_store::{KeyClaim, Store, StoredResponse};

use crate::auth::Principal;
use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The name a route declares (`params(("Idempotency-Key" = Option<String>, Header, …))`).
pub const IDEMPOTENCY_PARAM: &str = "Idempotency-Key";

/// The header on replayed answers.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// How long an answer is kept for replay.
pub const KEEP: Duration = Duration::from_secs(24 * 3600);

/// How long a first request may run before its claim counts as abandoned.
pub const STALE: Duration = Duration::from_secs(10 * 60);

/// Longest key accepted.
const MAX_KEY_LEN: usize = 255;

/// What the middleware needs: the store, the routes that declared the header, the body limit.
#[derive(Clone, Debug)]
pub struct Idempotency {
    store: Store,
    routes: Arc<HashSet<(Method, String)>>,
    max_body_bytes: usize,
}

impl Idempotency {
    /// Reads which routes declare the header from the OpenAPI document.
    pub fn from_openapi(
        api: &utoipa::openapi::OpenApi,
        store: Store,
        max_body_bytes: usize,
    ) -> Result<Self, String> {
        let mut routes = HashSet::new();
        for (path, item) in &api.paths.paths {
            let operations = [
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let value =
                    serde_json::to_value(&operation.parameters).map_err(|e| e.to_string())?;
                let declares = value.as_array().into_iter().flatten().any(|parameter| {
                    parameter["in"] == "header"
                        && parameter["name"]
                            .as_str()
                            .is_some_and(|n| n.eq_ignore_ascii_case(IDEMPOTENCY_PARAM))
                });
                if declares {
                    routes.insert((method, path.clone()));
                }
            }
        }
        Ok(Self {
            store,
            routes: Arc::new(routes),
            max_body_bytes,
        })
    }

    /// Whether a route honours the header.
    pub fn covers(&self, method: &Method, route: &str) -> bool {
        self.routes.contains(&(method.clone(), route.to_owned()))
    }
}

/// Checks a key: 1 to 255 visible ASCII characters (UUIDs, ULIDs and the like).
pub fn check_key(key: &HeaderValue) -> Result<String, ApiError> {
    let text = key.to_str().unwrap_or_default();
    let ok =
        !text.is_empty() && text.len() <= MAX_KEY_LEN && text.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(text.to_owned())
    } else {
        Err(ApiError::bad_request(
            "Idempotency-Key: expected 1 to 255 visible ASCII characters, such as a UUID",
        ))
    }
}

/// SHA-256 over the method, the path with its query and the body: what "the same request" means.
pub fn fingerprint(method: &Method, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b"\n");
    hasher.update(path_and_query.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The middleware. Runs after authentication (it keys answers by user).
pub async fn middleware(
    State(idempotency): State<Idempotency>,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    let covered = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|route| idempotency.covers(request.method(), route.as_str()));
    let principal = request.extensions().get::<Principal>().cloned();
    let (true, Some(principal)) = (covered, principal) else {
        return next.run(request).await;
    };
    match handle(&idempotency, &principal, &key, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn handle(
    idempotency: &Idempotency,
    principal: &Principal,
    key: &HeaderValue,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let key = check_key(key).map_err(IntoResponse::into_response)?;
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, idempotency.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::bad_request("the request body is larger than the server accepts")
            }
            .into_response()
        })?;
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
    let print = fingerprint(&parts.method, &path, &bytes);
    let now = jiff::Timestamp::now();
    let before = |age: Duration| {
        jiff::SignedDuration::try_from(age)
            .ok()
            .and_then(|age| now.checked_sub(age).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    };
    let claim = idempotency
        .store
        .claim_idempotency_key(
            &principal.user_id,
            &key,
            &print,
            now,
            before(KEEP),
            before(STALE),
        )
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    match claim {
        KeyClaim::Replay(stored) => Ok(replay(stored)),
        KeyClaim::Mismatch => Err(ApiError::invalid_field(
            IDEMPOTENCY_PARAM,
            format!(
                "Idempotency-Key {key:?} was already used for a different request (method, path or body); use a new key for a new request"
            ),
        )
        .into_response()),
        KeyClaim::InFlight => Err(ApiError::conflict(format!(
            "a request with Idempotency-Key {key:?} is still being processed; retry later"
        ))
        .into_response()),
        KeyClaim::New => {
            let mut guard = ReleaseOnDrop {
                store: idempotency.store.clone(),
                user_id: principal.user_id.clone(),
                key: key.clone(),
                armed: true,
            };
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|e| ApiError::internal(e).into_response())?;
            if !parts.status.is_server_error() {
                let stored = StoredResponse {
                    status: parts.status.as_u16(),
                    content_type: parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body: body.to_vec(),
                };
                idempotency
                    .store
                    .complete_idempotency_key(&principal.user_id, &key, &stored)
                    .await
                    .map_err(|e| ApiError::from(e).into_response())?;
                guard.armed = false;
            }
            Ok(Response::from_parts(parts, Body::from(body)))
        }
    }
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.remove(header::CONTENT_TYPE);
    if let Some(value) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

/// Gives the key back if the request ends without a kept answer: a server error, or the client
/// went away and the handler was dropped mid-way.
struct ReleaseOnDrop {
    store: Store,
    user_id: String,
    key: String,
    armed: bool,
}

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        let user_id = std::mem::take(&mut self.user_id);
        let key = std::mem::take(&mut self.key);
        runtime.spawn(async move {
            if let Err(error) = store.release_idempotency_key(&user_id, &key).await {
                tracing::warn!(%error, "could not release an idempotency key");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(check_key(&HeaderValue::from_static("3f2a-11")).is_ok());
        assert!(check_key(&HeaderValue::from_static("")).is_err());
        assert!(check_key(&HeaderValue::from_static("a b")).is_err());
        let long = HeaderValue::from_str(&"k".repeat(256)).unwrap();
        assert!(check_key(&long).is_err());
    }

    #[test]
    fn fingerprints_cover_method_path_and_body() {
        let base = fingerprint(&Method::PUT, "/a", b"{}");
        assert_eq!(base, fingerprint(&Method::PUT, "/a", b"{}"));
        assert_ne!(base, fingerprint(&Method::PATCH, "/a", b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, "/b", b"{}"));
        assert_ne!(base, fingerprint(&Method::PUT, "/a", b"{ }"));
        assert_ne!(base, fingerprint(&Method::PUT, "/a?x=1", b"{}"));
    }
}
