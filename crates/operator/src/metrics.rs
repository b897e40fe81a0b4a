//! Prometheus metrics of the operator, served at `/metrics`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: &'static str,
    /// `ok`, or the error's reason (e.g. `ApplyFailed`).
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

/// Everything the operator measures, plus the readiness flags behind `/readyz`.
pub struct Metrics {
    pub registry: Registry,
    pub reconciliations: Family<ReconcileLabels, Counter>,
    pub duration: Family<ControllerLabels, Histogram>,
    pub status_writes: Family<ControllerLabels, Counter>,
    pub policy_writes: Counter,
    pub leader: Gauge,
    leading: AtomicBool,
    synced: AtomicBool,
    api_reachable: AtomicBool,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcp_operator");
        let reconciliations = Family::<ReconcileLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.001, 2.0, 16))) as fn() -> Histogram,
        );
        let status_writes = Family::<ControllerLabels, Counter>::default();
        let policy_writes = Counter::default();
        let leader = Gauge::default();
        registry.register(
            "reconciliations",
            "Reconciliations, by controller and result",
            reconciliations.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconciliation, by controller",
            duration.clone(),
        );
        registry.register(
            "status_writes",
            "Status updates written, by controller (unchanged statuses are not written)",
            status_writes.clone(),
        );
        registry.register(
            "policy_writes",
            "Policy ConfigMaps written because the policy revision changed",
            policy_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconciliations,
            duration,
            status_writes,
            policy_writes,
            leader,
            leading: AtomicBool::new(false),
            synced: AtomicBool::new(false),
            api_reachable: AtomicBool::new(false),
        }
    }

    pub fn observe(&self, controller: &'static str, result: &'static str, elapsed: Duration) {
        self.reconciliations
            .get_or_create(&ReconcileLabels { controller, result })
            .inc();
        self.duration
            .get_or_create(&ControllerLabels { controller })
            .observe(elapsed.as_secs_f64());
    }

    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
        self.leader.set(i64::from(leading));
        if !leading {
            self.synced.store(false, Ordering::Relaxed);
        }
    }

    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    pub fn set_api_reachable(&self) {
        self.api_reachable.store(true, Ordering::Relaxed);
    }

    /// `/readyz`: a leader once its caches are filled; a standby once it has reached the API.
    pub fn readiness(&self) -> Result<&'static str, &'static str> {
        let leading = self.leading.load(Ordering::Relaxed);
        if leading {
            if self.synced.load(Ordering::Relaxed) {
                Ok("leader, caches synced")
            } else {
                Err("leader, caches not synced yet")
            }
        } else if self.api_reachable.load(Ordering::Relaxed) {
            Ok("standby")
        } else {
            Err("the Kubernetes API has not been reached yet")
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
