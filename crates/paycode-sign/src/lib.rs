//! The RSA256 signature scheme shared by the merchant API, the MPP API and notifications.
//!
//! Signed content is `POST <path>\n<client-id>.<time>.<body>`, where `<path>` is the request path
//! exactly as sent (including any `/ams/sandbox/api` prefix and query string) and `<body>` the exact
//! bytes on the wire: nothing is ever re-serialized before verifying. The signature is
//! RSASSA-PKCS1-v1_5 over SHA-256, base64 (standard alphabet), then form-URL-encoded, carried as
//! `Signature: algorithm=RSA256,keyVersion=1,signature=<value>`.
//!
//! The one key decision: keys are RSA-2048 through `aws-lc-rs`, which signs ~5× faster than the
//! pure-Rust `rsa` crate and verifies directly with the SPKI keys merchants already hold.

pub mod password;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("key is not valid base64 or PEM")]
    KeyEncoding,
    #[error("key is not an RSA key of 2048 bits or more: {0}")]
    KeyRejected(String),
    #[error("signature header is malformed: {0}")]
    HeaderMalformed(&'static str),
    #[error("signature algorithm {0:?} is not supported (only RSA256)")]
    AlgorithmUnsupported(String),
    #[error("signature does not match the content")]
    Mismatch,
    #[error("signing failed")]
    SigningFailed,
}

/// An RSA private key. Its `Debug` never shows key material.
pub struct PrivateKey {
    pair: KeyPair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

impl PrivateKey {
    /// A fresh RSA-2048 key.
    pub fn generate() -> Result<PrivateKey, SignError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| SignError::SigningFailed)?;
        Ok(PrivateKey { pair })
    }

    /// Parses a PKCS#8 or PKCS#1 key given as PEM or as bare base64 DER.
    pub fn parse(text: &str) -> Result<PrivateKey, SignError> {
        let der = decode_key_text(text)?;
        let pair = KeyPair::from_pkcs8(&der)
            .or_else(|_| KeyPair::from_der(&der))
            .map_err(|e| SignError::KeyRejected(e.to_string()))?;
        Ok(PrivateKey { pair })
    }

    /// Bare base64 of the PKCS#8 DER: the form the merchant SDKs take.
    pub fn to_pkcs8_base64(&self) -> String {
        let der = self
            .pair
            .as_der()
            .expect("an RSA key in memory always encodes to PKCS#8");
        B64.encode(der.as_ref())
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let der = self
            .pair
            .public_key()
            .as_der()
            .expect("an RSA public key always encodes to SPKI");
        PublicKey {
            spki_der: der.as_ref().to_vec(),
        }
    }

    /// Raw RSASSA-PKCS1-v1_5 SHA-256 signature of `content`.
    pub fn sign_raw(&self, content: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                content,
                &mut sig,
            )
            .map_err(|_| SignError::SigningFailed)?;
        Ok(sig)
    }
}

/// An RSA public key (SPKI).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki_der: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}…)", &self.to_base64()[..16])
    }
}

impl PublicKey {
    /// Parses an SPKI (or PKCS#1 `RSA PUBLIC KEY`) key given as PEM or as bare base64 DER.
    pub fn parse(text: &str) -> Result<PublicKey, SignError> {
        let der = decode_key_text(text)?;
        let parsed = aws_lc_rs::rsa::PublicKey::from_der(&der)
            .map_err(|e| SignError::KeyRejected(e.to_string()))?;
        // Normalise to SPKI so that verification and `to_base64` agree whatever came in.
        let spki = parsed
            .as_der()
            .map_err(|_| SignError::KeyRejected("cannot encode as SPKI".into()))?;
        Ok(PublicKey {
            spki_der: spki.as_ref().to_vec(),
        })
    }

    /// Bare base64 of the SPKI DER.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.spki_der)
    }

    pub fn verify_raw(&self, content: &[u8], sig: &[u8]) -> Result<(), SignError> {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.spki_der)
            .verify(content, sig)
            .map_err(|_| SignError::Mismatch)
    }
}

fn decode_key_text(text: &str) -> Result<Vec<u8>, SignError> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    if body.is_empty() {
        return Err(SignError::KeyEncoding);
    }
    B64.decode(body.as_bytes())
        .map_err(|_| SignError::KeyEncoding)
}

/// The exact bytes that are signed.
pub fn signed_content(path: &str, client_id: &str, time: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + client_id.len() + time.len() + body.len() + 8);
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(client_id.as_bytes());
    out.push(b'.');
    out.extend_from_slice(time.as_bytes());
    out.push(b'.');
    out.extend_from_slice(body);
    out
}

/// A parsed `Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub key_version: u32,
    pub signature: Vec<u8>,
}

impl SignatureHeader {
    /// Parses `algorithm=RSA256,keyVersion=1,signature=<urlencoded base64>`, tolerating spaces,
    /// any order, a missing `keyVersion` (taken as 1) and a signature that was not URL-encoded.
    pub fn parse(header: &str) -> Result<SignatureHeader, SignError> {
        let mut algorithm = None;
        let mut key_version = None;
        let mut signature = None;
        for part in header.split(',') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(SignError::HeaderMalformed("expected key=value pairs"));
            };
            match k.trim() {
                "algorithm" => algorithm = Some(v.trim()),
                "keyVersion" => key_version = Some(v.trim()),
                "signature" => signature = Some(v.trim()),
                _ => {}
            }
        }
        let algorithm = algorithm.ok_or(SignError::HeaderMalformed("algorithm is missing"))?;
        if !algorithm.eq_ignore_ascii_case("RSA256") {
            return Err(SignError::AlgorithmUnsupported(algorithm.to_string()));
        }
        let key_version = match key_version {
            None | Some("") => 1,
            Some(v) => v
                .parse()
                .map_err(|_| SignError::HeaderMalformed("keyVersion is not a number"))?,
        };
        let value = signature.ok_or(SignError::HeaderMalformed("signature is missing"))?;
        let decoded = url_decode(value).ok_or(SignError::HeaderMalformed("bad %-escape"))?;
        let signature = B64
            .decode(decoded.trim().as_bytes())
            .map_err(|_| SignError::HeaderMalformed("signature is not base64"))?;
        Ok(SignatureHeader {
            key_version,
            signature,
        })
    }

    pub fn to_header_value(&self) -> String {
        format!(
            "algorithm=RSA256,keyVersion={},signature={}",
            self.key_version,
            url_encode(&B64.encode(&self.signature))
        )
    }
}

/// Signs a message and returns the `Signature` header value.
pub fn sign(
    key: &PrivateKey,
    key_version: u32,
    path: &str,
    client_id: &str,
    time: &str,
    body: &[u8],
) -> Result<String, SignError> {
    let signature = key.sign_raw(&signed_content(path, client_id, time, body))?;
    Ok(SignatureHeader {
        key_version,
        signature,
    }
    .to_header_value())
}

/// Verifies a parsed header against the message.
pub fn verify(
    key: &PublicKey,
    header: &SignatureHeader,
    path: &str,
    client_id: &str,
    time: &str,
    body: &[u8],
) -> Result<(), SignError> {
    key.verify_raw(
        &signed_content(path, client_id, time, body),
        &header.signature,
    )
}

/// Form-URL-encoding of a base64 string, as the SDKs do it (`+`, `/`, `=` escaped).
fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

fn url_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> &'static PrivateKey {
        static KEY: std::sync::OnceLock<PrivateKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate().unwrap())
    }

    #[test]
    fn sign_then_verify_round_trips_and_detects_any_change() {
        let k = key();
        let header = sign(
            k,
            1,
            "/ams/api/v1/payments/pay",
            "C1",
            "2026-01-01T00:00:00Z",
            b"{}",
        )
        .unwrap();
        assert!(header.starts_with("algorithm=RSA256,keyVersion=1,signature="));
        let parsed = SignatureHeader::parse(&header).unwrap();
        let pubkey = k.public_key();
        verify(
            &pubkey,
            &parsed,
            "/ams/api/v1/payments/pay",
            "C1",
            "2026-01-01T00:00:00Z",
            b"{}",
        )
        .unwrap();
        for (path, cid, time, body) in [
            (
                "/ams/sandbox/api/v1/payments/pay",
                "C1",
                "2026-01-01T00:00:00Z",
                &b"{}"[..],
            ),
            (
                "/ams/api/v1/payments/pay",
                "C2",
                "2026-01-01T00:00:00Z",
                b"{}",
            ),
            (
                "/ams/api/v1/payments/pay",
                "C1",
                "2026-01-01T00:00:01Z",
                b"{}",
            ),
            (
                "/ams/api/v1/payments/pay",
                "C1",
                "2026-01-01T00:00:00Z",
                b"{ }",
            ),
        ] {
            assert_eq!(
                verify(&pubkey, &parsed, path, cid, time, body),
                Err(SignError::Mismatch)
            );
        }
    }

    #[test]
    fn header_parsing_is_tolerant() {
        let raw = SignatureHeader {
            key_version: 3,
            signature: vec![0xfb, 0xff, 0xfe, 1],
        };
        let v = raw.to_header_value();
        assert!(v.contains("%2B") || v.contains("%2F") || v.contains("%3D"));
        let spaced = v.replace(',', ", ");
        assert_eq!(SignatureHeader::parse(&spaced).unwrap(), raw);
        let unencoded = format!(
            "algorithm=RSA256, signature={}",
            B64.encode([0xfb, 0xff, 0xfe, 1])
        );
        let p = SignatureHeader::parse(&unencoded).unwrap();
        assert_eq!((p.key_version, p.signature), (1, raw.signature.clone()));
        assert!(matches!(
            SignatureHeader::parse("algorithm=HS256,signature=AA%3D%3D"),
            Err(SignError::AlgorithmUnsupported(_))
        ));
        assert!(SignatureHeader::parse("garbage").is_err());
        assert!(SignatureHeader::parse("algorithm=RSA256,keyVersion=1").is_err());
    }

    #[test]
    fn keys_round_trip_through_base64_and_pem() {
        let k = key();
        let again = PrivateKey::parse(&k.to_pkcs8_base64()).unwrap();
        assert_eq!(again.public_key(), k.public_key());
        let b64 = k.public_key().to_base64();
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            b64
        );
        assert_eq!(PublicKey::parse(&pem).unwrap(), k.public_key());
        assert!(PublicKey::parse("not a key").is_err());
        assert!(format!("{:?}", k).contains("***"));
    }
}
