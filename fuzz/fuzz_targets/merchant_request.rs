//! The merchant API's request decoders: every body the acquirer would accept after the
//! signature, for each operation. The first input byte picks the operation. A refusal is one
//! of the request-shape codes with a message that names what is wrong, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycode_acquirer::api::decode_request;
use paycode_core::ResultCode;

const OPS: [&str; 8] = [
    "pay",
    "refund",
    "inquiryPayment",
    "cancel",
    "inquiryRefund",
    "inquiryCodeIssuer",
    "inquireExchangeRate",
    "unknownOperation",
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let op = OPS[usize::from(which) % OPS.len()];
    if let Err(e) = decode_request(op, "client-1", body) {
        assert!(
            [
                ResultCode::PARAM_ILLEGAL,
                ResultCode::INVALID_CODE,
                ResultCode::INVALID_API
            ]
            .contains(&e.code),
            "{op}: {:?} {}",
            e.code,
            e.message
        );
        assert!(!e.message.trim().is_empty(), "{op}: empty message");
        // Echoed input is cut short (`paycode_http::brief`), so a message stays small.
        assert!(
            e.message.len() < 1_000,
            "{op}: message of {} bytes",
            e.message.len()
        );
    }
});
