//! Payment passwords: Argon2id hashes in PHC form. Hashing and verifying cost tens of
//! milliseconds by design, so both run on the blocking pool and never inside a database job.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

use crate::WalletError;

/// Hashes `password` with a fresh random salt.
pub(crate) fn hash(password: &str, memory_kib: u32) -> Result<String, WalletError> {
    let params =
        Params::new(memory_kib, 2, 1, None).map_err(|e| WalletError::Password(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut salt = [0u8; 16];
    crate::random::random_bytes(&mut salt);
    let h = argon
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| WalletError::Password(e.to_string()))?;
    Ok(h.to_string())
}

/// Whether `password` matches the stored hash (the hash carries its own parameters).
pub(crate) fn verify(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        tracing::error!("a stored password hash does not parse");
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
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

#[cfg(test)]
mod tests {
    #[test]
    fn hash_then_verify() {
        let h = super::hash("123456", 1024).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("123456", &h));
        assert!(!super::verify("123457", &h));
        assert!(!super::verify("123456", "not a hash"));
    }
}
