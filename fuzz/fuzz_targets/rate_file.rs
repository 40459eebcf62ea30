//! The rate-file parser: any text is refused with a line and field, or gives a table that
//! prints back to a file which parses to the same table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paycode_core::fx::parse_rate_file;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_rate_file(text) {
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{e}");
            assert!(!e.reason.is_empty());
        }
        Ok(table) => {
            let printed = table.to_rate_file();
            let again = parse_rate_file(&printed)
                .unwrap_or_else(|e| panic!("printed file refused: {e}\n{printed}"));
            assert_eq!(again.to_rate_file(), printed);
        }
    }
});
