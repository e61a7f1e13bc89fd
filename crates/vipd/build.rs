//! Puts the code the running daemon uses together at the front of the executable (issue
//! 16 item 1). The kernel maps an executable's pages in 64 KB fault-around windows, so
//! the few hundred kB the daemon runs, spread over ~9 MB of code, kept megabytes
//! resident; grouped, they fill a few windows. `hot-text.txt` lists those functions
//! (written by bench/hot_text.py from a running daemon) as globs over link-section
//! names; this turns them into a linker script that places the matching sections in
//! `.text.hot`, just before `.text`. A glob that matches nothing (code since renamed) is
//! harmless: the order only changes where code sits, never what it does.

use std::env;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=hot-text.txt");
    // Optimised ELF builds only: a debug build's layout does not matter, and the tests
    // link it often.
    let release = env::var("PROFILE").as_deref() == Ok("release");
    let elf = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if !(release && elf) {
        return;
    }
    let list = std::fs::read_to_string("hot-text.txt").expect("crates/vipd/hot-text.txt");
    let mut script = String::from("SECTIONS\n{\n  .text.hot :\n  {\n");
    for glob in list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        // One input description per glob keeps the list's order (most called first);
        // LLVM puts functions it deems cold in `.text.unlikely.*`.
        let _ = writeln!(script, "    *(.text.{glob} .text.unlikely.{glob})");
    }
    script.push_str("  }\n}\nINSERT BEFORE .text;\n");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("hot-text.ld");
    std::fs::write(&out, script).expect("writing hot-text.ld");
    println!("cargo::rustc-link-arg-bin=vipd=-Wl,-T,{}", out.display());
}
