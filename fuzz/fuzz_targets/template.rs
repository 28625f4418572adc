//! The template loader (bank layouts defined as TOML in `templates/`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(problems) = paygate::render::template::Template::parse(text) {
        assert!(!problems.is_empty(), "a refused template names at least one problem");
    }
});
