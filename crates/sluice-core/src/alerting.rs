//! Pause signals for a rollout: Alertmanager webhooks and Prometheus instant-query answers,
//! parsed from bytes, and the rule deciding which alerts concern which rollout.
//!
//! A rollout pauses while something it may have caused is alarming: an alert labelled with the
//! rollout, or naming one of its hosts or services. This module only reads and decides; the
//! server receives the webhooks, runs the queries and feeds the results to the rollout engine
//! as observations ([`observation`]). No I/O, no clock.
//!
//! Formats are the tools' own:
//! - Alertmanager's webhook payload, version 4 (Prometheus docs, "webhook_config"): `version`,
//!   `groupKey`, `truncatedAlerts`, `status`, `receiver`, `groupLabels`, `commonLabels`,
//!   `commonAnnotations`, `externalURL` and `alerts`, each with `status`, `labels`,
//!   `annotations`, `startsAt`, `endsAt`, `generatorURL` and `fingerprint`. Fields Alertmanager
//!   may add later are ignored.
//! - Prometheus' HTTP API answer to `GET /api/v1/query` (`status`, `data.resultType`,
//!   `data.result`, `errorType`, `error`, `warnings`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rollout::Observation;

/// The only Alertmanager webhook payload version Sluice reads.
pub const ALERTMANAGER_VERSION: &str = "4";

/// The label that ties an alert to one rollout explicitly.
pub const ROLLOUT_LABEL: &str = "sluice_rollout";

/// Labels that name a host, in the order they are tried.
pub const HOST_LABELS: [&str; 4] = ["instance", "host", "hostname", "nodename"];

/// The label that names a service.
pub const SERVICE_LABEL: &str = "service";

const WEBHOOK: &str = "Alertmanager webhook";
const QUERY: &str = "Prometheus query answer";

/// Why a webhook payload or a query answer was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AlertError {
    /// The bytes are not JSON at all.
    #[error("{what}: not valid JSON: {reason}")]
    Syntax {
        /// Which document.
        what: &'static str,
        /// serde_json's reason, with line and column.
        reason: String,
    },
    /// A field is missing, has the wrong type or an unknown value.
    #[error("{what}: at {path}: {reason}")]
    Field {
        /// Which document.
        what: &'static str,
        /// The JSON path of the offending value (`alerts[1].status`), or `the top level`.
        path: String,
        /// What is wrong there.
        reason: String,
    },
    /// An Alertmanager payload version other than [`ALERTMANAGER_VERSION`].
    #[error(
        "Alertmanager webhook: payload version {0} is not supported; Sluice reads version \"4\""
    )]
    Version(String),
    /// Prometheus answered the query with an error.
    #[error("Prometheus query failed: {error_type}: {error}")]
    QueryFailed {
        /// Prometheus' `errorType` (`bad_data`, `timeout`, `execution`, ...).
        error_type: String,
        /// Prometheus' `error` text.
        error: String,
    },
    /// A result type an instant query for a pause condition cannot give.
    #[error(
        "Prometheus query answer: result type `{0}` cannot be a pause condition; an instant query must give a vector or a scalar"
    )]
    ResultType(String),
}

/// Whether an alert (or a whole notification) fires or has resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// The condition holds.
    Firing,
    /// The condition no longer holds.
    Resolved,
}

/// One Alertmanager webhook notification (payload version 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertmanagerPayload {
    /// Always [`ALERTMANAGER_VERSION`] once parsed.
    pub version: String,
    /// Identifies the alert group, for deduplication.
    pub group_key: String,
    /// How many alerts Alertmanager left out because of `max_alerts` (absent before 0.22).
    #[serde(default)]
    pub truncated_alerts: u64,
    /// `firing` when at least one alert in the group fires.
    pub status: AlertStatus,
    /// The receiver the notification was routed to.
    pub receiver: String,
    /// The labels the group is formed by.
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert in the notification shares.
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert in the notification shares.
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    /// Link back to the Alertmanager that sent it.
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    /// The alerts themselves.
    pub alerts: Vec<Alert>,
}

/// One alert in a notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Firing or resolved.
    pub status: AlertStatus,
    /// Identifying labels (`alertname`, `instance`, `service`, ...).
    pub labels: BTreeMap<String, String>,
    /// Descriptive annotations (`summary`, `description`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// When the alert started firing.
    pub starts_at: Timestamp,
    /// When it resolved; `0001-01-01T00:00:00Z` (see [`Alert::ended`]) or a future
    /// estimate while it fires.
    pub ends_at: Timestamp,
    /// Link to the expression that generated it.
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's stable hash of the labels.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl Alert {
    /// The `alertname` label, or `unnamed` when a sender left it out.
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("unnamed")
    }

    /// When the alert ended, if Alertmanager said so (Go's zero time means unknown).
    pub fn ended(&self) -> Option<Timestamp> {
        // Go's zero `time.Time`, 0001-01-01T00:00:00Z, in seconds from the Unix epoch.
        const GO_ZERO_TIME: i64 = -62_135_596_800;
        (self.ends_at.as_second() != GO_ZERO_TIME).then_some(self.ends_at)
    }
}

/// Parses an Alertmanager webhook body. Refuses other payload versions, missing or ill-typed
/// fields (with their JSON path) and statuses other than `firing` and `resolved`.
pub fn parse_alertmanager(bytes: &[u8]) -> Result<AlertmanagerPayload, AlertError> {
    let value = parse_json(WEBHOOK, bytes)?;
    match value.get("version") {
        Some(Value::String(v)) if v == ALERTMANAGER_VERSION => {}
        Some(Value::String(v)) => return Err(AlertError::Version(format!("{v:?}"))),
        Some(other) => return Err(AlertError::Version(other.to_string())),
        None => {
            return Err(AlertError::Field {
                what: WEBHOOK,
                path: "the top level".to_owned(),
                reason: "missing field `version`".to_owned(),
            });
        }
    }
    decode(WEBHOOK, "", value)
}

/// The hosts and services one rollout touches, to decide which alerts concern it.
#[derive(Clone, Copy, Debug)]
pub struct RolloutScope<'a> {
    /// The rollout id, as an alert's `sluice_rollout` label would carry it.
    pub rollout: &'a str,
    /// Host names in the rollout.
    pub hosts: &'a BTreeSet<String>,
    /// Service names in the rollout.
    pub services: &'a BTreeSet<String>,
}

/// Why an alert concerns a rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Concern {
    /// It carries the rollout's id in `sluice_rollout`.
    Rollout,
    /// It names one of the rollout's hosts (the scope's spelling).
    Host(String),
    /// It names one of the rollout's services.
    Service(String),
}

/// Whether and why `alert` concerns the rollout. An alert labelled for another rollout never
/// does: its author said whose it is. Host labels are compared without case and without a
/// trailing dot; `instance` also loses a scheme, a path and a `:port` (`[::1]:9100` → `::1`).
pub fn concern(alert: &Alert, scope: &RolloutScope<'_>) -> Option<Concern> {
    if let Some(rollout) = alert.labels.get(ROLLOUT_LABEL) {
        return (rollout == scope.rollout).then_some(Concern::Rollout);
    }
    for label in HOST_LABELS {
        let Some(value) = alert.labels.get(label) else {
            continue;
        };
        let name = if label == "instance" {
            instance_host(value)
        } else {
            value.as_str()
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(host) = scope.hosts.iter().find(|h| h.eq_ignore_ascii_case(name)) {
            return Some(Concern::Host(host.clone()));
        }
    }
    alert
        .labels
        .get(SERVICE_LABEL)
        .filter(|s| scope.services.contains(s.as_str()))
        .map(|s| Concern::Service(s.clone()))
}

/// The key under which the rollout state records `alert`, when it concerns the rollout.
pub fn relevant(alert: &Alert, scope: &RolloutScope<'_>) -> Option<AlertKey> {
    concern(alert, scope).map(|_| AlertKey::of(alert))
}

/// The engine observation for `alert`, when it concerns the rollout: firing pauses it,
/// resolved lets a person resume.
pub fn observation(alert: &Alert, scope: &RolloutScope<'_>) -> Option<Observation> {
    let alert_key = relevant(alert, scope)?.into_string();
    Some(match alert.status {
        AlertStatus::Firing => Observation::AlertFiring { alert: alert_key },
        AlertStatus::Resolved => Observation::AlertResolved { alert: alert_key },
    })
}

/// One line for people: the alert, what in the rollout it names, and its summary.
pub fn describe(alert: &Alert, scope: &RolloutScope<'_>) -> String {
    let mut text = alert.name().to_owned();
    match concern(alert, scope) {
        Some(Concern::Rollout) => {
            text.push_str(&format!(" (labelled for rollout {})", scope.rollout))
        }
        Some(Concern::Host(host)) => text.push_str(&format!(" on host {host}")),
        Some(Concern::Service(service)) => text.push_str(&format!(" on service {service}")),
        None => {}
    }
    if let Some(summary) = alert.annotations.get("summary") {
        text.push_str(": ");
        text.push_str(summary);
    }
    text
}

/// The host part of a Prometheus `instance` label: `web-1:9100` → `web-1`,
/// `[::1]:9100` → `::1`, `https://web-1:8443/health` → `web-1`; a bare IPv6 address stays.
fn instance_host(instance: &str) -> &str {
    let rest = instance
        .split_once("://")
        .map_or(instance, |(_, after)| after);
    let rest = rest.split('/').next().unwrap_or(rest);
    if let Some(bracketed) = rest.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or(bracketed);
    }
    match rest.split_once(':') {
        // More than one colon without brackets: an IPv6 address, not host:port.
        Some((host, port)) if !port.contains(':') => host,
        _ => rest,
    }
}

/// A stable name for one alert in the rollout state: `<alertname> <fingerprint>`, or the
/// alertname and its sorted labels when the sender gave no fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AlertKey(String);

impl AlertKey {
    /// The key of `alert`.
    pub fn of(alert: &Alert) -> Self {
        let name = alert.name();
        match alert.fingerprint.as_deref().filter(|f| !f.is_empty()) {
            Some(fingerprint) => Self(format!("{name} {fingerprint}")),
            None => {
                let labels: Vec<String> = alert
                    .labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alertname")
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                Self(format!("{name}{{{}}}", labels.join(",")))
            }
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string, as the rollout state stores it.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for AlertKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Prometheus instant-query answer that succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryAnswer {
    /// The result.
    pub result: QueryResult,
    /// Warnings Prometheus attached (a partial answer, for instance).
    pub warnings: Vec<String>,
}

/// The result of an instant query.
#[derive(Clone, Debug, PartialEq)]
pub enum QueryResult {
    /// One sample per series.
    Vector(Vec<Sample>),
    /// One number.
    Scalar {
        /// Evaluation time, Unix seconds.
        at: f64,
        /// The value.
        value: f64,
    },
}

/// One series' sample in a vector result.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series labels, `__name__` included when the query kept it.
    pub metric: BTreeMap<String, String>,
    /// Evaluation time, Unix seconds.
    pub at: f64,
    /// The value (`NaN` and infinities as Prometheus writes them).
    pub value: f64,
}

impl QueryAnswer {
    /// The series that breach: value non-zero and not NaN, as `metric{labels}=value`. A pause
    /// query is written to return only breaching series (`rate(...) > 0.05`) or a 0/1 value.
    pub fn breaching(&self) -> Vec<String> {
        let breaches = |v: f64| v != 0.0 && !v.is_nan();
        match &self.result {
            QueryResult::Vector(samples) => samples
                .iter()
                .filter(|s| breaches(s.value))
                .map(|s| {
                    let name = s.metric.get("__name__").map_or("", String::as_str);
                    let labels: Vec<String> = s
                        .metric
                        .iter()
                        .filter(|(k, _)| k.as_str() != "__name__")
                        .map(|(k, v)| format!("{k}={v:?}"))
                        .collect();
                    format!("{name}{{{}}}={}", labels.join(","), s.value)
                })
                .collect(),
            QueryResult::Scalar { value, .. } if breaches(*value) => {
                vec![format!("scalar={value}")]
            }
            QueryResult::Scalar { .. } => Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAnswer {
    status: String,
    #[serde(default)]
    data: Option<RawData>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawData {
    result_type: String,
    result: Value,
}

#[derive(Deserialize)]
struct RawSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// Parses a Prometheus `GET /api/v1/query` answer. An error answer becomes
/// [`AlertError::QueryFailed`]; matrix and string results are refused.
pub fn parse_prometheus(bytes: &[u8]) -> Result<QueryAnswer, AlertError> {
    let raw: RawAnswer = decode(QUERY, "", parse_json(QUERY, bytes)?)?;
    match raw.status.as_str() {
        "success" => {}
        "error" => {
            return Err(AlertError::QueryFailed {
                error_type: raw.error_type.unwrap_or_else(|| "unknown".to_owned()),
                error: raw.error.unwrap_or_default(),
            });
        }
        other => {
            return Err(AlertError::Field {
                what: QUERY,
                path: "status".to_owned(),
                reason: format!("unknown status {other:?}, expected \"success\" or \"error\""),
            });
        }
    }
    let data = raw.data.ok_or_else(|| AlertError::Field {
        what: QUERY,
        path: "the top level".to_owned(),
        reason: "missing field `data` in a successful answer".to_owned(),
    })?;
    let result = match data.result_type.as_str() {
        "vector" => {
            let raw: Vec<RawSample> = decode(QUERY, "data.result", data.result)?;
            let samples = raw
                .into_iter()
                .enumerate()
                .map(|(i, s)| {
                    Ok(Sample {
                        value: sample_value(&s.value.1, &format!("data.result[{i}].value[1]"))?,
                        metric: s.metric,
                        at: s.value.0,
                    })
                })
                .collect::<Result<_, AlertError>>()?;
            QueryResult::Vector(samples)
        }
        "scalar" => {
            let (at, text): (f64, String) = decode(QUERY, "data.result", data.result)?;
            QueryResult::Scalar {
                at,
                value: sample_value(&text, "data.result[1]")?,
            }
        }
        other => return Err(AlertError::ResultType(other.to_owned())),
    };
    Ok(QueryAnswer {
        result,
        warnings: raw.warnings,
    })
}

/// A sample value as Prometheus writes it: a decimal, `NaN`, `+Inf` or `-Inf`, in a string.
fn sample_value(text: &str, path: &str) -> Result<f64, AlertError> {
    text.parse().map_err(|_| AlertError::Field {
        what: QUERY,
        path: path.to_owned(),
        reason: format!("sample value {text:?} is not a number"),
    })
}

fn parse_json(what: &'static str, bytes: &[u8]) -> Result<Value, AlertError> {
    serde_json::from_slice(bytes).map_err(|e| AlertError::Syntax {
        what,
        reason: e.to_string(),
    })
}

/// Deserialises `value`, naming the JSON path of a bad field below `prefix`.
fn decode<T: DeserializeOwned>(
    what: &'static str,
    prefix: &str,
    value: Value,
) -> Result<T, AlertError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix, inner.as_str()) {
            ("", ".") => "the top level".to_owned(),
            ("", _) => inner,
            (_, ".") => prefix.to_owned(),
            (_, _) if inner.starts_with('[') => format!("{prefix}{inner}"),
            (_, _) => format!("{prefix}.{inner}"),
        };
        AlertError::Field {
            what,
            path,
            reason: e.into_inner().to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example shape from the Alertmanager docs: one firing alert on a host with a port,
    /// one resolved alert on a service, with an extra field a newer Alertmanager might add.
    const WEBHOOK_BODY: &str = r#"{
      "version": "4",
      "groupKey": "{}/{severity=\"page\"}:{alertname=\"HighErrorRate\"}",
      "truncatedAlerts": 0,
      "status": "firing",
      "receiver": "sluice",
      "groupLabels": {"alertname": "HighErrorRate"},
      "commonLabels": {"alertname": "HighErrorRate", "severity": "page"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager.example:9093",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "HighErrorRate", "severity": "page", "instance": "web-01.example.com:9100", "job": "node"},
          "annotations": {"summary": "5xx above 5% for 5 minutes"},
          "startsAt": "2026-11-20T10:15:03.271Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus.example:9090/graph?g0.expr=...",
          "fingerprint": "4b5d1b2a9cba63cd"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "HighErrorRate", "severity": "page", "service": "checkout"},
          "annotations": {},
          "startsAt": "2026-11-20T09:58:00Z",
          "endsAt": "2026-11-20T10:12:00.5+01:00",
          "generatorURL": "http://prometheus.example:9090/graph?g0.expr=...",
          "fingerprint": "91e2c3c5d4c0e7aa"
        }
      ],
      "newFieldFromTheFuture": {"x": 1}
    }"#;

    fn scope<'a>(hosts: &'a BTreeSet<String>, services: &'a BTreeSet<String>) -> RolloutScope<'a> {
        RolloutScope {
            rollout: "RO-7",
            hosts,
            services,
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn alert(labels: &[(&str, &str)]) -> Alert {
        Alert {
            status: AlertStatus::Firing,
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            annotations: BTreeMap::new(),
            starts_at: Timestamp::UNIX_EPOCH,
            ends_at: Timestamp::UNIX_EPOCH,
            generator_url: String::new(),
            fingerprint: None,
        }
    }

    #[test]
    fn webhook_parses_with_both_alerts() {
        let payload = parse_alertmanager(WEBHOOK_BODY.as_bytes()).unwrap();
        assert_eq!(payload.status, AlertStatus::Firing);
        assert_eq!(payload.receiver, "sluice");
        assert_eq!(payload.external_url, "http://alertmanager.example:9093");
        assert_eq!(payload.alerts.len(), 2);
        let (firing, resolved) = (&payload.alerts[0], &payload.alerts[1]);
        assert_eq!(firing.status, AlertStatus::Firing);
        assert_eq!(firing.name(), "HighErrorRate");
        assert_eq!(
            firing.starts_at,
            "2026-11-20T10:15:03.271Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(firing.ended(), None, "Go's zero time means no end yet");
        assert_eq!(resolved.status, AlertStatus::Resolved);
        assert_eq!(
            resolved.ended(),
            Some("2026-11-20T09:12:00.5Z".parse().unwrap()),
            "offsets are honoured"
        );
        assert_eq!(resolved.fingerprint.as_deref(), Some("91e2c3c5d4c0e7aa"));
    }

    #[test]
    fn webhook_refusals_name_what_and_where() {
        let v3 = WEBHOOK_BODY.replacen(r#""version": "4""#, r#""version": "3""#, 1);
        let e = parse_alertmanager(v3.as_bytes()).unwrap_err();
        assert_eq!(e, AlertError::Version("\"3\"".to_owned()));
        assert!(
            e.to_string().contains("version \"3\" is not supported"),
            "{e}"
        );

        let no_alerts = WEBHOOK_BODY.replacen(r#""alerts""#, r#""alertz""#, 1);
        let e = parse_alertmanager(no_alerts.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Alertmanager webhook: at the top level: missing field `alerts`"
        );

        let bad_status = WEBHOOK_BODY.replacen(r#""status": "resolved""#, r#""status": "ok""#, 1);
        let e = parse_alertmanager(bad_status.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at alerts[1].status: unknown variant `ok`"),
            "{e}"
        );

        let bad_time = WEBHOOK_BODY.replacen("2026-11-20T09:58:00Z", "yesterday", 1);
        let e = parse_alertmanager(bad_time.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("at alerts[1].startsAt:"), "{e}");

        let labels_as_list = WEBHOOK_BODY.replacen(
            r#""labels": {"alertname": "HighErrorRate", "severity": "page", "service": "checkout"}"#,
            r#""labels": ["checkout"]"#,
            1,
        );
        let e = parse_alertmanager(labels_as_list.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("at alerts[1].labels: invalid type: sequence"),
            "{e}"
        );

        let e = parse_alertmanager(br#"{"status": "firing"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `version`"), "{e}");
        let e = parse_alertmanager(br#"{"version": 4}"#).unwrap_err();
        assert_eq!(
            e,
            AlertError::Version("4".to_owned()),
            "a number is not the string \"4\""
        );
        let e = parse_alertmanager(b"{not json").unwrap_err().to_string();
        assert!(
            e.starts_with("Alertmanager webhook: not valid JSON: "),
            "{e}"
        );
    }

    #[test]
    fn matching_by_instance_service_and_rollout_label() {
        let hosts = set(&["web-01.example.com", "db-1", "::1"]);
        let services = set(&["checkout"]);
        let scope = scope(&hosts, &services);
        let payload = parse_alertmanager(WEBHOOK_BODY.as_bytes()).unwrap();

        let firing = &payload.alerts[0];
        assert_eq!(
            concern(firing, &scope),
            Some(Concern::Host("web-01.example.com".to_owned()))
        );
        assert_eq!(
            relevant(firing, &scope).unwrap().as_str(),
            "HighErrorRate 4b5d1b2a9cba63cd"
        );
        assert_eq!(
            describe(firing, &scope),
            "HighErrorRate on host web-01.example.com: 5xx above 5% for 5 minutes"
        );
        assert_eq!(
            observation(firing, &scope),
            Some(Observation::AlertFiring {
                alert: "HighErrorRate 4b5d1b2a9cba63cd".to_owned()
            })
        );
        let resolved = &payload.alerts[1];
        assert_eq!(
            concern(resolved, &scope),
            Some(Concern::Service("checkout".to_owned()))
        );
        assert_eq!(
            observation(resolved, &scope),
            Some(Observation::AlertResolved {
                alert: "HighErrorRate 91e2c3c5d4c0e7aa".to_owned()
            })
        );

        type Labels<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Labels<'_>, Option<Concern>)] = &[
            (
                &[("instance", "[::1]:9100")],
                Some(Concern::Host("::1".to_owned())),
            ),
            (
                &[("instance", "::1")],
                Some(Concern::Host("::1".to_owned())),
            ),
            (
                &[("instance", "DB-1:5432")],
                Some(Concern::Host("db-1".to_owned())),
            ),
            (
                &[("instance", "https://db-1:8443/healthz")],
                Some(Concern::Host("db-1".to_owned())),
            ),
            (
                &[("hostname", "db-1.")],
                Some(Concern::Host("db-1".to_owned())),
            ),
            (
                &[("nodename", "db-1")],
                Some(Concern::Host("db-1".to_owned())),
            ),
            (&[("host", "db-1")], Some(Concern::Host("db-1".to_owned()))),
            // `host` is not stripped of a port: only `instance` carries one.
            (&[("host", "db-1:5432")], None),
            (&[("instance", "db-10:9100")], None),
            (&[("instance", "web-01:9100")], None),
            (&[("service", "payments")], None),
            (&[("sluice_rollout", "RO-7")], Some(Concern::Rollout)),
            // Labelled for another rollout: not ours, whatever host it names.
            (
                &[("sluice_rollout", "RO-8"), ("instance", "db-1:9100")],
                None,
            ),
            (&[("sluice_rollout", "RO-8"), ("service", "checkout")], None),
            (&[("job", "node")], None),
        ];
        for (labels, expected) in cases {
            assert_eq!(
                &concern(&alert(labels), &scope),
                expected,
                "labels {labels:?}"
            );
        }
        let ours = alert(&[("alertname", "DiskFull"), ("sluice_rollout", "RO-7")]);
        assert_eq!(
            describe(&ours, &scope),
            "DiskFull (labelled for rollout RO-7)"
        );
    }

    #[test]
    fn alert_key_without_fingerprint_is_name_and_sorted_labels() {
        let a = alert(&[
            ("service", "checkout"),
            ("alertname", "Slow"),
            ("env", "prod"),
        ]);
        assert_eq!(
            AlertKey::of(&a).as_str(),
            r#"Slow{env="prod",service="checkout"}"#
        );
        let mut b = a.clone();
        b.fingerprint = Some(String::new());
        assert_eq!(
            AlertKey::of(&a),
            AlertKey::of(&b),
            "an empty fingerprint is none"
        );
        let nameless = alert(&[("service", "checkout")]);
        assert_eq!(
            AlertKey::of(&nameless).as_str(),
            r#"unnamed{service="checkout"}"#
        );
    }

    #[test]
    fn prometheus_vector_scalar_and_refusals() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","instance":"web-01:9100","job":"node"},"value":[1435781451.781,"1"]},
            {"metric":{"instance":"web-02:9100","job":"node"},"value":[1435781451.781,"0"]},
            {"metric":{"instance":"web-03:9100"},"value":[1435781451.781,"NaN"]},
            {"metric":{"instance":"web-04:9100"},"value":[1435781451.781,"0.07"]},
            {"metric":{},"value":[1435781451.781,"+Inf"]}
        ]},"warnings":["partial answer"]}"#;
        let answer = parse_prometheus(vector).unwrap();
        assert_eq!(answer.warnings, vec!["partial answer".to_owned()]);
        let QueryResult::Vector(samples) = &answer.result else {
            panic!("expected a vector, got {:?}", answer.result);
        };
        assert_eq!(samples.len(), 5);
        assert_eq!(samples[0].at, 1435781451.781);
        assert_eq!(
            answer.breaching(),
            vec![
                r#"up{instance="web-01:9100",job="node"}=1"#.to_owned(),
                r#"{instance="web-04:9100"}=0.07"#.to_owned(),
                "{}=inf".to_owned(),
            ]
        );

        let scalar = parse_prometheus(
            br#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"1"]}}"#,
        )
        .unwrap();
        assert_eq!(
            scalar.result,
            QueryResult::Scalar {
                at: 1435781451.781,
                value: 1.0
            }
        );
        assert_eq!(scalar.breaching(), vec!["scalar=1".to_owned()]);
        let zero = parse_prometheus(
            br#"{"status":"success","data":{"resultType":"scalar","result":[1435781451.781,"0"]}}"#,
        )
        .unwrap();
        assert!(zero.breaching().is_empty());

        let error = parse_prometheus(
            br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:6: parse error"}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Prometheus query failed: bad_data: invalid parameter "query": 1:6: parse error"#
        );

        let matrix = parse_prometheus(
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#,
        )
        .unwrap_err();
        assert_eq!(matrix, AlertError::ResultType("matrix".to_owned()));
        assert!(
            matrix
                .to_string()
                .contains("must give a vector or a scalar")
        );

        let bad_value = parse_prometheus(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"1"]},{"metric":{},"value":[1,"lots"]}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad_value.contains("at data.result[1].value[1]: sample value \"lots\""),
            "{bad_value}"
        );
        let no_value = parse_prometheus(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"histogram":[1,{}]}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            no_value.contains("at data.result[0]: missing field `value`"),
            "{no_value}"
        );
        let no_data = parse_prometheus(br#"{"status":"success"}"#)
            .unwrap_err()
            .to_string();
        assert!(no_data.contains("missing field `data`"), "{no_data}");
    }
}
