//! Chooses the crypto backend once: `cfg(aws_lc)` when the `aws-lc` feature is on and the target
//! is not wasm32 (where aws-lc-rs is never built). `src/crypto/` is the only code that reads it.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(aws_lc)");
    let feature = std::env::var_os("CARGO_FEATURE_AWS_LC").is_some();
    let wasm = std::env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|a| a == "wasm32");
    if feature && !wasm {
        println!("cargo::rustc-cfg=aws_lc");
    }
}
