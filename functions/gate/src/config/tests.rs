#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const MIN: &str = "issuer = \"https://tts.example.com\"\n";

fn problems(text: &str) -> Vec<ConfigProblem> {
    Config::from_toml_str(text)
        .expect_err("should be refused")
        .problems()
        .to_vec()
}

#[test]
fn minimal_config_takes_the_defaults() {
    let c = Config::from_toml_str(MIN).unwrap();
    assert_eq!(c.issuer, "https://tts.example.com");
    assert_eq!(c.audience, "https://tts.example.com");
    assert_eq!(c.leeway, 30);
    assert_eq!(c.token_header.as_str(), "txn-token");
    assert_eq!(c.default, Default::Deny);
    assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
    assert!(c.jwks_url.is_none() && c.routes.is_empty());
}

#[test]
fn example_config_parses() {
    let text = include_str!("../../gate.example.toml");
    let c = Config::from_toml_str(text).unwrap();
    assert_eq!(c.routes.len(), 3);
    assert_eq!(c.routes[0].id, "orders-read");
    assert_eq!(
        c.routes[1].tctx,
        vec![("namespace".to_owned(), "checkout".into())]
    );
}

/// The committed JSON Schema is generated from the raw config types; regenerate with
/// `TXBRIDGE_UPDATE_SCHEMA=1 cargo test -p txbridge-gate schema`.
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

/// Every key of the example (and of the contract's commented-out keys) is a property of the
/// committed schema, at the same place, and the schema has no key the example does not show.
#[test]
fn example_keys_are_the_schema_keys() {
    let schema: Value = serde_json::from_str(include_str!("../../config.schema.json")).unwrap();
    let top: Vec<&str> = schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let route_ref = schema["properties"]["routes"]["items"]["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .unwrap();
    let route_keys: Vec<&str> = defs[route_ref]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    // The example with its commented-out keys switched on.
    let text = include_str!("../../gate.example.toml")
        .replace("# jwks_url", "jwks_url")
        .replace(
            "# insecure_allow_http_loopback",
            "insecure_allow_http_loopback",
        );
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut seen_top: Vec<&str> = doc.keys().map(String::as_str).collect();
    let mut seen_route: Vec<&str> = doc["routes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_table().unwrap().keys().map(String::as_str))
        .collect();
    for k in &seen_top {
        assert!(top.contains(k), "{k} is not in the schema");
    }
    for k in &seen_route {
        assert!(route_keys.contains(k), "routes[].{k} is not in the schema");
    }
    seen_top.sort_unstable();
    seen_top.dedup();
    seen_route.sort_unstable();
    seen_route.dedup();
    let mut top = top;
    top.sort_unstable();
    let mut route_keys = route_keys;
    route_keys.sort_unstable();
    assert_eq!(seen_top, top, "the example shows every top-level key");
    assert_eq!(seen_route, route_keys, "the example shows every route key");
    assert_eq!(schema["additionalProperties"], Value::Bool(false));
    // The example with its commented keys on is a valid config too.
    Config::from_toml_str(&text).unwrap();
}

#[test]
fn errors_name_the_key_and_line_never_the_value() {
    let secret = "s3cr3t-VALUE-never-shown";
    let cases: &[(&str, String, &str, usize)] = &[
        (
            "http issuer",
            format!("issuer = \"http://{secret}.example\"\n"),
            "issuer",
            1,
        ),
        (
            "http on loopback without the flag",
            "issuer = \"http://127.0.0.1:9/x\"\n".to_owned(),
            "issuer",
            1,
        ),
        (
            "jwks_url not https",
            format!("{MIN}jwks_url = \"ftp://{secret}\"\n"),
            "jwks_url",
            2,
        ),
        (
            "leeway",
            format!("{MIN}leeway = \"{secret}\"\n"),
            "leeway",
            2,
        ),
        (
            "leeway too long",
            format!("{MIN}leeway = \"1h\"\n"),
            "leeway",
            2,
        ),
        (
            "default",
            format!("{MIN}default = \"{secret}\"\n"),
            "default",
            2,
        ),
        (
            "token_header",
            format!("{MIN}token_header = \"bad header {secret}\"\n"),
            "token_header",
            2,
        ),
        (
            "listen",
            format!("{MIN}listen = \"{secret}\"\n"),
            "listen",
            2,
        ),
        (
            "unknown key",
            format!("{MIN}\nbogus_key = \"{secret}\"\n"),
            "bogus_key",
            3,
        ),
        (
            "wrong type",
            format!("{MIN}leeway = [\"{secret}\"]\n"),
            "leeway",
            2,
        ),
        (
            "route path",
            format!("{MIN}\n[[routes]]\npath = \"{secret}\"\n"),
            "routes[0].path",
            4,
        ),
        (
            "route ** inside a segment",
            format!("{MIN}\n[[routes]]\npath = \"/a/x**\"\n"),
            "routes[0].path",
            4,
        ),
        (
            "route method",
            format!("{MIN}\n[[routes]]\npath = \"/a\"\nmethods = [\"GET\", \"{secret} x\"]\n"),
            "routes[0].methods[1]",
            5,
        ),
        (
            "route scope",
            format!("{MIN}\n[[routes]]\npath = \"/a\"\nscopes = [\"a b {secret}\"]\n"),
            "routes[0].scopes[0]",
            5,
        ),
        (
            "route workload",
            format!("{MIN}\n[[routes]]\npath = \"/a\"\nworkloads = [\"a,{secret}\"]\n"),
            "routes[0].workloads[0]",
            5,
        ),
        (
            "duplicate route id",
            format!(
                "{MIN}\n[[routes]]\nid = \"r\"\npath = \"/a\"\n\n[[routes]]\nid = \"r\"\npath = \"/b\"\n"
            ),
            "routes[1].id",
            8,
        ),
        (
            "route without a path",
            format!("{MIN}\n[[routes]]\nid = \"r\"\n"),
            "routes[0]",
            3,
        ),
        ("not TOML", format!("{MIN}issuer = = \"{secret}\"\n"), "", 2),
    ];
    for (name, text, path, line) in cases {
        let ps = problems(text);
        let text_of = Config::from_toml_str(text).unwrap_err().to_string();
        assert!(!text_of.contains(secret), "{name}: value echoed: {text_of}");
        assert!(
            !text_of.contains("s3cr3t"),
            "{name}: value echoed: {text_of}"
        );
        let p = ps
            .iter()
            .find(|p| p.path.starts_with(path))
            .unwrap_or_else(|| panic!("{name}: no problem at {path}: {ps:?}"));
        assert_eq!(p.line, Some(*line), "{name}: {ps:?}");
    }
}

#[test]
fn http_loopback_needs_the_flag() {
    let text = "issuer = \"http://127.0.0.1:9\"\njwks_url = \"http://127.0.0.1:9/jwks\"\n";
    assert!(Config::from_toml_str(text).is_err());
    let ok = format!("{text}insecure_allow_http_loopback = true\n");
    let c = Config::from_toml_str(&ok).unwrap();
    assert_eq!(c.jwks_url.unwrap().as_str(), "http://127.0.0.1:9/jwks");
    let not_loopback = "issuer = \"http://tts.example\"\ninsecure_allow_http_loopback = true\n";
    assert_eq!(problems(not_loopback)[0].path, "issuer");
}

#[test]
fn first_route_whose_path_and_method_match_decides() {
    let text = format!(
        "{MIN}
[[routes]]
id = \"read\"
path = \"/orders/*\"
methods = [\"get\", \"HEAD\"]
scopes = [\"orders:read\"]

[[routes]]
id = \"write\"
path = \"/orders/**\"
methods = [\"POST\"]
scopes = [\"orders:write\"]

[[routes]]
path = \"/orders/**\"
scopes = [\"orders:admin\"]
"
    );
    let c = Config::from_toml_str(&text).unwrap();
    let id = |m: &str, p: &str| c.route(m, p).map(|r| r.id.as_str());
    assert_eq!(id("GET", "/orders/1"), Some("read"));
    assert_eq!(
        id("get", "/orders/1"),
        Some("read"),
        "methods compare case-insensitively"
    );
    assert_eq!(id("HEAD", "/orders/1"), Some("read"));
    assert_eq!(id("POST", "/orders/1"), Some("write"));
    assert_eq!(id("POST", "/orders/1/items"), Some("write"));
    assert_eq!(
        id("GET", "/orders/1/items"),
        Some("routes[2]"),
        "read's * is one segment"
    );
    assert_eq!(id("DELETE", "/orders/1"), Some("routes[2]"), "any method");
    assert_eq!(id("GET", "/other"), None);
    assert_eq!(
        c.routes[0].methods.as_deref(),
        Some(&["GET".to_owned(), "HEAD".to_owned()][..])
    );
}
