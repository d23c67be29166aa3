//! Accepting and serving HTTP connections within limits: how many at once, how many from one
//! client address, and how long a client may take to send its request headers.
//!
//! Without these, a client that opens connections and sends half a request holds a file
//! descriptor each until the process runs out, and then nobody can log in (found by a probe:
//! 1,100 such connections starved `/healthz` and login). This module owns the accept loop and
//! nothing else: what a request may do is decided behind the router.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::settings::ConnectionLimits;

/// File descriptors kept free for the database, feeds and logs beside the connections.
const RESERVED_DESCRIPTORS: u64 = 128;

/// How long in-flight requests may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// Raises the soft limit on open files to the hard limit (the usual soft limit, 1024, is far
/// below what a server needs) and returns the connection limit that fits under it.
pub fn fit_descriptor_limit(limits: ConnectionLimits) -> ConnectionLimits {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let soft = match current.maximum {
        Some(hard) if current.current.is_some_and(|soft| soft < hard) => {
            let raised = Rlimit {
                current: Some(hard),
                maximum: Some(hard),
            };
            match setrlimit(Resource::Nofile, raised) {
                Ok(()) => Some(hard),
                Err(e) => {
                    tracing::warn!(error = %e, "could not raise the open-file limit");
                    current.current
                }
            }
        }
        Some(_) => current.current,
        None => current.current,
    };
    let Some(soft) = soft else {
        return limits;
    };
    let fits = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS)).unwrap_or(usize::MAX);
    if fits < limits.max_total {
        tracing::warn!(
            open_file_limit = soft,
            configured = limits.max_total,
            serving = fits,
            "max_connections lowered to fit the open-file limit (raise LimitNOFILE)"
        );
        ConnectionLimits {
            max_total: fits.max(1),
            ..limits
        }
    } else {
        limits
    }
}

/// Open connections per client address; a [`ClientSlot`] gives its place back when dropped.
#[derive(Clone, Default)]
struct PerClient(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct ClientSlot {
    table: PerClient,
    ip: IpAddr,
}

impl PerClient {
    fn take(&self, ip: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut table = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = table.entry(ip).or_insert(0);
        if max > 0 && *open >= max {
            return None;
        }
        *open += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut table = self
            .table
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(open) = table.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests finish
/// (at most [`SHUTDOWN_GRACE`]).
///
/// HTTP/1.1 only: a connection must send its request headers within the header timeout, and an
/// idle kept-alive connection must start its next request within it too, else it is closed.
/// A connection beyond the total or per-address limit is closed at once, so it costs nothing
/// and the client learns immediately (the limits are counted in `sluice_connections_refused_total`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let total = Arc::new(Semaphore::new(limits.max_total));
    let per_client = PerClient::default();
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a moment
                    // rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = total.clone().try_acquire_owned() else {
            metrics::counter!("sluice_connections_refused_total", "limit" => "total").increment(1);
            drop(stream);
            continue;
        };
        let Some(slot) = per_client.take(peer.ip(), limits.max_per_client) else {
            metrics::counter!("sluice_connections_refused_total", "limit" => "per_client")
                .increment(1);
            drop(stream);
            continue;
        };
        // Small answers go out at once rather than waiting for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let service = app.clone().map_request(
            move |mut request: axum::extract::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        );
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        metrics::gauge!("sluice_connections_open").increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            metrics::gauge!("sluice_connections_open").decrement(1.0);
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("requests still running after the shutdown grace period were cut");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_gives_it_back() {
        let table = PerClient::default();
        let ip: IpAddr = [127, 0, 0, 2].into();
        let other: IpAddr = [127, 0, 0, 3].into();
        let first = table.take(ip, 2);
        let second = table.take(ip, 2);
        assert!(first.is_some() && second.is_some());
        assert!(table.take(ip, 2).is_none(), "a third connection is refused");
        assert!(table.take(other, 2).is_some(), "another address is not");
        drop(first);
        assert!(
            table.take(ip, 2).is_some(),
            "a closed connection frees its place"
        );
        assert!(table.take(ip, 0).is_some(), "0 means no per-address limit");
    }
}
