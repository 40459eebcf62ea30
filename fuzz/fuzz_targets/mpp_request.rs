//! The wallet's MPP request decoders (`pay`, `inquiryPayment`, `cancel`, `refund`) as the
//! wallet runs them after the signature. The first input byte picks the operation. A refusal
//! is `PARAM_ILLEGAL` (or `INVALID_API`) with a message, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycode_wallet::decode_mpp_request;

const OPS: [&str; 5] = [
    "pay",
    "inquiryPayment",
    "cancel",
    "refund",
    "unknownOperation",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let op = OPS[usize::from(which) % OPS.len()];
    if let Err(r) = decode_mpp_request(op, "paycode-acquirer", body) {
        assert_eq!(r.result_status, "F", "{op}: {r:?}");
        assert!(
            ["PARAM_ILLEGAL", "INVALID_API"].contains(&r.result_code.as_str()),
            "{op}: {r:?}"
        );
        assert!(!r.result_message.trim().is_empty(), "{op}: empty message");
        assert!(
            r.result_message.len() < 1_000,
            "{op}: message of {} bytes",
            r.result_message.len()
        );
    }
});
