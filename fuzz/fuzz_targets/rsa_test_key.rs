//! The alpha cluster's RSA key for the handler target: a throwaway 2048-bit test key, published
//! on purpose so that crashes reproduce (generating one under coverage instrumentation takes
//! seconds). Never use it for anything else.

/// The prime p, hex.
pub const P: &[&str] = &[
    "f308f016fb71fb43467edfd874c4bb736bf3b9b62dbd93c588be5539030e51f5cccd52fb6a429296f75992198623281a",
    "8b0d90d299570b6c851d4faa20f7d0f7668e47d73361624dfbb36f8b1dc758f2f5669e37299b441612c6008ed2c468b8",
    "9d7be4d6a827c1057b58a4c0267e36baa06c498b3a1417b74552707fe2f022e1",
];

/// The prime q, hex.
pub const Q: &[&str] = &[
    "ce1be04f1f475d5283b5967067c6d1fa41b2427a5d5d8b3f419c58bd90302a10e9a691690fd0d6a27dfa215239d636ee",
    "4687e171cb7ec7aae7d086200e6f1812f336437b4ee5dbdb1c98855dbffb04f2b193afae69c984f4ba4a2835efb6d583",
    "8405e7e9865b7dd83492e431d66bb10444208ae3aeea5224cd73e9f836fd67d5",
];
