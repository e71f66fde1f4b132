use super::*;

const CLUSTER: &str = r#"
[[clusters]]
name = "prod-eu"
issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABCD"
audiences = ["txbridge"]
"#;

fn with(top: &str, rest: &str) -> String {
    format!("issuer = \"https://tts.example.com\"\n{top}\n{CLUSTER}\n{rest}")
}

#[test]
fn minimal_config_gets_defaults() {
    let c = Config::from_toml_str(&with("", "")).unwrap();
    assert_eq!(c.trust_domain(), "https://tts.example.com");
    assert_eq!(c.token_lifetime(), 300);
    assert_eq!(c.leeway(), 30);
    assert_eq!(c.max_subject_token_lifetime(), 86400);
    assert_eq!(c.signer().kind, SignerKind::Local);
    let cl = &c.clusters()[0];
    assert_eq!(
        cl.discovery_url.as_ref().unwrap().as_str(),
        "https://oidc.eks.eu-west-1.amazonaws.com/id/ABCD/.well-known/openid-configuration"
    );
    assert_eq!(cl.algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
    assert_eq!(c.key_cache(), KeyCacheConfig::default());
}

#[test]
fn kms_signer_and_mirror() {
    let c = Config::from_toml_str(
        r#"issuer = "https://tts.example.com"
trust_domain = "https://td.example.com"
token_lifetime = "10m"
[signer]
kind = "kms"
key_id = "alias/txbridge"
previous_key_ids = ["arn:aws:kms:eu-west-1:111122223333:key/abc"]
[[clusters]]
name = "self-managed"
issuer = "https://kubernetes.default.svc"
discovery_url = "https://mirror.example.com/sm/.well-known/openid-configuration"
audiences = ["txbridge"]
algorithms = ["ES256"]
[[policies]]
cluster = "self-managed"
namespace = "team-*"
service_account = "*"
scopes = ["a", "b", "a"]
tctx_constraints = { namespace = "${namespace}" }
"#,
    )
    .unwrap();
    assert_eq!(c.token_lifetime(), 600);
    assert_eq!(
        c.signer().kind,
        SignerKind::Kms {
            key_id: "alias/txbridge".into(),
            previous_key_ids: vec!["arn:aws:kms:eu-west-1:111122223333:key/abc".into()]
        }
    );
    assert_eq!(c.policies[0].scopes, vec!["a".to_string(), "b".to_string()]);
}

#[test]
fn rejections_name_the_key() {
    let table: Vec<(&str, String, &str)> = vec![
        (
            "unknown top key",
            with("colour = \"blue\"", ""),
            "unknown field",
        ),
        (
            "unknown cluster key",
            with("", "").replace("audiences", "audience = \"x\"\naudiences"),
            "unknown field",
        ),
        (
            "no clusters",
            "issuer = \"https://tts.example.com\"".into(),
            "at least one",
        ),
        (
            "http issuer",
            with("", "").replace("issuer = \"https://tts", "issuer = \"http://tts"),
            "issuer",
        ),
        (
            "http cluster issuer",
            with("", "").replace("https://oidc.eks", "http://oidc.eks"),
            "clusters[0].issuer",
        ),
        (
            "http non-loopback with flag",
            with("", "")
                .replace("https://oidc.eks", "http://oidc.eks")
                .replace(
                    "audiences",
                    "insecure_allow_http_loopback = true\naudiences",
                ),
            "loopback",
        ),
        (
            "not a url",
            with("", "").replace("https://oidc.eks.eu-west-1.amazonaws.com/id/ABCD", "oidc"),
            "not a valid URL",
        ),
        (
            "credentials in url",
            with("", "").replace("https://oidc", "https://u:p@oidc"),
            "credentials",
        ),
        (
            "empty audiences",
            with("", "").replace("[\"txbridge\"]", "[]"),
            "audiences",
        ),
        (
            "bad algorithm",
            with("", "").replace("audiences", "algorithms = [\"HS256\"]\naudiences"),
            "algorithms",
        ),
        (
            "alg none",
            with("", "").replace("audiences", "algorithms = [\"none\"]\naudiences"),
            "algorithms",
        ),
        (
            "lifetime too long",
            with("token_lifetime = \"2h\"", ""),
            "token_lifetime",
        ),
        (
            "lifetime zero",
            with("token_lifetime = \"0s\"", ""),
            "token_lifetime",
        ),
        (
            "lifetime garbage",
            with("token_lifetime = \"soon\"", ""),
            "token_lifetime",
        ),
        ("leeway too long", with("leeway = \"1h\"", ""), "leeway"),
        (
            "bad cluster name",
            with("", "").replace("prod-eu", "Prod EU"),
            "name",
        ),
        ("duplicate cluster", with("", CLUSTER), "not unique"),
        (
            "kms without key",
            with("[signer]\nkind = \"kms\"", ""),
            "key_id",
        ),
        (
            "local with key id",
            with("[signer]\nkind = \"local\"\nkey_id = \"x\"", ""),
            "kms",
        ),
        (
            "unknown signer",
            with("[signer]\nkind = \"vault\"", ""),
            "signer.kind",
        ),
        (
            "bad previous key",
            with(
                "[signer]\nkind = \"local\"\nprevious_public_keys = [{kty = \"EC\", crv = \"P-256\", x = \"AA\", y = \"AA\"}]",
                "",
            ),
            "previous_public_keys[0]",
        ),
        (
            "policy unknown cluster",
            with(
                "",
                "[[policies]]\ncluster = \"nope\"\nnamespace = \"a\"\nservice_account = \"b\"\nscopes = []",
            ),
            "policies[0].cluster",
        ),
        (
            "policy bad glob",
            with(
                "",
                "[[policies]]\ncluster = \"*\"\nnamespace = \"A/B\"\nservice_account = \"b\"\nscopes = []",
            ),
            "policies[0].namespace",
        ),
        (
            "policy bad scope",
            with(
                "",
                "[[policies]]\ncluster = \"*\"\nnamespace = \"a\"\nservice_account = \"b\"\nscopes = [\"a b\"]",
            ),
            "scopes",
        ),
        (
            "workload_id with an unknown placeholder",
            with("", "").replace("audiences", "workload_id = \"${pod}/x\"\naudiences"),
            "clusters[0].workload_id",
        ),
        (
            "workload_id with a comma",
            with("", "").replace("audiences", "workload_id = \"a,${namespace}\"\naudiences"),
            "clusters[0].workload_id",
        ),
        (
            "workload_id with a space",
            with("", "").replace("audiences", "workload_id = \"a ${namespace}\"\naudiences"),
            "clusters[0].workload_id",
        ),
        (
            "workload_id empty",
            with("", "").replace("audiences", "workload_id = \"\"\naudiences"),
            "clusters[0].workload_id",
        ),
        (
            "policy workloads with a comma",
            with(
                "",
                "[[policies]]\ncluster = \"*\"\nnamespace = \"a\"\nservice_account = \"b\"\nscopes = []\nworkloads = [\"a,b\"]",
            ),
            "policies[0].workloads",
        ),
        (
            "policy workloads empty entry",
            with(
                "",
                "[[policies]]\ncluster = \"*\"\nnamespace = \"a\"\nservice_account = \"b\"\nscopes = []\nworkloads = [\"\"]",
            ),
            "policies[0].workloads",
        ),
        (
            "previous key with an unknown member",
            with(
                "[signer]\nkind = \"local\"\nprevious_public_keys = [{kty = \"EC\", crv = \"P-256\", x = \"AA\", y = \"AA\", ext = true}]",
                "",
            ),
            "unknown field",
        ),
        (
            "previous key with a private member",
            with(
                "[signer]\nkind = \"local\"\nprevious_public_keys = [{kty = \"EC\", crv = \"P-256\", x = \"AA\", y = \"AA\", d = \"c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFs\"}]",
                "",
            ),
            "private key member (d)",
        ),
        (
            "kms-wrapped without a wrapped key",
            with("[signer]\nkind = \"kms-wrapped\"", ""),
            "signer.wrapped_key is required",
        ),
        (
            "kms-wrapped key not base64",
            with(
                "[signer]\nkind = \"kms-wrapped\"\nwrapped_key = \"not base64!\"",
                "",
            ),
            "signer.wrapped_key must be",
        ),
        (
            "kms-wrapped with a key id",
            with(
                "[signer]\nkind = \"kms-wrapped\"\nwrapped_key = \"AQID\"\nkey_id = \"alias/x\"",
                "",
            ),
            "kind = \"kms\" only",
        ),
        (
            "wrapped key on a local signer",
            with("[signer]\nkind = \"local\"\nwrapped_key = \"AQID\"", ""),
            "kms-wrapped\" only",
        ),
        (
            "policy unknown key",
            with(
                "",
                "[[policies]]\ncluster = \"*\"\nnamespace = \"a\"\nservice_account = \"b\"\nscopes = []\nallow_all = true",
            ),
            "unknown field",
        ),
    ];
    for (name, text, needle) in table {
        let err = Config::from_toml_str(&text).expect_err(name).to_string();
        assert!(
            err.contains(needle),
            "{name}: {err:?} should mention {needle:?}"
        );
    }
}

#[test]
fn workload_ids_and_globs() {
    let text = with(
        "",
        "[[policies]]\ncluster = \"*\"\nnamespace = \"*\"\nservice_account = \"*\"\nscopes = []\nworkloads = [\"spiffe://x/*\", \"web\"]",
    )
    .replace(
        "audiences",
        "workload_id = \"spiffe://example.test/ns/${namespace}/sa/${service_account}\"\naudiences",
    );
    let c = Config::from_toml_str(&text).unwrap();
    assert_eq!(
        c.clusters()[0]
            .workload_id
            .render("prod-eu", "payments", "checkout"),
        "spiffe://example.test/ns/payments/sa/checkout"
    );
    assert_eq!(c.policies[0].workloads.len(), 2);
    assert!(c.policies[0].workloads[0].matches("spiffe://x/anything"));
    // The default template.
    let c = Config::from_toml_str(&with("", "")).unwrap();
    assert_eq!(
        c.clusters()[0]
            .workload_id
            .render("prod-eu", "payments", "checkout"),
        "prod-eu:payments:checkout"
    );
}

/// No error message carries what the config holds in a place it should not: the parser's
/// message and line only, never the offending line itself.
#[test]
fn errors_never_echo_a_private_key() {
    let secret = "c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFs";
    for member in ["d", "p", "q", "dp", "k"] {
        let text = with(
            &format!(
                "[signer]\nkind = \"local\"\nprevious_public_keys = [{{kty = \"EC\", crv = \"P-256\", x = \"AA\", y = \"AA\", {member} = \"{secret}\"}}]"
            ),
            "",
        );
        let err = Config::from_toml_str(&text).unwrap_err().to_string();
        assert!(!err.contains(secret), "{member}: {err}");
        assert!(
            err.contains("previous_public_keys") || err.contains("line"),
            "{member}: {err}"
        );
    }
    let err = Config::from_toml_str(&format!("issuer = \"{secret}\"\n[[clusters]\n"))
        .unwrap_err()
        .to_string();
    assert!(!err.contains(secret), "{err}");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn kms_wrapped_signer() {
    let c = Config::from_toml_str(&with(
        "[signer]\nkind = \"kms-wrapped\"\nwrapped_key = \"\"\"\nAQIDBAUG\nBwgJ\n\"\"\"",
        "",
    ))
    .unwrap();
    assert_eq!(
        c.signer().kind,
        SignerKind::KmsWrapped {
            wrapped_key: "AQIDBAUGBwgJ".into()
        }
    );
}

/// Hosts are plain ASCII names: url's IDNA back end has no Unicode tables, so an internationalised
/// name is refused in either form, and the error says so.
#[test]
fn internationalised_hosts_are_refused() {
    let text = with("", "").replace("oidc.eks.eu-west-1.amazonaws.com", "bücher.example");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("printable ASCII"), "{err}");
    let text = with("", "").replace("oidc.eks.eu-west-1.amazonaws.com", "xn--bcher-kva.example");
    let err = Config::from_toml_str(&text).unwrap_err().to_string();
    assert!(err.contains("internationalised (xn--)"), "{err}");
    let text = with("", "").replace("oidc.eks.eu-west-1.amazonaws.com", "oidc_1.example");
    assert!(Config::from_toml_str(&text).is_ok());
}

#[test]
fn loopback_http_needs_the_flag() {
    let text = with("", "").replace(
        "https://oidc.eks.eu-west-1.amazonaws.com/id/ABCD",
        "http://127.0.0.1:8080/clusters/a",
    );
    assert!(Config::from_toml_str(&text).is_err());
    let text = text.replace(
        "audiences",
        "insecure_allow_http_loopback = true\naudiences",
    );
    assert!(Config::from_toml_str(&text).is_ok());
}

#[test]
fn example_config_parses() {
    let text = include_str!("../../config.example.toml");
    Config::from_toml_str(text).unwrap();
}

/// The committed JSON Schema is generated from the raw config types; regenerate with
/// `TXBRIDGE_UPDATE_SCHEMA=1 cargo test -p txbridge-core --features schema schema`.
#[cfg(feature = "schema")]
#[test]
fn json_schema_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.schema.json");
    let schema = schemars::schema_for!(RawConfig);
    let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("TXBRIDGE_UPDATE_SCHEMA").is_some() {
        std::fs::write(path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == text,
        "config.schema.json is stale: rerun with TXBRIDGE_UPDATE_SCHEMA=1"
    );
}

const SPIFFE: &str = "spiffe://example.test/ns/${namespace}/sa/${service_account}";

fn two_clusters(template_a: &str, template_b: &str, top: &str) -> String {
    format!(
        r#"issuer = "https://tts.example.com"
{top}

[[clusters]]
name = "dev"
issuer = "https://oidc.example.com/dev"
audiences = ["txbridge"]
workload_id = "{template_a}"

[[clusters]]
name = "prod"
issuer = "https://oidc.example.com/prod"
audiences = ["txbridge"]
workload_id = "{template_b}"
"#
    )
}

/// Contract v3: identical templates without `${cluster}` are a config error naming both
/// clusters and `shared_workload_ids`, unless `shared_workload_ids = true` says it is meant.
#[test]
fn colliding_workload_id_templates() {
    let err = Config::from_toml_str(&two_clusters(SPIFFE, SPIFFE, "")).unwrap_err();
    let text = err.to_string();
    for needle in [
        "clusters[1].workload_id",
        "clusters[0]",
        "\"dev\"",
        "\"prod\"",
        "shared_workload_ids",
        "line 14",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    assert_eq!(err.problems().len(), 1);
    Config::from_toml_str(&two_clusters(SPIFFE, SPIFFE, "shared_workload_ids = true")).unwrap();
    // With ${cluster}, or different templates, there is nothing to collide.
    let with_cluster = "spiffe://example.test/c/${cluster}/ns/${namespace}/sa/${service_account}";
    Config::from_toml_str(&two_clusters(with_cluster, with_cluster, "")).unwrap();
    Config::from_toml_str(&two_clusters(
        SPIFFE,
        &SPIFFE.replace("example.test", "prod.test"),
        "",
    ))
    .unwrap();
    let default = "${cluster}:${namespace}:${service_account}";
    Config::from_toml_str(&two_clusters(default, default, "")).unwrap();
    // `false` is the default.
    assert!(
        Config::from_toml_str(&two_clusters(SPIFFE, SPIFFE, "shared_workload_ids = false"))
            .is_err()
    );
}

/// Contract v3: a config error names the key path and line, never the value, whatever the
/// field: a JWK pasted as a string where a table belongs, a PEM where a URL belongs, a secret
/// as an unknown key's value, a secret in a field of the wrong type.
#[test]
fn errors_name_path_and_line_never_the_value() {
    let secret = "c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFsLWQtdmFsdWU";
    let jwk_string = format!(
        r#"{{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\",\"d\":\"{secret}\"}}"#
    );
    let cases: Vec<(&str, String, &str, usize)> = vec![
        (
            "a JWK pasted as a string",
            with(
                &format!("[signer]\nkind = \"local\"\nprevious_public_keys = [\"{jwk_string}\"]"),
                "",
            ),
            "signer.previous_public_keys",
            4,
        ),
        (
            "a key where a URL belongs",
            with("", "").replace(
                "https://oidc.eks.eu-west-1.amazonaws.com/id/ABCD",
                &format!("-----BEGIN PRIVATE KEY-----{secret}"),
            ),
            "clusters[0].issuer",
            6,
        ),
        (
            "a key in an unknown field",
            with(&format!("signing_key = \"{secret}\""), ""),
            "signing_key",
            2,
        ),
        (
            "a key where a number-like string belongs",
            with(&format!("token_lifetime = \"{secret}\""), ""),
            "token_lifetime",
            2,
        ),
        (
            "a key where a list belongs",
            with("", "").replace("[\"txbridge\"]", &format!("\"{secret}\"")),
            "clusters[0].audiences",
            7,
        ),
        (
            "a key where a bool belongs",
            with(&format!("shared_workload_ids = \"{secret}\""), ""),
            "shared_workload_ids",
            2,
        ),
        (
            "a key as a signer kind",
            with(&format!("[signer]\nkind = \"{secret}\""), ""),
            "signer.kind",
            3,
        ),
    ];
    for (name, text, path, line) in cases {
        let err = Config::from_toml_str(&text).expect_err(name);
        let shown = err.to_string();
        assert!(!shown.contains(secret), "{name}: {shown}");
        assert!(!shown.contains("c2VjcmV0"), "{name}: {shown}");
        assert!(shown.contains(path), "{name}: no {path} in {shown}");
        assert!(
            shown.contains(&format!("line {line}")),
            "{name}: no line {line} in {shown}"
        );
    }
}

/// Every problem is reported, each with its path and line (what `txbridge policy check` prints).
#[test]
fn every_problem_is_reported() {
    let text = r#"issuer = "https://tts.example.com"
token_lifetime = "2h"

[[clusters]]
name = "Prod"
issuer = "https://oidc.example.com/prod"
audiences = []

[[policies]]
cluster = "nowhere"
namespace = "a"
service_account = "b"
scopes = ["ok", "bad scope"]
workloads = ["has,comma"]
"#;
    let err = Config::from_toml_str(text).unwrap_err();
    let got: Vec<(String, Option<usize>)> = err
        .problems()
        .iter()
        .map(|p| (p.path.clone(), p.line))
        .collect();
    let want = vec![
        ("token_lifetime".to_owned(), Some(2)),
        ("clusters[0].name".to_owned(), Some(5)),
        ("clusters[0].audiences".to_owned(), Some(7)),
        ("policies[0].cluster".to_owned(), Some(10)),
        ("policies[0].scopes".to_owned(), Some(13)),
        ("policies[0].workloads".to_owned(), Some(14)),
    ];
    assert_eq!(got, want, "{err}");
}

#[test]
fn policy_ids() {
    let policy = |id: &str| {
        format!(
            "[[policies]]\n{id}cluster = \"*\"\nnamespace = \"a\"\nservice_account = \"b\"\nscopes = []\n"
        )
    };
    let c = Config::from_toml_str(&with(
        "",
        &format!("{}{}", policy("id = \"checkout-orders\"\n"), policy("")),
    ))
    .unwrap();
    assert_eq!(c.policies[0].id, "checkout-orders");
    assert_eq!(c.policies[1].id, "policies[1]");
    let err = Config::from_toml_str(&with(
        "",
        &format!("{}{}", policy("id = \"x\"\n"), policy("id = \"x\"\n")),
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("policies[1].id is not unique"),
        "{err}"
    );
    let err = Config::from_toml_str(&with("", &policy("id = \"has space\"\n"))).unwrap_err();
    assert!(err.to_string().contains("policies[0].id must be"), "{err}");
}
