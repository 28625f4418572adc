//! Domestic banks' result files, read by the `[returns]` layouts of the shipped templates (CSV
//! and fixed-width, GBK and UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paygate::bank::layout::ReturnLayout;
use std::sync::OnceLock;

fn layouts() -> &'static Vec<ReturnLayout> {
    static L: OnceLock<Vec<ReturnLayout>> = OnceLock::new();
    L.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates");
        let all: Vec<ReturnLayout> = paygate::render::template::Template::load_all(&dir)
            .into_iter()
            .filter_map(|(_, t)| t.ok()?.returns)
            .collect();
        assert!(!all.is_empty(), "no template in {} has a [returns] layout", dir.display());
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let all = layouts();
    let layout = &all[data.len() % all.len()];
    let _ = layout.parse("result.txt", data);
});
