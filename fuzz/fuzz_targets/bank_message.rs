//! The bank's XML return files: the XML reader and the pain.002 / camt.053 / camt.054 parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = paygate::bank::parse(data) {
        // What a person is shown of it must render too.
        let _ = paygate::bank::describe::describe(&m, paygate::bank::reasons::Language::En);
    }
});
