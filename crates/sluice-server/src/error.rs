//! API errors, written once as RFC 9457 `application/problem+json`; handlers never build error
//! bodies themselves.

use axum::Json;
use axum::extract::FromRequest;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use sluice_core::change::{Refusal, RefusalKind};
use sluice_core::deferral::DeferralError;
pub use sluice_protocol::problem::Problem;
use sluice_store::StoreError;

use crate::accounts::AccountError;
use crate::agents::AgentError;
use crate::calendar::CalendarError;
use crate::changes::ChangeError;
use crate::cmdb::CmdbServiceError;
use crate::deferrals::DeferralServiceError;
use crate::findings::FindingsError;
use crate::governance::GovernanceError;
use crate::intel::IntelError;
use crate::policies::PolicyError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Short, stable summary for the status.
    pub title: &'static str,
    /// What went wrong in this case.
    pub detail: String,
    /// JSON path of the offending field, when one is to blame.
    pub field: Option<String>,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Bad Request", detail)
    }

    /// 422: well-formed but a field's value is not acceptable.
    pub fn invalid_field(field: &str, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Content",
                detail,
            )
        }
    }

    /// 422 for a record as a whole (no single field to blame).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Content",
            detail,
        )
    }

    /// 401: no valid credentials.
    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail)
    }

    /// 403: authenticated but not allowed.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "Not Found", detail)
    }

    /// 409: conflicts with the current state.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "Conflict", detail)
    }

    /// Any status, for answers made outside a handler (an extractor's or the router's own).
    pub fn with_status(status: StatusCode, detail: impl Into<String>) -> Self {
        Self::new(status, title_of(status).unwrap_or("Error"), detail)
    }

    /// 429 with Retry-After.
    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", detail)
        }
    }

    /// 500; the detail is logged, the client sees a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "the server failed to handle the request; the details are in its log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(detail) => Self::conflict(detail),
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Invalid(detail) => Self::unprocessable(detail),
            other => Self::internal(other),
        }
    }
}

/// The longest `detail` an answer carries: a bad value is named, never echoed whole (an 8 MiB host
/// name must not come back in the 422).
pub const MAX_DETAIL_CHARS: usize = 512;

/// `text` cut to at most `max` characters, on a character boundary, with `…` when cut.
pub fn truncated(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// A status's reason phrase as RFC 9110 names it (the `http` crate keeps two older names).
fn title_of(status: StatusCode) -> Option<&'static str> {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => Some("Content Too Large"),
        StatusCode::UNPROCESSABLE_ENTITY => Some("Unprocessable Content"),
        other => other.canonical_reason(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The title is the status's own reason phrase, so a 413 never says "Bad Request".
        let title = title_of(self.status).unwrap_or(self.title);
        let body = Problem {
            kind: "about:blank".to_owned(),
            title: title.to_owned(),
            status: self.status.as_u16(),
            detail: truncated(&self.detail, MAX_DETAIL_CHARS).into_owned(),
            field: self
                .field
                .map(|f| truncated(&f, MAX_DETAIL_CHARS).into_owned()),
        };
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A JSON body whose errors are problem documents naming the offending field's path.
/// Request types deny unknown fields, so a typo is an error instead of being ignored.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ..ApiError::bad_request("the body must be application/json")
            });
        }
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection: BytesRejection| match rejection {
                BytesRejection::FailedToBufferBody(e) if e.to_string().contains("length limit") => {
                    ApiError {
                        status: StatusCode::PAYLOAD_TOO_LARGE,
                        ..ApiError::bad_request(
                            "the request body is larger than the server accepts",
                        )
                    }
                }
                other => ApiError::bad_request(other.body_text()),
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|inner| {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        })?;
        if let Err((path, what)) = refused_text(&value, "") {
            return Err(ApiError::invalid_field(
                &path,
                format!("{path}: {what} is not accepted in text"),
            ));
        }
        match serde_path_to_error::deserialize(value) {
            Ok(value) => Ok(Self(value)),
            Err(error) => {
                let path = error.path().to_string();
                let inner = error.into_inner();
                let mut problem = ApiError::invalid_field(&path, format!("{path}: {inner}"));
                if path == "." {
                    problem.field = None;
                }
                Err(problem)
            }
        }
    }
}

/// The first string (value or key) in a JSON document holding a character that free text may not
/// contain (`sluice_core::text`): its path, and what was found where, without the text itself.
fn refused_text(value: &serde_json::Value, path: &str) -> Result<(), (String, String)> {
    let here = |path: &str| {
        if path.is_empty() {
            ".".to_owned()
        } else {
            path.to_owned()
        }
    };
    let check = |path: &str, text: &str| match sluice_core::text::first_refused(text) {
        Some((index, what)) => Err((here(path), format!("{what} at character {}", index + 1))),
        None => Ok(()),
    };
    match value {
        serde_json::Value::String(text) => check(path, text),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| refused_text(item, &format!("{path}[{i}]"))),
        serde_json::Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            let inner = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            check(path, key).map_err(|(at, what)| (at, format!("a key with {what}")))?;
            refused_text(item, &inner)
        }),
        _ => Ok(()),
    }
}

impl From<crate::rollouts::RolloutError> for ApiError {
    fn from(error: crate::rollouts::RolloutError) -> Self {
        use crate::rollouts::RolloutError;
        match error {
            RolloutError::NotFound(detail) => Self::not_found(detail),
            RolloutError::Conflict(detail) => Self::conflict(detail),
            RolloutError::Invalid(detail) => Self::unprocessable(detail),
            RolloutError::InvalidField { field, detail } => Self::invalid_field(field, detail),
            RolloutError::Forbidden(detail) => Self::forbidden(detail),
            RolloutError::Store(error) => error.into(),
            RolloutError::Change(error) => error.into(),
            RolloutError::Calendar(error) => error.into(),
            error @ (RolloutError::Corrupt { .. } | RolloutError::Internal(_)) => {
                Self::internal(error)
            }
        }
    }
}

// Each service's errors, mapped to problem documents here and nowhere else. Status, title and
// detail are what the handlers answered before the services had errors of their own.

/// A detail with the field at fault when there is one.
fn invalid(field: Option<String>, detail: String) -> ApiError {
    match field {
        Some(field) => ApiError::invalid_field(&field, detail),
        None => ApiError::unprocessable(detail),
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal.kind {
            RefusalKind::Conflict => Self::conflict(refusal.reason),
            RefusalKind::Forbidden => Self::forbidden(refusal.reason),
            RefusalKind::Invalid => Self::unprocessable(refusal.reason),
        }
    }
}

impl From<GovernanceError> for ApiError {
    fn from(error: GovernanceError) -> Self {
        match error {
            GovernanceError::Store(e) => e.into(),
            GovernanceError::Corrupt(detail) => Self::internal(detail),
        }
    }
}

impl From<IntelError> for ApiError {
    fn from(error: IntelError) -> Self {
        match error {
            IntelError::Store(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<CalendarError> for ApiError {
    fn from(error: CalendarError) -> Self {
        match error {
            CalendarError::NotFound(detail) => Self::not_found(detail),
            CalendarError::NotAllowed(detail) => Self::forbidden(detail),
            CalendarError::Invalid { field, detail } => invalid(Some(field), detail),
            CalendarError::Corrupt(detail) => Self::internal(detail),
            CalendarError::Store(e) => e.into(),
        }
    }
}

impl From<FindingsError> for ApiError {
    fn from(error: FindingsError) -> Self {
        match error {
            FindingsError::NotFound(detail) => Self::not_found(detail),
            FindingsError::Invalid { field, detail } => invalid(Some(field), detail),
            FindingsError::Intel(e) => e.into(),
            FindingsError::Governance(e) => e.into(),
            FindingsError::Store(e) => e.into(),
        }
    }
}

impl From<ChangeError> for ApiError {
    fn from(error: ChangeError) -> Self {
        match error {
            ChangeError::NotFound(detail) => Self::not_found(detail),
            ChangeError::Conflict(detail) => Self::conflict(detail),
            ChangeError::NotAllowed(detail) => Self::forbidden(detail),
            ChangeError::Invalid { field, detail } => invalid(field, detail),
            ChangeError::Refused(refusal) => refusal.into(),
            ChangeError::Calendar(e) => e.into(),
            ChangeError::Findings(e) => e.into(),
            ChangeError::Governance(e) => e.into(),
            ChangeError::Audit(e) => Self::internal(format!("audit payload: {e}")),
            ChangeError::Store(e) => e.into(),
        }
    }
}

impl From<AgentError> for ApiError {
    fn from(error: AgentError) -> Self {
        match error {
            AgentError::NotFound(detail) => Self::not_found(detail),
            AgentError::NotAuthenticated(detail) => Self::unauthenticated(detail),
            AgentError::Conflict(detail) => Self::conflict(detail),
            AgentError::Invalid { field, detail } => invalid(Some(field), detail),
            AgentError::Internal(detail) => Self::internal(detail),
            AgentError::Findings(e) => e.into(),
            AgentError::Store(e) => e.into(),
        }
    }
}

impl From<DeferralError> for ApiError {
    fn from(error: DeferralError) -> Self {
        let detail = error.to_string();
        match error {
            DeferralError::Invalid { field, .. } => Self::invalid_field(&field, detail),
            DeferralError::TooLong { .. } => Self::invalid_field("expires_at", detail),
            DeferralError::Policy(_) => Self::unprocessable(detail),
            DeferralError::SelfApproval { .. } | DeferralError::MissingRole { .. } => {
                Self::forbidden(detail)
            }
            _ => Self::conflict(detail),
        }
    }
}

impl From<DeferralServiceError> for ApiError {
    fn from(error: DeferralServiceError) -> Self {
        match error {
            DeferralServiceError::NotFound(detail) => Self::not_found(detail),
            DeferralServiceError::Invalid { field, detail } => invalid(Some(field), detail),
            DeferralServiceError::Refused(e) => e.into(),
            DeferralServiceError::Governance(e) => e.into(),
            DeferralServiceError::Store(e) => e.into(),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::Conflict(detail) => Self::conflict(detail),
            PolicyError::Invalid { field, detail } => invalid(field, detail),
            PolicyError::Governance(e) => e.into(),
            PolicyError::Encode(e) => Self::internal(e),
            PolicyError::Store(e) => e.into(),
        }
    }
}

impl From<CmdbServiceError> for ApiError {
    fn from(error: CmdbServiceError) -> Self {
        match error {
            CmdbServiceError::NotFound(detail) => Self::not_found(detail),
            CmdbServiceError::Invalid { field, detail } => invalid(Some(field), detail),
            CmdbServiceError::Internal(detail) => Self::internal(detail),
            CmdbServiceError::Intel(e) => e.into(),
            CmdbServiceError::Store(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::NotFound(detail) => Self::not_found(detail),
            AccountError::Invalid { field, detail } => invalid(field, detail),
            AccountError::Forbidden(detail) => Self::forbidden(detail),
            AccountError::Unauthorized(detail) => Self::unauthenticated(detail),
            error @ AccountError::TooManyAttempts { retry_after } => {
                Self::too_many(error.to_string(), retry_after)
            }
            error @ (AccountError::Credential(_) | AccountError::Expiry(_)) => {
                Self::internal(error)
            }
            AccountError::Store(e) => e.into(),
        }
    }
}
