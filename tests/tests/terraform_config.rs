//! The config Terraform renders (infra/modules/config, applied offline with example variables)
//! must be accepted by txbridge's own parser, so the module and the binary cannot drift.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use txbridge_core::Config;
use txbridge_signer::SignerKind;

#[test]
fn terraform_rendered_config_parses() {
    let root = txbridge_tests::workspace_root();
    let out = std::process::Command::new("bash")
        .arg(root.join("infra/tests/render-config.sh"))
        .current_dir(&root)
        .output()
        .expect("run infra/tests/render-config.sh (needs terraform on PATH)");
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let toml = String::from_utf8(out.stdout).unwrap();
    let config = Config::from_toml_str(&toml)
        .unwrap_or_else(|e| panic!("rendered config rejected: {e}\n{toml}"));
    assert_eq!(config.clusters().len(), 2, "{toml}");
    assert!(
        config.clusters().iter().any(|c| c
            .discovery_url
            .as_ref()
            .is_some_and(|u| !u.as_str().starts_with(&c.issuer))),
        "a mirrored cluster"
    );
    assert!(
        matches!(config.signer().kind, SignerKind::Kms { .. }),
        "the AWS module signs with KMS"
    );
}
