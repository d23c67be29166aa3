//! What an agent signs to prove it holds its enrolled key.
//!
//! The agent asks the server for a challenge (a random nonce, good once and for a short time),
//! signs [`challenge_message`] with its Ed25519 key, and gets a short-lived access token for the
//! signature. Both sides build the message here so they cannot drift apart. The message names the
//! protocol version and the agent, so a signature is useless for another agent or purpose.

/// Longest life of an agent access token: 15 minutes.
pub const MAX_AGENT_TOKEN_SECONDS: i64 = 15 * 60;

/// How long a challenge may be answered: 2 minutes.
pub const CHALLENGE_SECONDS: i64 = 120;

/// The bytes an agent signs for `nonce`.
pub fn challenge_message(agent_id: &str, nonce: &str) -> Vec<u8> {
    format!("sluice-agent-token-v1\n{agent_id}\n{nonce}\n").into_bytes()
}

/// Lower-case hex of bytes (keys, signatures and nonces travel as hex).
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex of exactly `N` bytes; `None` for anything else.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        let digit = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_bad_lengths_and_digits() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(to_hex(&bytes), "0001abff");
        assert_eq!(from_hex::<4>("0001abff"), Some(bytes));
        assert_eq!(from_hex::<4>("0001ABFF"), Some(bytes));
        assert_eq!(from_hex::<4>("0001abf"), None);
        assert_eq!(from_hex::<4>("0001abfg"), None);
        assert_eq!(from_hex::<3>("0001abff"), None);
    }

    #[test]
    fn the_message_binds_agent_and_nonce() {
        assert_ne!(challenge_message("a", "n1"), challenge_message("b", "n1"));
        assert_ne!(challenge_message("a", "n1"), challenge_message("a", "n2"));
        // No ambiguity from concatenation: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(challenge_message("ab", "c"), challenge_message("a", "bc"));
    }
}
