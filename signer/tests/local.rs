#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;

use txbridge_signer::{KeySet, LocalSigner, Signer};

#[tokio::test]
async fn local_signer_meets_the_contract() {
    let signer = LocalSigner::generate();
    common::check_signer_contract(&signer, 64).await;
}

#[tokio::test]
async fn pem_round_trip_keeps_the_kid() {
    let a = LocalSigner::generate();
    let pem = a.to_pkcs8_pem().unwrap();
    let b = LocalSigner::from_encoded(&pem).unwrap();
    assert_eq!(a.key_id(), b.key_id());
    common::check_signer_contract(&b, 4).await;
}

#[test]
fn kid_matches_jsonwebtoken_thumbprint() {
    let signer = LocalSigner::generate();
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(serde_json::to_value(signer.public_jwk()).unwrap()).unwrap();
    assert_eq!(
        jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .unwrap(),
        signer.key_id()
    );
}

#[test]
fn key_set_publishes_active_then_previous() {
    let old = LocalSigner::generate();
    let new = std::sync::Arc::new(LocalSigner::generate());
    let mut prev = old.public_jwk().clone();
    prev.kid = None; // filled with the thumbprint
    let set = KeySet::new(new.clone(), vec![prev, new.public_jwk().clone()]).unwrap();
    let kids: Vec<_> = set
        .public_keys()
        .iter()
        .map(|k| k.kid().to_owned())
        .collect();
    assert_eq!(kids, vec![new.key_id().to_owned(), old.key_id().to_owned()]);
    assert_eq!(set.jwks()["keys"].as_array().unwrap().len(), 2);
}
