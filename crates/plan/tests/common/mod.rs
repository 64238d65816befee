//! Locating the shared benchmark data (`../shared/data/vrp` next to the repository, or
//! `$STADION_VRP_DATA`).

#![allow(dead_code)]

use std::path::PathBuf;

pub fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("STADION_VRP_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/vrp")
        });
    if dir.join("bks_sintef.csv").exists() {
        Some(dir)
    } else {
        eprintln!(
            "benchmark data not found at {}; set STADION_VRP_DATA",
            dir.display()
        );
        None
    }
}

pub fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
