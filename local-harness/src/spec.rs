//! Simulated cluster specifications (`--cluster name=NAME[,alg=RS256|ES256][,mirror][,issuer=URL]`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Signing algorithm of a simulated cluster's ServiceAccount issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Alg {
    /// RSA 2048, PKCS#1 v1.5 with SHA-256 (kube-apiserver's usual choice).
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

impl Alg {
    /// The JOSE algorithm name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
        }
    }

    /// The same algorithm as a `jsonwebtoken` value.
    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Alg::RS256 => jsonwebtoken::Algorithm::RS256,
            Alg::ES256 => jsonwebtoken::Algorithm::ES256,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "RS256" => Ok(Alg::RS256),
            "ES256" => Ok(Alg::ES256),
            _ => Err(Error::Spec(format!(
                "unsupported alg {s:?} (RS256 or ES256)"
            ))),
        }
    }
}

/// One simulated cluster, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Cluster name; also the URL path segment (`/clusters/NAME`).
    pub name: String,
    /// Signing algorithm.
    pub alg: Alg,
    /// Serve the discovery documents under `/mirror/NAME`, away from the issuer string.
    pub mirror: bool,
    /// Explicit issuer string. Default: `BASE/clusters/NAME` (direct) or
    /// `https://NAME.cluster.invalid` (mirror).
    pub issuer: Option<String>,
}

impl ClusterSpec {
    /// A direct cluster (issuer = its own hosting URL).
    pub fn direct(name: &str, alg: Alg) -> Self {
        ClusterSpec {
            name: name.to_owned(),
            alg,
            mirror: false,
            issuer: None,
        }
    }

    /// A mirrored cluster (issuer string differs from the hosting URL).
    pub fn mirrored(name: &str, alg: Alg) -> Self {
        ClusterSpec {
            mirror: true,
            ..ClusterSpec::direct(name, alg)
        }
    }

    /// The clusters served when none is given: `alpha` (RS256, direct) and `beta` (ES256, mirror).
    pub fn defaults() -> Vec<ClusterSpec> {
        vec![
            ClusterSpec::direct("alpha", Alg::RS256),
            ClusterSpec::mirrored("beta", Alg::ES256),
        ]
    }
}

/// Cluster names become URL path segments and file names: keep them simple.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
}

impl FromStr for ClusterSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut name = None;
        let mut alg = Alg::RS256;
        let mut mirror = false;
        let mut issuer = None;
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = match part.split_once('=') {
                Some((k, v)) => (k.trim(), Some(v.trim())),
                None => (part, None),
            };
            match (key, value) {
                ("name", Some(v)) => name = Some(v.to_owned()),
                ("alg", Some(v)) => alg = v.parse()?,
                ("mirror", None) => mirror = true,
                ("mirror", Some(v)) => {
                    mirror = v.parse().map_err(|_| {
                        Error::Spec(format!("mirror takes no value or true/false, got {v:?}"))
                    })?
                }
                ("issuer", Some(v)) if !v.is_empty() => issuer = Some(v.to_owned()),
                _ => {
                    return Err(Error::Spec(format!(
                        "unknown or malformed item {part:?} in cluster spec {s:?} \
                         (expected name=NAME[,alg=RS256|ES256][,mirror][,issuer=URL])"
                    )));
                }
            }
        }
        let name = name.ok_or_else(|| Error::Spec(format!("cluster spec {s:?} has no name=")))?;
        if !valid_name(&name) {
            return Err(Error::Spec(format!(
                "cluster name {name:?} must be 1-63 characters of [A-Za-z0-9._-]"
            )));
        }
        Ok(ClusterSpec {
            name,
            alg,
            mirror,
            issuer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let cases = [
            ("name=a", ClusterSpec::direct("a", Alg::RS256)),
            (
                "name=b,alg=ES256,mirror",
                ClusterSpec::mirrored("b", Alg::ES256),
            ),
            (
                "name=c,mirror,issuer=https://oidc.example/id/X",
                ClusterSpec {
                    issuer: Some("https://oidc.example/id/X".into()),
                    ..ClusterSpec::mirrored("c", Alg::RS256)
                },
            ),
            ("alg=es256, name=d", ClusterSpec::direct("d", Alg::ES256)),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<ClusterSpec>().unwrap(), want, "{input}");
        }
    }

    #[test]
    fn rejects_bad_specs() {
        for input in [
            "",
            "alg=RS256",
            "name=a,alg=HS256",
            "name=a/b",
            "name=a,color=red",
        ] {
            assert!(input.parse::<ClusterSpec>().is_err(), "{input}");
        }
    }
}
