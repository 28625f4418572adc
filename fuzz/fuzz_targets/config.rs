//! The config loader: any text must give a config or a list of problems naming keys, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(problems) = paygate::config::Config::parse(text, std::path::Path::new("/nonexistent")) {
        assert!(!problems.is_empty(), "a refused config names at least one problem");
    }
});
