//! URL rules for every URL txbridge fetches or is given: issuer, discovery and JWKS URLs from the
//! config, a discovery document's `jwks_uri`, a consumer's TxToken service URL.

use url::Url;

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// https always; http only on loopback with the insecure flag; no credentials or fragments.
pub fn check_url(url: &Url, allow_http_loopback: bool) -> Result<(), &'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials");
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment");
    }
    if url.host().is_none() {
        return Err("must have a host");
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http_loopback && is_loopback_host(url) => Ok(()),
        "http" if allow_http_loopback => {
            Err("may use http:// only on a loopback host (127.0.0.1, [::1], localhost)")
        }
        "http" => Err("must use https:// (http:// needs insecure_allow_http_loopback on loopback)"),
        _ => Err("must be an https:// URL"),
    }
}

/// Parses a URL the way txbridge accepts them: ASCII only, and an authority (host and port) that
/// is not percent-encoded, matched case-insensitively (it is lowercased before parsing). An
/// internationalised host is written in its xn-- form: url's IDNA back end is the ASCII-only one
/// (see Cargo.toml), which must only ever see lowercase ASCII. Every URL from config, a discovery
/// document or a caller goes through here.
pub fn parse_url_ascii(text: &str) -> Option<Url> {
    if !text.is_ascii() {
        return None;
    }
    // `scheme://authority...`, nothing looser ("https:host", backslashes): the authority must be
    // exactly what url will read as one.
    let (scheme, rest) = text.split_once(':')?;
    let valid_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let rest = rest.strip_prefix("//").filter(|_| valid_scheme)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains(['%', '\\']) {
        return None;
    }
    Url::parse(&format!(
        "{scheme}://{}{tail}",
        authority.to_ascii_lowercase()
    ))
    .ok()
}
