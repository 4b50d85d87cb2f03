//! Random identifiers: public session and room ids, secret resume tokens.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A seeded cryptographic generator of identifiers.
pub(crate) struct IdGen {
    rng: ChaCha20Rng,
}

impl IdGen {
    pub(crate) fn new(seed: [u8; 32]) -> Self {
        IdGen { rng: ChaCha20Rng::from_seed(seed) }
    }

    /// A public identifier: 64 random bits as 16 hex digits.
    pub(crate) fn public_id(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    /// A secret: 256 random bits as 64 hex digits.
    pub(crate) fn secret(&mut self) -> String {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
