//! What the tests of the binary's offline commands (`track`, `plan`: no server) share: running
//! it, and asserting success or a clean refusal.

use std::path::Path;
use std::process::{Command, Output};

pub fn stadion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stadion"))
        .args(args)
        .output()
        .expect("the stadion binary runs")
}

/// Runs `stadion args` and asserts that it succeeded.
pub fn ok(args: &[&str]) -> Output {
    let out = stadion(args);
    assert!(
        out.status.success(),
        "stadion {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The error text of a command that must fail (and not panic).
pub fn fails(args: &[&str]) -> String {
    let out = stadion(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "stadion {} succeeded on bad input",
        args.join(" ")
    );
    assert!(
        !err.contains("panicked"),
        "a panic instead of an error: {err}"
    );
    err
}

pub fn s(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}
