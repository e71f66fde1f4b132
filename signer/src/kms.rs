//! AWS KMS signing key (`[signer] kind = "kms"`): an `ECC_NIST_P256` / `SIGN_VERIFY` key; and
//! the KMS-wrapped key (`kind = "kms-wrapped"`, [`unwrap_signing_key`]): one `Decrypt` per cold
//! start, then signing in memory.
//!
//! The public key is fetched once, at construction, with `GetPublicKey`; each signature is
//! exactly one `Sign` call (`ECDSA_SHA_256` over a locally computed SHA-256 digest). The DER
//! signature KMS returns is turned into a 64-byte JOSE `r || s` in low-S form and checked
//! against the public key before it is handed out.
//!
//! The configured key id may be a key id, key ARN, alias name or alias ARN. It is resolved to
//! the key's ARN at construction, and that ARN is what signs: pointing an alias at a new key
//! (rotation) takes effect at the next construction (cold start), so a running signer never
//! signs with a key other than the one whose JWK it publishes.

use std::fmt;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, ConfigLoader};
use aws_sdk_kms::Client;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use p256::ecdsa::VerifyingKey;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::DecodePublicKey as _;
use sha2::{Digest as _, Sha256};

use crate::{ES256, KeyError, PublicJwk, SignError, Signer, der_to_jose_low_s};

/// The encryption context that binds a KMS-wrapped signing key to txbridge
/// (`[signer] kind = "kms-wrapped"`): the key pair is generated with it, `Decrypt` must name it,
/// and the function's IAM policy allows `kms:Decrypt` only with it.
pub const WRAPPED_KEY_CONTEXT: (&str, &str) = ("txbridge", "signing-key");

/// Decrypts a KMS-wrapped P-256 private key (`[signer] kind = "kms-wrapped"`): the base64
/// `PrivateKeyCiphertextBlob` of `GenerateDataKeyPairWithoutPlaintext` (`ECC_NIST_P256`, under a
/// symmetric KMS key, encryption context [`WRAPPED_KEY_CONTEXT`]). One `Decrypt` call, with the
/// client built from the standard AWS environment and these timeouts; the private key then
/// lives in memory only (zeroized on drop) and signs like the local signer: no KMS call per token.
#[cfg(feature = "local")]
pub async fn unwrap_signing_key(
    wrapped_b64: &str,
    options: KmsSignerOptions,
) -> Result<crate::LocalSigner, KeyError> {
    unwrap_signing_key_from(
        aws_config::defaults(BehaviorVersion::latest()),
        wrapped_b64,
        options,
    )
    .await
}

/// [`unwrap_signing_key`] from a caller-prepared SDK config loader (explicit region, endpoint or
/// credentials); the options' timeouts and retries override the loader's.
#[cfg(feature = "local")]
pub async fn unwrap_signing_key_from(
    loader: ConfigLoader,
    wrapped_b64: &str,
    options: KmsSignerOptions,
) -> Result<crate::LocalSigner, KeyError> {
    let config = options.apply(loader).load().await;
    if config.region().is_none() {
        return Err(KeyError::Unsupported(
            "no AWS region configured (set AWS_REGION)".into(),
        ));
    }
    unwrap_signing_key_with(&Client::new(&config), wrapped_b64).await
}

/// [`unwrap_signing_key`] through an existing client (its timeouts and retries apply).
#[cfg(feature = "local")]
pub async fn unwrap_signing_key_with(
    client: &Client,
    wrapped_b64: &str,
) -> Result<crate::LocalSigner, KeyError> {
    use base64::Engine as _;
    let compact: String = wrapped_b64.split_whitespace().collect();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| KeyError::Unsupported("the wrapped key is not base64".into()))?;
    if blob.is_empty() {
        return Err(KeyError::Missing);
    }
    let (name, value) = WRAPPED_KEY_CONTEXT;
    let mut output = client
        .decrypt()
        .ciphertext_blob(Blob::new(blob))
        .encryption_context(name, value)
        .send()
        .await
        .map_err(|err| match classify("Decrypt", &err) {
            SignError::KeyUnusable { code } => {
                KeyError::Unsupported(format!("KMS refused Decrypt ({code})"))
            }
            SignError::Unavailable { code } => KeyError::Backend(code),
            SignError::Malformed => KeyError::Backend("malformed".into()),
        })?;
    let der = zeroize::Zeroizing::new(
        output
            .plaintext
            .take()
            .map(Blob::into_inner)
            .ok_or_else(|| KeyError::Backend("no plaintext".into()))?,
    );
    crate::LocalSigner::from_pkcs8_der(&der).map_err(|_| {
        KeyError::InvalidPrivateKey("the wrapped key is not a P-256 PKCS#8 private key")
    })
}

/// Timeouts and retries of the KMS client built by [`KmsSigner::from_env`].
///
/// Without explicit timeouts the SDK waits indefinitely on an endpoint that accepts a
/// connection and never answers, so every bound here is finite. The defaults keep a signing
/// request under about five seconds when KMS is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KmsSignerOptions {
    /// Time to establish the TCP/TLS connection.
    pub connect_timeout: Duration,
    /// Time for one attempt (request sent, response received).
    pub operation_attempt_timeout: Duration,
    /// Time for the whole operation, retries and backoff included.
    pub operation_timeout: Duration,
    /// Attempts per operation, the first one included (1 = no retry).
    pub max_attempts: u32,
}

impl Default for KmsSignerOptions {
    fn default() -> Self {
        KmsSignerOptions {
            connect_timeout: Duration::from_secs(1),
            operation_attempt_timeout: Duration::from_secs(2),
            operation_timeout: Duration::from_secs(5),
            max_attempts: 2,
        }
    }
}

impl KmsSignerOptions {
    /// Applies these timeouts and retries to an SDK config loader.
    fn apply(&self, loader: ConfigLoader) -> ConfigLoader {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.operation_attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build();
        let retries = RetryConfig::standard().with_max_attempts(self.max_attempts.max(1));
        loader.timeout_config(timeouts).retry_config(retries)
    }
}

/// Signs with an AWS KMS `ECC_NIST_P256` key; the private key never leaves KMS.
#[derive(Clone)]
pub struct KmsSigner {
    client: Client,
    /// The resolved key ARN (never an alias), used for every `Sign` call.
    key_arn: String,
    verifying_key: VerifyingKey,
    jwk: PublicJwk,
}

impl fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key ARN is deployment detail kept out of debug output; the kid identifies the key.
        f.debug_struct("KmsSigner")
            .field("kid", &self.jwk.kid())
            .finish_non_exhaustive()
    }
}

impl KmsSigner {
    /// Builds the KMS client from the standard AWS environment (region, credentials,
    /// `AWS_ENDPOINT_URL`, profile) with the given timeouts, then loads the key.
    ///
    /// Credentials are resolved by the default chain, environment first, so a Lambda (whose
    /// credentials are in the environment) never waits on instance metadata.
    pub async fn from_env(key_id: &str, options: KmsSignerOptions) -> Result<Self, KeyError> {
        Self::from_config_loader(
            aws_config::defaults(BehaviorVersion::latest()),
            key_id,
            options,
        )
        .await
    }

    /// Like [`KmsSigner::from_env`], from a caller-prepared SDK config loader (explicit region,
    /// endpoint or credentials); the options' timeouts and retries override the loader's.
    pub async fn from_config_loader(
        loader: ConfigLoader,
        key_id: &str,
        options: KmsSignerOptions,
    ) -> Result<Self, KeyError> {
        if key_id.trim().is_empty() {
            return Err(KeyError::Missing);
        }
        let config = options.apply(loader).load().await;
        if config.region().is_none() {
            return Err(KeyError::Unsupported(
                "no AWS region configured (set AWS_REGION)".into(),
            ));
        }
        Self::new(Client::new(&config), key_id).await
    }

    /// Loads the key through an existing client: one `GetPublicKey` call, which checks that the
    /// key is a P-256 signing key. The client's own timeouts and retries apply to every call.
    pub async fn new(client: Client, key_id: &str) -> Result<Self, KeyError> {
        let key_id = key_id.trim();
        if key_id.is_empty() {
            return Err(KeyError::Missing);
        }
        let loaded = fetch_public_key(&client, key_id).await?;
        Ok(KmsSigner {
            client,
            key_arn: loaded.key_arn,
            verifying_key: loaded.verifying_key,
            jwk: loaded.jwk,
        })
    }

    /// Fetches the public JWKs of other KMS keys (ids, ARNs or aliases), typically the previous
    /// keys still published during a rotation overlap. Each must be a P-256 signing key.
    pub async fn fetch_public_jwks(&self, key_ids: &[String]) -> Result<Vec<PublicJwk>, KeyError> {
        let mut jwks = Vec::with_capacity(key_ids.len());
        for key_id in key_ids {
            let key_id = key_id.trim();
            if key_id.is_empty() {
                return Err(KeyError::Missing);
            }
            jwks.push(fetch_public_key(&self.client, key_id).await?.jwk);
        }
        Ok(jwks)
    }
}

#[async_trait::async_trait]
impl Signer for KmsSigner {
    fn alg(&self) -> &'static str {
        ES256
    }

    fn key_id(&self) -> &str {
        self.jwk.kid()
    }

    fn public_jwk(&self) -> &PublicJwk {
        &self.jwk
    }

    async fn sign(&self, signing_input: &[u8]) -> Result<Vec<u8>, SignError> {
        let digest = Sha256::digest(signing_input);
        let output = self
            .client
            .sign()
            .key_id(&self.key_arn)
            .message(Blob::new(digest.to_vec()))
            .message_type(MessageType::Digest)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|err| classify("Sign", &err))?;
        let der = output.signature().ok_or(SignError::Malformed)?;
        let jose = der_to_jose_low_s(der.as_ref())?;
        // A signature that does not verify under the published key would make every token
        // unverifiable: refuse it here rather than hand it out.
        let sig = p256::ecdsa::Signature::from_slice(&jose).map_err(|_| SignError::Malformed)?;
        self.verifying_key
            .verify_prehash(&digest, &sig)
            .map_err(|_| SignError::Malformed)?;
        Ok(jose)
    }
}

struct LoadedKey {
    key_arn: String,
    verifying_key: VerifyingKey,
    jwk: PublicJwk,
}

/// One `GetPublicKey` call; checks spec, usage, algorithms and the SPKI's curve.
async fn fetch_public_key(client: &Client, key_id: &str) -> Result<LoadedKey, KeyError> {
    let output = client
        .get_public_key()
        .key_id(key_id)
        .send()
        .await
        .map_err(|err| match classify("GetPublicKey", &err) {
            SignError::KeyUnusable { code } => {
                KeyError::Unsupported(format!("KMS refused GetPublicKey ({code})"))
            }
            SignError::Unavailable { code } => KeyError::Backend(code),
            SignError::Malformed => KeyError::Backend("malformed".into()),
        })?;
    if let Some(spec) = output.key_spec()
        && *spec != KeySpec::EccNistP256
    {
        return Err(KeyError::Unsupported(format!(
            "KMS key spec is {}, expected ECC_NIST_P256",
            sanitize(spec.as_str())
        )));
    }
    if let Some(usage) = output.key_usage()
        && *usage != KeyUsageType::SignVerify
    {
        return Err(KeyError::Unsupported(format!(
            "KMS key usage is {}, expected SIGN_VERIFY",
            sanitize(usage.as_str())
        )));
    }
    let algorithms = output.signing_algorithms();
    if !algorithms.is_empty() && !algorithms.contains(&SigningAlgorithmSpec::EcdsaSha256) {
        return Err(KeyError::Unsupported(
            "KMS key does not allow ECDSA_SHA_256".into(),
        ));
    }
    let spki = output
        .public_key()
        .ok_or_else(|| KeyError::Unsupported("KMS returned no public key".into()))?;
    let public = p256::PublicKey::from_public_key_der(spki.as_ref())
        .map_err(|_| KeyError::Unsupported("KMS public key is not a P-256 key".into()))?;
    let point = public.to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(KeyError::InvalidPublicJwk(
            "P-256 point without affine coordinates",
        ));
    };
    let jwk = PublicJwk::from_p256_coordinates(x, y)?;
    Ok(LoadedKey {
        // GetPublicKey answers with the key's ARN even when asked by alias.
        key_arn: output.key_id().unwrap_or(key_id).to_owned(),
        verifying_key: VerifyingKey::from(&public),
        jwk,
    })
}

/// Maps an SDK error to a retryable or a configuration error. The code is the AWS error code
/// (or a short fixed word), never an ARN or a service message; details go to debug logs.
fn classify<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> SignError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    tracing::debug!(operation, error = %DisplayErrorContext(err), "KMS call failed");
    let unavailable = |code: &str| SignError::Unavailable { code: code.into() };
    match err {
        SdkError::TimeoutError(_) => unavailable("timeout"),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => unavailable("timeout"),
        SdkError::DispatchFailure(failure) if failure.is_io() => unavailable("connection"),
        SdkError::DispatchFailure(_) => unavailable("dispatch"),
        SdkError::ResponseError(_) => unavailable("response"),
        SdkError::ConstructionFailure(_) => SignError::KeyUnusable {
            code: "construction".into(),
        },
        SdkError::ServiceError(service) => {
            classify_code(service.err().code(), service.raw().status().as_u16())
        }
        _ => unavailable("unknown"),
    }
}

/// AWS error codes that mean "try again later"; everything else from KMS is a key or
/// permission problem that retrying does not fix, unless the status is 5xx or 429.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "KMSInternalException",
    "DependencyTimeoutException",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
];

fn classify_code(code: Option<&str>, status: u16) -> SignError {
    let code = match code {
        Some(code) => sanitize(code),
        None => format!("http-{status}"),
    };
    if TRANSIENT_CODES.contains(&code.as_str()) || status >= 500 || status == 429 {
        SignError::Unavailable { code }
    } else {
        // AccessDeniedException, DisabledException, KMSInvalidStateException,
        // NotFoundException, KeyUnavailableException, InvalidKeyUsageException, ...
        SignError::KeyUnusable { code }
    }
}

/// Keeps an error code to a short identifier, so nothing else can ride along in it.
fn sanitize(code: &str) -> String {
    let code: String = code
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        .take(64)
        .collect();
    if code.is_empty() {
        "unknown".into()
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_retryable_or_not() {
        let cases: &[(&str, Option<&str>, u16, bool)] = &[
            ("throttled", Some("ThrottlingException"), 400, true),
            ("kms internal", Some("KMSInternalException"), 500, true),
            (
                "dependency timeout",
                Some("DependencyTimeoutException"),
                503,
                true,
            ),
            ("unknown 5xx", Some("Whatever"), 502, true),
            ("no code 503", None, 503, true),
            ("429", None, 429, true),
            ("disabled", Some("DisabledException"), 400, false),
            (
                "invalid state",
                Some("KMSInvalidStateException"),
                400,
                false,
            ),
            ("not found", Some("NotFoundException"), 400, false),
            ("access denied", Some("AccessDeniedException"), 400, false),
            (
                "key unavailable",
                Some("KeyUnavailableException"),
                400,
                false,
            ),
            ("no code 403", None, 403, false),
        ];
        for (name, code, status, retryable) in cases {
            let got = classify_code(*code, *status);
            assert_eq!(
                matches!(got, SignError::Unavailable { .. }),
                *retryable,
                "{name}: {got:?}"
            );
        }
    }

    #[test]
    fn codes_never_carry_more_than_an_identifier() {
        let arn = "NotFoundException: Key 'arn:aws:kms:eu-west-1:123456789012:key/abc' not found";
        assert_eq!(sanitize(arn), "NotFoundException");
        assert_eq!(sanitize(""), "unknown");
        assert_eq!(sanitize(&"A".repeat(200)).len(), 64);
        let err = classify_code(Some(arn), 400);
        assert!(!err.to_string().contains("arn:"), "{err}");
    }
}
