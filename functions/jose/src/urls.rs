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

/// A URL txbridge may fetch or be given: [`parse_url_ascii`], then [`check_url`] (https, or
/// http on loopback when `allow_http_loopback`). The error says why not.
pub fn parse_url(text: &str, allow_http_loopback: bool) -> Result<Url, UrlError> {
    let url = parse_url_ascii(text).map_err(UrlError::Invalid)?;
    check_url(&url, allow_http_loopback).map_err(UrlError::NotAllowed)?;
    Ok(url)
}

/// Why [`parse_url`] refused a URL: not a valid URL at all, or one txbridge may not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not a valid URL: {0}")]
    Invalid(&'static str),
    #[error("{0}")]
    NotAllowed(&'static str),
}

/// Parses a URL the way txbridge accepts them: printable ASCII, `scheme://authority...`, and a
/// host that is a plain DNS name (letters, digits, `.`, `-`, `_`) or IP literal with an optional
/// decimal port, matched case-insensitively (the authority is lowercased before parsing). Every
/// URL from config, a discovery document or a caller goes through here; the error says why not.
///
/// url's IDNA back end is the stub one (see Cargo.toml): no Unicode tables, so it can neither map
/// a Unicode host nor validate a Punycode (`xn--`) label, and its internal assertions trip on
/// what it cannot validate. So url must only ever see hosts IDNA passes through unchanged: no
/// non-ASCII, nothing percent-encoded, no `xn--` label.
pub fn parse_url_ascii(text: &str) -> Result<Url, &'static str> {
    // url drops tabs and newlines anywhere and trims control characters and spaces at the ends,
    // which would let it read an authority other than the one checked below.
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces");
    }
    // `scheme://authority...`, nothing looser ("https:host", backslashes): the authority must be
    // exactly what url will read as one.
    const SHAPE: &str = "must be scheme://host[:port][/path]";
    let (scheme, rest) = text.split_once(':').ok_or(SHAPE)?;
    let valid_scheme = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    let rest = rest
        .strip_prefix("//")
        .filter(|_| valid_scheme)
        .ok_or(SHAPE)?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // An empty authority ("https:///host") makes url skip the extra slashes and read the host from
    // what follows, unchecked and not lowercased; url also ends an https authority at a backslash.
    if authority.is_empty() || authority.contains('\\') {
        return Err(SHAPE);
    }
    if authority.contains('%') {
        return Err("authority must not be percent-encoded");
    }
    let authority = authority.to_ascii_lowercase();
    // url reads the host after the last '@' (userinfo is refused later, by `check_url`, with its
    // own message).
    let host_port = authority.rsplit_once('@').map_or(&*authority, |(_, hp)| hp);
    check_host_port(host_port)?;
    Url::parse(&format!("{scheme}://{authority}{tail}")).map_err(|_| SHAPE)
}

/// `host[:port]`: a DNS name or IPv4 address (letters, digits, `.`, `-`, `_`; no `xn--` label) or
/// a bracketed IPv6 literal, and an optional decimal port. `host_port` is lowercase.
fn check_host_port(host_port: &str) -> Result<(), &'static str> {
    const HOST: &str = "host must be a DNS name (letters, digits, '.', '-', '_') or IP literal";
    let port = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (ip, rest) = v6.split_once(']').ok_or(HOST)?;
            if ip.is_empty()
                || !ip
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b))
            {
                return Err(HOST);
            }
            rest
        }
        None => {
            let (host, rest) = host_port.split_at(host_port.find(':').unwrap_or(host_port.len()));
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
            {
                return Err(HOST);
            }
            if host.split('.').any(|label| label.starts_with("xn--")) {
                return Err("host must not be an internationalised (xn--) name");
            }
            rest
        }
    };
    match port.strip_prefix(':') {
        None if port.is_empty() => Ok(()),
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err("port must be decimal digits"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// URLs are ASCII with a plain (not percent-encoded) authority, matched case-insensitively.
    /// Found by fuzzing (target `jws`, a discovery document's jwks_uri): a percent-encoded host with
    /// uppercase letters reached the ASCII-only IDNA back end, whose debug assertion fired. Then
    /// behind an empty authority (`https:///H%C3%A9`), which url skips; then in a Punycode label
    /// whose decoded form the stub back end cannot validate (`xn--` hosts are refused since).
    #[test]
    fn urls_are_ascii_with_a_plain_authority() {
        let table: &[(&str, Option<&str>)] = &[
            (
                "https://oidc.example.com/x/y?q=1",
                Some("https://oidc.example.com/x/y?q=1"),
            ),
            (
                "https://OIDC.Example.COM/Keys/A",
                Some("https://oidc.example.com/Keys/A"),
            ),
            ("http://127.0.0.1:8080/A", Some("http://127.0.0.1:8080/A")),
            ("https://[::1]:8443/", Some("https://[::1]:8443/")),
            ("https://xn--bcher-kva.example/", None),
            ("https://a.XN--bcher-kva.example/", None),
            ("https://axn--b.example/", Some("https://axn--b.example/")),
            ("https://bücher.example/", None),
            ("https://%41%42.example/", None),
            (
                "https://WlDDD[DD@DD%DDD:DDD.e(ample.~test/penid/v02/jwks",
                None,
            ),
            ("https://a.example/%41", Some("https://a.example/%41")),
            ("no-scheme.example/x", None),
            ("https:DDD[DD@DD%DDD___ttps://WlDDD/jwks", None),
            ("https:host.example/x", None),
            (r"https:\\HOST.example/x", None),
            (r"https://HOST.example\X%41/y", None),
            ("1https://a.example/", None),
            ("https:///H%C3%A9/", None),
            ("https:///a.example/", None),
            ("https:////aH%C3%A9/", None),
            ("https://\t/H%C3%A9/", None),
            ("https://a\n/H%C3%A9/", None),
            (" https://a.example/", None),
            ("https://a.example/\u{7f}", None),
            ("https://a.example/a b", None),
            ("https://A.example?Q", Some("https://a.example/?Q")),
            ("https://a.example:8443/", Some("https://a.example:8443/")),
            ("https://a_b.example/", Some("https://a_b.example/")),
            ("https://user@a.example/", Some("https://user@a.example/")),
            ("https://a.example:84x3/", None),
            ("https://a.ex(ample/", None),
            ("https://a.example]:1/", None),
            ("https://[::1/", None),
            ("https://[]/", None),
            ("https://[::G]/", None),
            ("https://:443/", None),
            (r"https://a\b@HOST.example/", None),
            ("https://a%41@host.example/", None),
        ];
        for (text, want) in table {
            let got = parse_url_ascii(text).ok().map(|u| u.to_string());
            assert_eq!(got.as_deref(), *want, "{text}");
        }
    }
}
