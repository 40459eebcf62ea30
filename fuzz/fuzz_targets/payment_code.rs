//! The payment-code parser and the acquirer's routing, against a model written from the format
//! (24 digits with business type 02, or a 17-19 digit legacy code starting 28) and from the
//! routing rule (the first matching route, in order, whose wallet exists; a disabled wallet is
//! refused by name).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycode_acquirer::registry::{Route, RoutePattern, Snapshot, Wallet};
use paycode_acquirer::service::accepting_wallet;
use paycode_core::code::PaymentCode;
use std::sync::OnceLock;

fn wallet(name: &str, enabled: bool) -> Wallet {
    static KEY: OnceLock<paycode_sign::PublicKey> = OnceLock::new();
    Wallet {
        name: name.into(),
        psp_name: name.to_uppercase(),
        base_url: format!("http://{name}.invalid"),
        public_key: KEY
            .get_or_init(|| paycode_sign::PrivateKey::generate().unwrap().public_key())
            .clone(),
        currencies: vec!["SGD".into()],
        enabled,
        countries: vec![],
        transaction_currencies: vec![],
    }
}

/// (pattern, wallet): in priority order; `ghost` is a route whose wallet was removed.
fn snapshot() -> &'static Snapshot {
    static SNAP: OnceLock<Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let routes = [
            (RoutePattern::Cii("289999".into()), "ghost"),
            (RoutePattern::Cii("281005".into()), "sgpay"),
            (RoutePattern::Cii("281011".into()), "offpay"),
            (
                RoutePattern::Regex(regex::Regex::new("^28[0-9]{15,17}$").unwrap()),
                "legacy",
            ),
            (
                RoutePattern::Regex(regex::Regex::new("^2899").unwrap()),
                "sgpay",
            ),
        ];
        let mut snap = Snapshot::default();
        for w in [
            wallet("sgpay", true),
            wallet("offpay", false),
            wallet("legacy", true),
        ] {
            snap.wallets.insert(w.name.clone(), w);
        }
        snap.routes = routes
            .into_iter()
            .enumerate()
            .map(|(i, (pattern, wallet))| Route {
                route_id: i as i64 + 1,
                pattern,
                wallet: wallet.into(),
                priority: 10,
            })
            .collect();
        snap
    })
}

fn model_valid(text: &str) -> bool {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    digits
        && match text.len() {
            24 => &text[6..8] == "02",
            17..=19 => text.starts_with("28"),
            _ => false,
        }
}

fn model_route(text: &str) -> Option<&'static str> {
    let cii = (text.len() == 24).then(|| &text[..6]);
    let matching = [
        (cii == Some("289999"), "ghost"),
        (cii == Some("281005"), "sgpay"),
        (cii == Some("281011"), "offpay"),
        ((17..=19).contains(&text.len()), "legacy"),
        (text.starts_with("2899"), "sgpay"),
    ];
    matching
        .into_iter()
        .filter(|(m, w)| *m && *w != "ghost")
        .map(|(_, w)| w)
        .next()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = PaymentCode::parse(text);
    assert_eq!(parsed.is_ok(), model_valid(text), "{text:?}: {parsed:?}");
    let Ok(code) = parsed else { return };
    assert_eq!(code.expose_digits(), text);
    let masked = code.masked();
    assert_eq!(masked.len(), text.len());
    assert!(masked[..text.len() - 4].bytes().all(|b| b == b'*'));
    assert_eq!(code.is_standard(), text.len() == 24);
    assert_eq!(code.cii(), (text.len() == 24).then(|| &text[..6]));
    let routed = accepting_wallet(snapshot(), &code);
    match (model_route(text), routed) {
        (Some("offpay"), Err(e)) => assert!(e.message.contains("OFFPAY"), "{}", e.message),
        (Some(w), Ok(got)) => assert_eq!(got.name, w, "{text}"),
        (None, Err(e)) => {
            assert_eq!(e.code, paycode_core::ResultCode::INVALID_CODE);
            // The refusal never repeats the code beyond its last four digits.
            assert!(
                !e.message.contains(&text[..text.len() - 4]),
                "{}",
                e.message
            );
        }
        (want, got) => panic!("{text}: model {want:?}, routing {:?}", got.map(|w| &w.name)),
    }
});
