//! Service plumbing the project's servers share, so each binary's `main` only composes: the log
//! filter from `RUST_LOG`, the shutdown signal, the admin listener (`/metrics`, `/healthz`,
//! `/ready`) with its connection limits, and distributed tracing ([`otel`]: W3C trace context,
//! spans, OTLP export).

pub mod admin;
pub mod api;
pub mod otel;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The log filter: `RUST_LOG` as `level` or `target=level,...` (e.g.
/// `info,mcp_runtime_gateway=debug`); `info` when unset. A value that does not parse is reported
/// on stderr and `info` is used: a typo in a log setting should not keep a server down.
pub fn log_filter(rust_log: Option<&str>) -> Targets {
    let default = || Targets::new().with_default(tracing::Level::INFO);
    match rust_log.map(str::trim).filter(|s| !s.is_empty()) {
        None => default(),
        Some(text) => text.parse().unwrap_or_else(|e| {
            eprintln!("warning: ignoring RUST_LOG={text:?} ({e}); logging at info");
            default()
        }),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (see [`log_filter`]). Call once, first thing in `main`.
pub fn init_logging() {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish()
        .with(filter)
        .init();
}

/// Runs a service's `main` work on a multi-threaded runtime: success, or the error logged under
/// the service's `name` and exit status 1.
pub fn run_service<E: std::fmt::Display>(
    name: &str,
    work: impl std::future::Future<Output = Result<(), E>>,
) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "starting the runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{name} failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Completes on SIGTERM (what Kubernetes sends) or Ctrl-C. Where no SIGTERM handler can be
/// installed, on Ctrl-C alone.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGTERM handler; stopping on Ctrl-C only");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn rust_log_sets_levels_per_target_and_bad_values_fall_back_to_info() {
        let f = log_filter(Some("warn,mcp_runtime_gateway=debug"));
        assert!(f.would_enable("mcp_runtime_gateway::server", &Level::DEBUG));
        assert!(!f.would_enable("hyper", &Level::INFO));
        assert!(f.would_enable("hyper", &Level::WARN));
        for unset in [None, Some(""), Some("not a=level=at all")] {
            let f = log_filter(unset);
            assert!(f.would_enable("x", &Level::INFO), "{unset:?}");
            assert!(!f.would_enable("x", &Level::DEBUG), "{unset:?}");
        }
        assert!(log_filter(Some("trace")).would_enable("x", &Level::TRACE));
    }
}
