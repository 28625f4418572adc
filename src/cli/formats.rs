//! `paygate formats`: the output formats — built-in pain.001 versions and the templates.

use super::{Exit, load_config};
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args, config_path: &Path) -> Exit {
    let cfg = match load_config(config_path) {
        Ok(c) => c,
        Err(e) => return e,
    };
    let dir = cfg.templates_dir();
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
