//! Which key signs, chosen in one place for every shell: the config's `[signer]` section
//! ([`SignerConfig`]) and the local key (`TXBRIDGE_SIGNING_KEY`) give the published [`KeySet`].

use crate::PublicJwk;
#[cfg(feature = "local")]
use crate::{KeyError, KeySet, LocalSigner, Signer};
#[cfg(feature = "local")]
use std::sync::Arc;

/// Which key signs TxTokens (the config's `[signer] kind`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignerKind {
    /// The in-binary key from `TXBRIDGE_SIGNING_KEY`.
    Local,
    /// An AWS KMS key: one `Sign` per token.
    Kms {
        key_id: String,
        previous_key_ids: Vec<String>,
    },
    /// A P-256 key wrapped by AWS KMS (`PrivateKeyCiphertextBlob`, base64), decrypted once per
    /// cold start.
    KmsWrapped { wrapped_key: String },
}

impl SignerKind {
    /// The config's name of the kind.
    pub fn as_str(&self) -> &'static str {
        match self {
            SignerKind::Local => "local",
            SignerKind::Kms { .. } => "kms",
            SignerKind::KmsWrapped { .. } => "kms-wrapped",
        }
    }
}

/// The compiled `[signer]` section.
#[derive(Debug, Clone)]
pub struct SignerConfig {
    pub kind: SignerKind,
    /// Checked P-256 JWKs (kid filled in) to keep publishing.
    pub previous_public_keys: Vec<PublicJwk>,
}

/// The environment variable (Lambda) or secret (Worker) holding the local signing key.
pub const SIGNING_KEY_VAR: &str = "TXBRIDGE_SIGNING_KEY";

/// Why no key set could be built. One clear line; never key material.
#[cfg(feature = "local")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    #[error("{SIGNING_KEY_VAR} is not set")]
    MissingLocalKey,
    #[error("{SIGNING_KEY_VAR}: {0}")]
    LocalKey(KeyError),
    #[error("KMS signer: {0}")]
    Kms(KeyError),
    #[error("KMS-wrapped signing key: {0}")]
    KmsWrapped(KeyError),
    #[error(
        "[signer] kind = \"{0}\" is not built into this binary (feature `kms`): use kind = \"local\" and {SIGNING_KEY_VAR}"
    )]
    NotBuilt(&'static str),
    #[error(
        "[signer] kind = \"{0}\" is not supported by the Worker: use kind = \"local\" and the {SIGNING_KEY_VAR} secret"
    )]
    LocalOnly(&'static str),
    #[error("key set: {0}")]
    KeySet(KeyError),
}

#[cfg(feature = "local")]
impl SignerConfig {
    /// The key set this config names. `local_key` is what `TXBRIDGE_SIGNING_KEY` holds (PEM or
    /// private JWK; unused by a KMS signer); `wrap` turns the local key into the signer that
    /// signs with it (natively the key itself; the Worker: WebCrypto).
    pub async fn key_set(
        &self,
        local_key: Option<&str>,
        wrap: impl FnOnce(LocalSigner) -> Arc<dyn Signer>,
    ) -> Result<KeySet, SetupError> {
        let mut previous = self.previous_public_keys.clone();
        let signer: Arc<dyn Signer> = match &self.kind {
            SignerKind::Local => {
                let key = local_key
                    .filter(|k| !k.trim().is_empty())
                    .ok_or(SetupError::MissingLocalKey)?;
                wrap(LocalSigner::from_encoded(key).map_err(SetupError::LocalKey)?)
            }
            #[cfg(all(feature = "kms", not(target_arch = "wasm32")))]
            SignerKind::Kms {
                key_id,
                previous_key_ids,
            } => {
                let kms = crate::KmsSigner::from_env(key_id, crate::KmsSignerOptions::default())
                    .await
                    .map_err(SetupError::Kms)?;
                previous.extend(
                    kms.fetch_public_jwks(previous_key_ids)
                        .await
                        .map_err(SetupError::Kms)?,
                );
                Arc::new(kms)
            }
            #[cfg(all(feature = "kms", not(target_arch = "wasm32")))]
            SignerKind::KmsWrapped { wrapped_key } => Arc::new(
                crate::unwrap_signing_key(wrapped_key, crate::KmsSignerOptions::default())
                    .await
                    .map_err(SetupError::KmsWrapped)?,
            ),
            #[allow(unreachable_patterns)]
            other => return Err(SetupError::NotBuilt(other.as_str())),
        };
        KeySet::new(signer, std::mem::take(&mut previous)).map_err(SetupError::KeySet)
    }

    /// [`key_set`](Self::key_set) for a runtime that signs with the local key only (the Worker,
    /// which never links the AWS SDK): any other kind is refused, naming `kind = "local"`.
    pub async fn local_key_set(
        &self,
        local_key: Option<&str>,
        wrap: impl FnOnce(LocalSigner) -> Arc<dyn Signer>,
    ) -> Result<KeySet, SetupError> {
        if self.kind != SignerKind::Local {
            return Err(SetupError::LocalOnly(self.kind.as_str()));
        }
        self.key_set(local_key, wrap).await
    }
}
