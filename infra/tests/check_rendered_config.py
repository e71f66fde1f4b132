#!/usr/bin/env python3
"""Structural check of the TOML rendered by infra/modules/config (needs Python >= 3.11 for tomllib).

Renders two inputs with render-config.sh and parses the output with tomllib:
  1. infra/modules/config/example.tfvars: asserts the key structure of the contract;
  2. a generated JSON input with awkward strings (quotes, backslashes, newlines, non-ASCII, <>&),
     a CEL policy condition full of them, and previous_public_keys: asserts every value survives
     the round trip unchanged and that optional keys left null are absent;
  3. invalid inputs (HMAC algorithm, private JWK, policy for an unknown cluster, ...): must fail;
  4. workload-id collisions: identical templates without ${cluster} fail (naming both clusters)
     unless shared_workload_ids = true, which is then rendered.
txbridge's own parser (txbridge_core::Config::from_toml_str) is the final judge; this check only
keeps the Terraform side honest when run without the Rust build.
"""
import json
import os
import subprocess
import sys
import tempfile
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
RENDER = os.path.join(HERE, "render-config.sh")

TOP_KEYS = {"issuer", "trust_domain", "token_lifetime", "leeway", "max_subject_token_lifetime", "shared_workload_ids", "signer", "key_cache", "clusters", "policies"}
KEY_CACHE_KEYS = {"ttl", "min_refresh_interval", "stale_grace"}
SIGNER_KEYS = {"kind", "key_id", "wrapped_key", "previous_key_ids", "previous_public_keys"}
CLUSTER_KEYS = {"name", "issuer", "discovery_url", "jwks_url", "audiences", "algorithms", "workload_id", "insecure_allow_http_loopback"}
POLICY_KEYS = {"id", "cluster", "namespace", "service_account", "scopes", "tctx_constraints", "workloads", "condition"}


def render(path=None):
    args = ["bash", RENDER] + ([path] if path else [])
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"render-config.sh {path or '(example.tfvars)'} failed:\n{r.stderr}")
    return tomllib.loads(r.stdout)


def check_shape(cfg):
    assert set(cfg) <= TOP_KEYS, f"unknown top-level keys: {set(cfg) - TOP_KEYS}"
    assert set(cfg["signer"]) <= SIGNER_KEYS, cfg["signer"]
    for c in cfg["clusters"]:
        assert set(c) <= CLUSTER_KEYS, c
        assert {"name", "issuer", "audiences"} <= set(c), c
    assert set(cfg.get("key_cache", {})) <= KEY_CACHE_KEYS, cfg["key_cache"]
    for p in cfg.get("policies", []):
        assert {"cluster", "namespace", "service_account", "scopes"} <= set(p) <= POLICY_KEYS, p


def check_example():
    cfg = render()
    check_shape(cfg)
    assert cfg["issuer"] == "https://tts.example.com"
    assert cfg["trust_domain"] == "https://tts.example.com"
    assert (cfg["token_lifetime"], cfg["leeway"], cfg["max_subject_token_lifetime"]) == ("5m", "30s", "24h")
    assert cfg["signer"]["kind"] == "kms"
    assert cfg["signer"]["key_id"].startswith("arn:aws:kms:")
    assert len(cfg["signer"]["previous_key_ids"]) == 1
    assert "previous_public_keys" not in cfg["signer"]
    names = [c["name"] for c in cfg["clusters"]]
    assert names == ["prod-eu", "onprem-1"], names
    eks, mirrored = cfg["clusters"]
    assert eks["issuer"].startswith("https://oidc.eks.") and "discovery_url" not in eks
    assert mirrored["discovery_url"].endswith("/onprem-1/.well-known/openid-configuration")
    assert "jwks_url" not in mirrored and "algorithms" not in mirrored
    assert "workload_id" not in eks
    assert mirrored["workload_id"] == "spiffe://example.com/ns/${namespace}/sa/${service_account}"
    assert len(cfg["policies"]) == 3
    assert cfg["policies"][0]["scopes"] == ["orders:read", "orders:write"]
    assert cfg["policies"][0]["workloads"] == ["checkout-web", "checkout-worker-*"]
    assert "workloads" not in cfg["policies"][1]
    assert "tctx_constraints" not in cfg["policies"][0]
    assert cfg["policies"][2]["tctx_constraints"] == {"namespace": "${namespace}"}
    assert [p.get("id") for p in cfg["policies"]] == ["checkout-orders", None, "batch:reporting"]
    assert cfg["policies"][0]["condition"] == 'subject.claims["kubernetes.io"].pod.name.startsWith("checkout-")'
    assert "condition" not in cfg["policies"][1] and "condition" not in cfg["policies"][2]
    assert cfg["key_cache"] == {"ttl": "5m", "stale_grace": "1h"}
    assert "shared_workload_ids" not in cfg


def check_round_trip():
    jwk = {"kty": "EC", "crv": "P-256", "kid": "old-1", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    awkward = 'qu"ote \\ back\nnew\ttab <é&> \u2028 😀'
    # A CEL condition with everything a TOML basic string must escape or keep: quotes inside string
    # literals, backslash escapes, &&, a newline, a tab, template-looking ${...} and %{...}.
    condition = (
        'subject.claims["kubernetes.io"].pod.name.startsWith("web-\\"q\\"") && '
        'request.request_details["path"].matches("^/a\\\\d+$")\n\t|| '
        "request.workload == 'w\"${x}%{y}' && !request.replacement"
    )
    data = {
        "issuer": "https://tts.example.com/tenant-a",
        "signer": {"kind": "local", "previous_public_keys": [jwk]},
        "clusters": [{
            "name": "dev",
            "issuer": "http://127.0.0.1:8443",
            "jwks_url": "http://[::1]:8443/openid/v1/jwks",
            "audiences": ["txbridge", awkward],
            "algorithms": ["ES256", "RS256"],
            "workload_id": "wl://${cluster}/${namespace}/${service_account}?a=\"b\"",
            "insecure_allow_http_loopback": True,
        }],
        "key_cache": {"min_refresh_interval": "10s"},
        "policies": [
            {"cluster": "*", "namespace": "team-*", "service_account": awkward, "scopes": []},
            {"cluster": "dev", "namespace": "a", "service_account": "b", "scopes": ["x"], "tctx_constraints": {awkward: "${service_account}"}, "workloads": ["spiffe://x/*", "a\\b"]},
            {"id": "a.B_c:d-9", "cluster": "dev", "namespace": "n", "service_account": "s", "scopes": ["x"], "condition": condition},
            # Exactly 4096 bytes of UTF-8 (2048 characters): the limit counts bytes, inclusive.
            {"id": "at-the-limit", "cluster": "dev", "namespace": "n", "service_account": "s", "scopes": [], "condition": "é" * 2048},
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "edge.tfvars.json")
        with open(path, "w") as f:
            json.dump(data, f)
        cfg = render(path)
    check_shape(cfg)
    assert cfg["issuer"] == data["issuer"]
    assert cfg["trust_domain"] == data["issuer"], "trust_domain defaults to the issuer"
    for absent in ("token_lifetime", "leeway", "max_subject_token_lifetime"):
        assert absent not in cfg, absent
    assert cfg["signer"] == {"kind": "local", "previous_public_keys": [jwk]}, cfg["signer"]
    assert cfg["clusters"] == data["clusters"], cfg["clusters"]
    assert cfg["key_cache"] == data["key_cache"], cfg["key_cache"]
    assert cfg["policies"] == data["policies"], cfg["policies"]
    # kms-wrapped: the ciphertext only.
    wrapped = {**data, "signer": {"kind": "kms-wrapped", "wrapped_key": "AQIDBAUGBwgJCgsMDQ4PEA=="}}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "wrapped.tfvars.json")
        with open(path, "w") as f:
            json.dump(wrapped, f)
        cfg = render(path)
    check_shape(cfg)
    assert cfg["signer"] == wrapped["signer"], cfg["signer"]


def check_rejects():
    """Inputs the module's validation blocks must refuse."""
    base = {
        "issuer": "https://tts.example.com",
        "clusters": [{"name": "a", "issuer": "https://issuer.example.com", "audiences": ["txbridge"]}],
    }
    bad = {
        "hmac algorithm": {"clusters": [{**base["clusters"][0], "algorithms": ["HS256"]}]},
        "unsupported algorithm": {"clusters": [{**base["clusters"][0], "algorithms": ["PS256"]}]},
        "rsa previous key": {"signer": {"kind": "local", "previous_public_keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}},
        "empty tctx constraint": {"policies": [{"cluster": "a", "namespace": "n", "service_account": "s", "scopes": [], "tctx_constraints": {"k": ""}}]},
        "kms without key_id": {"signer": {"kind": "kms"}},
        "key_id on local signer": {"signer": {"kind": "local", "key_id": "x"}},
        "private jwk": {"signer": {"kind": "local", "previous_public_keys": [{"kty": "EC", "d": "secret"}]}},
        "policy for unknown cluster": {"policies": [{"cluster": "b", "namespace": "n", "service_account": "s", "scopes": []}]},
        "duplicate cluster": {"clusters": base["clusters"] * 2},
        "upper-case cluster name": {"clusters": [{**base["clusters"][0], "name": "Prod-eu"}]},
        "cluster name with a colon": {"clusters": [{**base["clusters"][0], "name": "prod:eu"}]},
        "cluster name of 64 characters": {"clusters": [{**base["clusters"][0], "name": "a" * 64}]},
        "empty cluster name": {"clusters": [{**base["clusters"][0], "name": ""}]},
        "http issuer": {"clusters": [{**base["clusters"][0], "issuer": "http://issuer.example.com"}]},
        "xn-- cluster issuer": {"clusters": [{**base["clusters"][0], "issuer": "https://a.XN--bcher-kva.example"}]},
        "percent-encoded jwks_url host": {"clusters": [{**base["clusters"][0], "jwks_url": "https://%41.example/jwks"}]},
        "empty authority discovery_url": {"clusters": [{**base["clusters"][0], "discovery_url": "https:///a.example/x"}]},
        "non-ASCII issuer": {"issuer": "https://tts.example.com/é"},
        "xn-- issuer": {"issuer": "https://xn--bcher-kva.example"},
        "scope with space": {"policies": [{"cluster": "a", "namespace": "n", "service_account": "s", "scopes": ["a b"]}]},
        "bad duration": {"token_lifetime": "five minutes"},
        "workload_id with a comma": {"clusters": [{**base["clusters"][0], "workload_id": "a,${namespace}"}]},
        "workload_id with an unknown placeholder": {"clusters": [{**base["clusters"][0], "workload_id": "${pod}"}]},
        "workload_id with a space": {"clusters": [{**base["clusters"][0], "workload_id": "a ${namespace}"}]},
        "workloads with a comma": {"policies": [{"cluster": "a", "namespace": "n", "service_account": "s", "scopes": [], "workloads": ["a,b"]}]},
        "duplicate policy id": {"policies": [{"id": "p1", "cluster": "a", "namespace": "n", "service_account": "s", "scopes": []}, {"id": "p1", "cluster": "*", "namespace": "m", "service_account": "s", "scopes": []}]},
        "policy id with a space": {"policies": [{"id": "p 1", "cluster": "a", "namespace": "n", "service_account": "s", "scopes": []}]},
        "policy id of 65 characters": {"policies": [{"id": "p" * 65, "cluster": "a", "namespace": "n", "service_account": "s", "scopes": []}]},
        "empty policy id": {"policies": [{"id": "", "cluster": "a", "namespace": "n", "service_account": "s", "scopes": []}]},
        "condition over 4096 bytes": {"policies": [{"cluster": "a", "namespace": "n", "service_account": "s", "scopes": [], "condition": "true || " + "x" * 4089}]},
        # 2049 characters, 4098 bytes: the limit is in bytes, not characters.
        "condition over 4096 bytes in 2049 characters": {"policies": [{"cluster": "a", "namespace": "n", "service_account": "s", "scopes": [], "condition": "é" * 2049}]},
        "empty condition": {"policies": [{"cluster": "a", "namespace": "n", "service_account": "s", "scopes": [], "condition": " "}]},
        "colliding workload_id templates": {"clusters": [
            {**base["clusters"][0], "workload_id": "spiffe://x/ns/${namespace}/sa/${service_account}"},
            {**base["clusters"][0], "name": "b", "workload_id": "spiffe://x/ns/${namespace}/sa/${service_account}"},
        ]},
        "kms-wrapped without a key": {"signer": {"kind": "kms-wrapped"}},
        "kms-wrapped key not base64": {"signer": {"kind": "kms-wrapped", "wrapped_key": "not base64!"}},
        "wrapped key on a kms signer": {"signer": {"kind": "kms", "key_id": "x", "wrapped_key": "AQID"}},
        "key_id on a kms-wrapped signer": {"signer": {"kind": "kms-wrapped", "wrapped_key": "AQID", "key_id": "x"}},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, override in bad.items():
            path = os.path.join(tmp, "bad.tfvars.json")
            with open(path, "w") as f:
                json.dump({**base, **override}, f)
            r = subprocess.run(["bash", RENDER, path], capture_output=True, text=True)
            assert r.returncode != 0, f"accepted invalid input: {name}"
            assert "Invalid value for variable" in r.stderr, (name, r.stderr[-500:])


def render_raw(data, tmp, name="input.tfvars.json"):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        json.dump(data, f)
    return subprocess.run(["bash", RENDER, path], capture_output=True, text=True)


def check_workload_id_collisions():
    """Identical workload_id templates without ${cluster}: an error naming both clusters unless
    shared_workload_ids = true (ARCHITECTURE.md, namespace sameness)."""
    spiffe = "spiffe://example.com/ns/${namespace}/sa/${service_account}"
    clusters = [
        {"name": "east", "issuer": "https://east.example.com", "audiences": ["txbridge"], "workload_id": spiffe},
        # The default template contains ${cluster}: never part of a collision.
        {"name": "mid", "issuer": "https://mid.example.com", "audiences": ["txbridge"]},
        {"name": "west", "issuer": "https://west.example.com", "audiences": ["txbridge"], "workload_id": spiffe},
    ]
    base = {"issuer": "https://tts.example.com", "clusters": clusters}
    with tempfile.TemporaryDirectory() as tmp:
        for shared in (None, False):
            data = base if shared is None else {**base, "shared_workload_ids": shared}
            r = render_raw(data, tmp)
            assert r.returncode != 0, f"accepted colliding workload_id templates (shared_workload_ids = {shared})"
            assert "Invalid value for variable" in r.stderr, r.stderr[-500:]
            assert "east" in r.stderr and "west" in r.stderr, ("collision error names both clusters", r.stderr[-500:])
            assert "clusters mid" not in r.stderr and "and mid" not in r.stderr, r.stderr[-500:]

        r = render_raw({**base, "shared_workload_ids": True}, tmp)
        assert r.returncode == 0, f"shared_workload_ids = true refused:\n{r.stderr[-800:]}"
        cfg = tomllib.loads(r.stdout)
        check_shape(cfg)
        assert cfg["shared_workload_ids"] is True
        assert [c.get("workload_id") for c in cfg["clusters"]] == [spiffe, None, spiffe]

        # Templates with ${cluster} never collide, even when identical; the default written out
        # explicitly does not collide with the implicit default either.
        with_cluster = "spiffe://example.com/${cluster}/ns/${namespace}/sa/${service_account}"
        ok = {"issuer": "https://tts.example.com", "shared_workload_ids": False, "clusters": [
            {**clusters[0], "workload_id": with_cluster},
            {**clusters[1], "workload_id": "${cluster}:${namespace}:${service_account}"},
            {**clusters[2], "workload_id": with_cluster},
            {"name": "north", "issuer": "https://north.example.com", "audiences": ["txbridge"]},
        ]}
        r = render_raw(ok, tmp)
        assert r.returncode == 0, f"templates with ${{cluster}} refused:\n{r.stderr[-800:]}"
        cfg = tomllib.loads(r.stdout)
        assert cfg["shared_workload_ids"] is False


def main():
    if sys.version_info < (3, 11):
        print("SKIP: config render check needs Python >= 3.11 (tomllib)")
        return 0
    check_example()
    check_round_trip()
    check_rejects()
    check_workload_id_collisions()
    print("config render: example, round trip, rejected inputs and workload-id collisions OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
