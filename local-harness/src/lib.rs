//! txbridge local harness: plays one or more Kubernetes clusters' ServiceAccount token issuers
//! on loopback (discovery document, JWKS, TokenRequest API), plus an admin API that tests use to
//! rotate keys, inject faults, count fetches and craft bad tokens.
//!
//! The binary `txbridge-harness` wraps this library: `serve`, `token` and `config`.

pub mod client;
pub mod keys;
pub mod kubeproto;
pub mod server;
pub mod spec;
pub mod token;

pub use server::{ClusterInfo, FaultMode, Harness, ServeOptions};
pub use spec::{Alg, ClusterSpec};

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `--cluster` spec or other option is malformed.
    #[error("{0}")]
    Spec(String),
    /// Key generation, loading or signing failed.
    #[error("{0}")]
    Key(String),
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Talking to a running harness failed (client subcommands).
    #[error("{0}")]
    Http(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
