//! The ECB daily reference-rate importer: any text either is refused or gives a dated list of
//! positive euro rates, at most one per currency (never the euro itself), that a rate table
//! takes whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycode_core::ecb;
use paycode_core::fx::RateTable;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rates) = ecb::parse(xml) else {
        return;
    };
    assert!(!rates.rates().is_empty());
    let d = rates.date().as_bytes();
    assert!(
        d.len() == 10 && d[4] == b'-' && d[7] == b'-',
        "{:?}",
        rates.date()
    );
    let mut seen = std::collections::HashSet::new();
    for (currency, rate) in rates.rates() {
        assert!(rate.mantissa() > 0, "{currency} {rate}");
        assert!(seen.insert(*currency), "{currency} twice");
        assert_ne!(currency.code(), "EUR");
    }
    let mut table = RateTable::new();
    rates.apply_to(&mut table).expect("parsed rates apply");
    assert_eq!(
        table.mids().count(),
        rates.rates().len() - usize::from(seen.iter().any(|c| c.code() == "EUR"))
    );
});
