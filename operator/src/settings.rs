//! Operator-wide settings that are not part of any DfrCountry: images, cluster facts.

/// What the builders need to know about the cluster and the operator's installation.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Image repository of the DFR API; the tag is the DfrCountry's appVersion.
    pub api_image_repository: String,
    /// Image of PostgreSQL with Patroni, pgBackRest and pgAudit; `{version}` is replaced by the
    /// PostgreSQL major version.
    pub postgres_image: String,
    pub image_pull_policy: String,
    /// Where the Kubernetes API server can be reached from pods (Patroni uses it as its DCS).
    /// NetworkPolicies are evaluated after the Service's DNAT, so these are endpoint addresses.
    pub kubernetes_api_cidrs: Vec<String>,
    pub kubernetes_api_ports: Vec<i32>,
    pub cluster_domain: String,
    /// The name of the custom metric carrying each API pod's p95 request latency, in ms.
    pub latency_metric_name: String,
    /// The operator's own namespace: its failover guard probes each member's Patroni REST API
    /// from there, which the tenant's NetworkPolicies let in.
    pub operator_namespace: String,
    /// How long a changed certificate Secret takes to reach every pod that mounts it: the
    /// kubelet refreshes Secret volumes on its sync period (a minute by default) plus its
    /// cache's staleness. A renewal of the tenant CA waits this long after publishing the new
    /// CA before anything it signs is served, and again before the previous CA stops being
    /// trusted; a member is asked to reload a renewed certificate no sooner than this after it
    /// was issued.
    pub certificate_propagation_delay: std::time::Duration,
}

/// Two kubelet sync periods: the default (1m) plus as much again for the Secret cache.
pub const DEFAULT_CERTIFICATE_PROPAGATION_DELAY: std::time::Duration =
    std::time::Duration::from_secs(120);

impl Default for Settings {
    fn default() -> Self {
        Self {
            api_image_repository: "dfr-api".into(),
            postgres_image: "dfr-postgres:{version}".into(),
            image_pull_policy: "IfNotPresent".into(),
            kubernetes_api_cidrs: Vec::new(),
            kubernetes_api_ports: vec![443, 6443],
            cluster_domain: "cluster.local".into(),
            latency_metric_name: "dfr_http_request_duration_p95_milliseconds".into(),
            operator_namespace: "dfr-system".into(),
            certificate_propagation_delay: DEFAULT_CERTIFICATE_PROPAGATION_DELAY,
        }
    }
}

impl Settings {
    pub fn postgres_image_for(&self, major_version: i32) -> String {
        self.postgres_image
            .replace("{version}", &major_version.to_string())
    }
}
