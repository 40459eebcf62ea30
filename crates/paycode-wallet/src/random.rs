//! Randomness and digests the wallet needs: salts, device secrets, tokens, slots, id seeds.

use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

pub(crate) fn random_bytes(buf: &mut [u8]) {
    aws_lc_rs::rand::SystemRandom::new()
        .fill(buf)
        .expect("the system random generator does not fail");
}

/// `n_bytes` random bytes as URL-safe base64.
pub(crate) fn random_token(n_bytes: usize) -> String {
    let mut b = vec![0u8; n_bytes];
    random_bytes(&mut b);
    B64URL.encode(b)
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
