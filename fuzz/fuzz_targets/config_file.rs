//! The `serve --config` file: any text is refused with a message or gives a configuration that
//! passes its own checks. The module is the binary's own, built here on its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../crates/paycode/src/config_schema.rs"]
#[allow(dead_code)]
mod config_schema;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config_schema::parse(text) {
        Err(e) => assert!(!e.trim().is_empty()),
        Ok(cfg) => {
            cfg.check()
                .expect("a parsed configuration passes its checks");
            assert!(cfg.acquirer.is_some() || !cfg.wallets.is_empty());
        }
    }
});
