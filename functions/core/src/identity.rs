//! The verified identity behind a subject token: what the policy, the workload rules and the
//! minted TxToken speak of.

/// A verified Kubernetes ServiceAccount of a trusted cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
    /// The token's own `sub` (`system:serviceaccount:<ns>:<sa>`).
    pub k8s_sub: String,
    /// The token's `exp`.
    pub exp: u64,
    /// The subject as a workload, rendered from its cluster's `workload_id` template: `req_wl`
    /// when the request names no other.
    pub workload_id: String,
    /// The token's whole verified claim set, kept only when a policy condition reads
    /// `subject.claims`.
    pub claims: Option<serde_json::Value>,
}
