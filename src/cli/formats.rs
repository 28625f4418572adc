//! `paygate formats`: the output formats — built-in pain.001 versions and the templates.

use super::{Exit, load_config};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, config_path: &Path) -> Exit {
    // Without a config file the built-in versions and the shipped templates are listed; a
    // config that exists but is wrong is reported as everywhere else.
    let dir = if config_path.exists() {
        match load_config(config_path) {
            Ok(c) => c.templates_dir(),
            Err(e) => return e,
        }
    } else {
        let installed = std::path::PathBuf::from("/usr/share/paygate/templates");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let dir = if installed.is_dir() || !source.is_dir() {
            installed
        } else {
            source
        };
        println!(
            "(no config at {}: the built-in formats and the templates in {})",
            config_path.display(),
            dir.display()
        );
        dir
    };
    let list = crate::render::formats(&dir);
    let w = list
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    for (name, desc) in &list {
        println!("{name:<w$}  {desc}");
    }
    if !dir.is_dir() {
        println!(
            "(no template folder {}: set paygate.templates_dir)",
            dir.display()
        );
    }
    Exit::Ok
}
