//! Measurements before and after a change: load averages, memory, and the latency of the
//! job's HTTP and TCP probes, kept in the report so regressions can be judged later.
//!
//! Always of the machine the agent runs on (a private root shares the host's kernel). A value
//! that cannot be read is left out, never guessed; measuring never fails a job.

use std::fs;
use std::time::Duration;

use jiff::Timestamp;
use sluice_core::job::{Check, Measurements, ProbeLatency};

use crate::checks;

/// Takes the measurements, probing each HTTP and TCP check once.
pub fn take(checks: &[Check], at: Timestamp) -> Measurements {
    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| parse_loadavg(&t));
    let (mem_total_bytes, mem_available_bytes) = fs::read_to_string("/proc/meminfo")
        .ok()
        .map(|t| parse_meminfo(&t))
        .unwrap_or((None, None));
    let probes = checks
        .iter()
        .filter_map(|check| {
            let timeout = Duration::from_secs(u64::from(check.timeout_secs()));
            let started = std::time::Instant::now();
            let ok = match check {
                Check::Http { url, .. } => checks::http_get(url, timeout).is_ok(),
                Check::Tcp { addr, .. } => checks::tcp_connect(addr, timeout).is_ok(),
                Check::SystemdActive { .. } | Check::Command { .. } => return None,
            };
            Some(ProbeLatency {
                probe: check.to_string(),
                millis: ok.then(|| started.elapsed().as_secs_f64() * 1000.0),
            })
        })
        .collect();
    Measurements {
        taken_at: at,
        load,
        mem_total_bytes,
        mem_available_bytes,
        probes,
    }
}

/// The three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace().map(str::parse::<f64>);
    Some([
        words.next()?.ok()?,
        words.next()?.ok()?,
        words.next()?.ok()?,
    ])
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        })
    };
    (field("MemTotal"), field("MemAvailable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/389 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let meminfo =
            "MemTotal:       16318508 kB\nMemFree:         1234 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            (Some(16_318_508 * 1024), Some(8_000_000 * 1024))
        );
        let measured = take(&[], Timestamp::UNIX_EPOCH);
        assert!(measured.load.is_some());
        assert!(measured.mem_total_bytes.is_some());
    }
}
