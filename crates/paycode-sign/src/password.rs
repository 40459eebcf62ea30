//! Password hashes: Argon2id in PHC form, one implementation for every password paycode keeps
//! (the wallet's payment passwords, the dashboard's users). Hashing and verifying cost tens of
//! milliseconds by design: callers run them on the blocking pool, never inside a database job.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};

/// Argon2's recommended memory cost (19 MiB); tests may use less.
pub const MEMORY_KIB_DEFAULT: u32 = Params::DEFAULT_M_COST;

/// Hashes `password` with a fresh random salt, at `memory_kib`, 2 passes, 1 lane.
pub fn hash(password: &str, memory_kib: u32) -> Result<String, String> {
    let params = Params::new(memory_kib, 2, 1, None).map_err(|e| e.to_string())?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system random source failed".to_string())?;
    argon
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches `stored` (which carries its own parameters); an error when
/// `stored` is not a hash at all.
pub fn verify(password: &str, stored: &str) -> Result<bool, String> {
    let parsed = PasswordHash::new(stored).map_err(|e| e.to_string())?;
    Ok(Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_then_verify() {
        let h = super::hash("123456", 1024).unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert_eq!(super::verify("123456", &h), Ok(true));
        assert_eq!(super::verify("123457", &h), Ok(false));
        assert!(super::verify("123456", "not a hash").is_err());
    }
}
