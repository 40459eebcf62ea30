//! The `Signature` header parser and the verifier. A parsed header prints back to a header that
//! parses to the same value; a fuzzed header never verifies; and a genuine signature verifies
//! exactly its own message: the first input byte picks which part of it the rest replaces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycode_sign::{PrivateKey, PublicKey, SignatureHeader, sign, verify};
use std::sync::OnceLock;

const PATH: &str = "/ams/api/v1/payments/pay";
const CLIENT: &str = "SANDBOX_5Y3A2N2YEB3E0";
const TIME: &str = "2026-12-01T12:00:00.000Z";
const BODY: &[u8] =
    br#"{"paymentRequestId":"p-1","paymentAmount":{"currency":"SGD","value":"450"}}"#;

/// The key and the genuine header of (PATH, CLIENT, TIME, BODY).
fn genuine() -> &'static (PublicKey, String) {
    static G: OnceLock<(PublicKey, String)> = OnceLock::new();
    G.get_or_init(|| {
        let key = PrivateKey::generate().unwrap();
        let header = sign(&key, 1, PATH, CLIENT, TIME, BODY).unwrap();
        (key.public_key(), header)
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, header) = genuine();
    let text = String::from_utf8_lossy(data);
    if let Ok(h) = SignatureHeader::parse(&text) {
        let again = SignatureHeader::parse(&h.to_header_value()).expect("printed header parses");
        assert_eq!(again, h);
        let real = SignatureHeader::parse(header).unwrap();
        if h.signature != real.signature {
            assert!(verify(key, &h, PATH, CLIENT, TIME, BODY).is_err(), "{text}");
        }
    }
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let real = SignatureHeader::parse(header).unwrap();
    let rest_text = String::from_utf8_lossy(rest);
    let (path, client, time, body) = match which % 4 {
        0 => (rest_text.as_ref(), CLIENT, TIME, BODY),
        1 => (PATH, rest_text.as_ref(), TIME, BODY),
        2 => (PATH, CLIENT, rest_text.as_ref(), BODY),
        _ => (PATH, CLIENT, TIME, rest),
    };
    let same = (path, client, time, body) == (PATH, CLIENT, TIME, BODY);
    assert_eq!(
        verify(key, &real, path, client, time, body).is_ok(),
        same,
        "{path} {client} {time} {:?}",
        String::from_utf8_lossy(body)
    );
});
