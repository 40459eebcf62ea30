//! Payment passwords: Argon2id hashes in PHC form. Hashing and verifying cost tens of
//! milliseconds by design, so both run on the blocking pool and never inside a database job.

use crate::WalletError;

/// Hashes `password` with a fresh random salt.
pub(crate) fn hash(password: &str, memory_kib: u32) -> Result<String, WalletError> {
    paycode_sign::password::hash(password, memory_kib).map_err(WalletError::Password)
}

/// Whether `password` matches the stored hash (the hash carries its own parameters).
pub(crate) fn verify(password: &str, stored: &str) -> bool {
    paycode_sign::password::verify(password, stored).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a stored password hash does not parse");
        false
    })
}

pub(crate) async fn hash_async(password: String, memory_kib: u32) -> Result<String, WalletError> {
    tokio::task::spawn_blocking(move || hash(&password, memory_kib))
        .await
        .map_err(|e| WalletError::Password(e.to_string()))?
}

pub(crate) async fn verify_async(password: String, stored: String) -> bool {
    tokio::task::spawn_blocking(move || verify(&password, &stored))
        .await
        .unwrap_or(false)
}
