//! The audit chain: every state change becomes an event that carries the previous event's hash
//! and its own, so an edit, insertion or deletion behind the server's back is detectable.
//!
//! An event's hash is SHA-256 over the previous hash and a canonical encoding of the event: a
//! compact JSON array of its fields in a fixed order, with `before`/`after` objects in sorted-key
//! form. The store writes events in the same transaction as the change they record and keeps the
//! chain's head (last sequence number and hash) beside it; [`verify`] recomputes everything.
//!
//! A keyless chain proves the record was not edited *unless the whole tail was recomputed*; the
//! head hash that `sluice audit verify` prints is what to anchor outside the database (a ticket,
//! a signed log) for that stronger guarantee.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash that precedes the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a change records about itself, before it is sealed into the chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAuditEvent {
    /// Who: a user name, `agent:HOST`, or `system`.
    pub actor: String,
    /// What, as `noun.verb` (`user.create`, `asset.update`, `login.failure`).
    pub action: String,
    /// The object changed, as `kind:id` (`user:alice`, `asset:web1`).
    pub object: String,
    /// The object before the change, when it existed.
    pub before: Option<Value>,
    /// The object after the change, when it still exists.
    pub after: Option<Value>,
    /// The request that caused it.
    pub request_id: Option<String>,
}

/// A sealed event, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When, RFC 3339 in UTC, as hashed.
    pub at: String,
    /// Who.
    pub actor: String,
    /// What.
    pub action: String,
    /// Which object.
    pub object: String,
    /// Canonical JSON of the object before, as hashed.
    pub before: Option<String>,
    /// Canonical JSON of the object after, as hashed.
    pub after: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// The previous event's hash ([`GENESIS_HASH`] for the first).
    pub prev_hash: String,
    /// This event's hash, lowercase hex.
    pub hash: String,
}

/// Seals a new event as number `seq` after the event whose hash is `prev_hash`.
pub fn seal(event: NewAuditEvent, seq: i64, at: jiff::Timestamp, prev_hash: &str) -> AuditEvent {
    let mut sealed = AuditEvent {
        seq,
        at: at.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        actor: event.actor,
        action: event.action,
        object: event.object,
        before: event.before.as_ref().map(canonical_json),
        after: event.after.as_ref().map(canonical_json),
        request_id: event.request_id,
        prev_hash: prev_hash.to_owned(),
        hash: String::new(),
    };
    sealed.hash = compute_hash(&sealed);
    sealed
}

/// JSON with object keys sorted and no insignificant white space.
pub fn canonical_json(value: &Value) -> String {
    // serde_json's map is ordered by key (the `preserve_order` feature is not enabled), so
    // serialising a Value is already canonical.
    value.to_string()
}

/// The hash an event must carry, from its other fields.
pub fn compute_hash(event: &AuditEvent) -> String {
    let fields = Value::Array(vec![
        Value::from(event.seq),
        Value::from(event.at.as_str()),
        Value::from(event.actor.as_str()),
        Value::from(event.action.as_str()),
        Value::from(event.object.as_str()),
        event.before.as_deref().map_or(Value::Null, Value::from),
        event.after.as_deref().map_or(Value::Null, Value::from),
        event.request_id.as_deref().map_or(Value::Null, Value::from),
    ]);
    let mut hasher = Sha256::new();
    hasher.update(event.prev_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(fields.to_string().as_bytes());
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            hex.push_str(&format!("{byte:02x}"));
            hex
        })
}

/// The chain's last link, kept beside the events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    /// Sequence number of the last event (0 when empty).
    pub seq: i64,
    /// Hash of the last event ([`GENESIS_HASH`] when empty).
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

/// The first place where the chain is broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The event's content no longer matches its hash: it was edited.
    #[error("audit event {seq} was altered: its content does not match its hash")]
    Altered {
        /// The event.
        seq: i64,
    },
    /// Events are missing between two that remain.
    #[error("audit events {from} to {to} are missing (deleted)")]
    Missing {
        /// First missing sequence number.
        from: i64,
        /// Last missing sequence number.
        to: i64,
    },
    /// The event does not link to the one before it: it was inserted, or its predecessor replaced.
    #[error("audit event {seq} does not link to event {previous}: inserted or rewritten")]
    Inserted {
        /// The event.
        seq: i64,
        /// The event before it.
        previous: i64,
    },
    /// The chain ends before the recorded head: the last events were deleted.
    #[error("audit events {from} to {to} are missing at the end of the chain (deleted)")]
    Truncated {
        /// First missing sequence number.
        from: i64,
        /// The head's sequence number.
        to: i64,
    },
    /// The chain goes past the recorded head, or its last hash differs from the head's.
    #[error(
        "audit event {seq} is not the recorded head of the chain: appended or rewritten behind the server's back"
    )]
    HeadMismatch {
        /// The last event found.
        seq: i64,
    },
}

/// Recomputes a chain in sequence order and checks it against its recorded head.
///
/// Returns the head it verified, or the first break.
pub fn verify<I>(events: I, head: &ChainHead) -> Result<ChainHead, ChainBreak>
where
    I: IntoIterator<Item = AuditEvent>,
{
    let mut last = ChainHead::genesis();
    for event in events {
        if compute_hash(&event) != event.hash {
            return Err(ChainBreak::Altered { seq: event.seq });
        }
        if event.seq > last.seq + 1 {
            return Err(ChainBreak::Missing {
                from: last.seq + 1,
                to: event.seq - 1,
            });
        }
        if event.seq <= last.seq || event.prev_hash != last.hash {
            return Err(ChainBreak::Inserted {
                seq: event.seq,
                previous: last.seq,
            });
        }
        last = ChainHead {
            seq: event.seq,
            hash: event.hash,
        };
    }
    if last.seq < head.seq {
        return Err(ChainBreak::Truncated {
            from: last.seq + 1,
            to: head.seq,
        });
    }
    if last != *head {
        return Err(ChainBreak::HeadMismatch { seq: last.seq });
    }
    Ok(last)
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {} with hash {}", self.seq, self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> (Vec<AuditEvent>, ChainHead) {
        let mut events = Vec::new();
        let mut head = ChainHead::genesis();
        for seq in 1..=n {
            let event = seal(
                NewAuditEvent {
                    actor: "admin".into(),
                    action: "asset.update".into(),
                    object: format!("asset:web{seq}"),
                    before: Some(serde_json::json!({"b": 1, "a": [1, 2]})),
                    after: None,
                    request_id: Some(format!("req-{seq}")),
                },
                seq,
                jiff::Timestamp::from_second(1_700_000_000 + seq).unwrap(),
                &head.hash,
            );
            head = ChainHead {
                seq,
                hash: event.hash.clone(),
            };
            events.push(event);
        }
        (events, head)
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let (events, head) = chain(5);
        assert_eq!(events[1].before.as_deref(), Some(r#"{"a":[1,2],"b":1}"#));
        assert_eq!(verify(events, &head).unwrap(), head);
        assert_eq!(verify(Vec::new(), &ChainHead::genesis()).unwrap().seq, 0);
    }

    #[test]
    fn each_kind_of_tampering_is_named() {
        let (events, head) = chain(5);
        let mut altered = events.clone();
        altered[2].actor = "mallory".into();
        assert_eq!(verify(altered, &head), Err(ChainBreak::Altered { seq: 3 }));

        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(
            verify(deleted, &head),
            Err(ChainBreak::Missing { from: 2, to: 2 })
        );

        let mut truncated = events.clone();
        truncated.pop();
        assert_eq!(
            verify(truncated, &head),
            Err(ChainBreak::Truncated { from: 5, to: 5 })
        );

        // A forged event appended with a valid hash of its own but no head update.
        let mut appended = events.clone();
        let forged = seal(
            NewAuditEvent {
                actor: "mallory".into(),
                action: "user.create".into(),
                object: "user:mallory".into(),
                before: None,
                after: None,
                request_id: None,
            },
            6,
            jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            &head.hash,
        );
        appended.push(forged);
        assert_eq!(
            verify(appended, &head),
            Err(ChainBreak::HeadMismatch { seq: 6 })
        );

        // A re-sealed replacement in the middle breaks the next link.
        let mut replaced = events.clone();
        replaced[2] = seal(
            NewAuditEvent {
                actor: "mallory".into(),
                action: "asset.update".into(),
                object: "asset:web3".into(),
                before: None,
                after: None,
                request_id: None,
            },
            3,
            jiff::Timestamp::from_second(1_700_000_003).unwrap(),
            &events[1].hash,
        );
        assert_eq!(
            verify(replaced, &head),
            Err(ChainBreak::Inserted {
                seq: 4,
                previous: 3
            })
        );
    }
}
