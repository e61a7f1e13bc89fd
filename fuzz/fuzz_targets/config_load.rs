//! The keepalived.conf pipeline on arbitrary text: lexer, preprocessor (`include`,
//! `@id` conditionals, `$NAME` parameters), tree, typed model, validation and lints
//! (`vipd_config::load_str`, which runs all `parse_tree` does), and for every config
//! that loads, the dump round trip the corpus test asserts: the dump loads to the same
//! model and is a fixed point.
//!
//! Includes resolve in a private temporary directory holding a few small files (one
//! includes another, one includes itself). Inputs that could name a file outside it
//! (an `include` with `/`, `~` or a `$` parameter in the text) are skipped, so the
//! fuzzer never reads /dev or /proc.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use vipd_config::{load_str, without_spans, LoadOptions};

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("vipd-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        let files = [
            (
                "vi.conf",
                "vrrp_instance VI_1 {\n state BACKUP\n interface lo\n virtual_router_id 51\n \
                 priority 100\n advert_int 1\n virtual_ipaddress {\n  192.0.2.100/24\n }\n}\n",
            ),
            (
                "globals.conf",
                "global_defs {\n router_id fuzz\n}\ninclude vi.conf\n",
            ),
            ("loop.conf", "include loop.conf\n"),
            ("empty.conf", ""),
        ];
        for (name, text) in files {
            std::fs::write(d.join(name), text).expect("include file");
        }
        d
    })
}

/// A signal stack for the fuzzing thread, so that a stack overflow in the code under
/// test is reported with its input like any crash. Without it libFuzzer's SIGSEGV
/// handler runs on the overflowed stack, faults again and the process dies silently
/// (status 139, no artifact) — which is how one long run ended. libFuzzer keeps
/// `SA_ONSTACK` only if the handler it replaces had it, hence the default handler
/// re-installed with that flag before libFuzzer installs its own (`init` runs first).
fn crash_reports_survive_stack_overflow() {
    const SIZE: usize = 1 << 20;
    let stack: &'static mut [u8] = Vec::leak(vec![0u8; SIZE]);
    let ss = libc::stack_t {
        ss_sp: stack.as_mut_ptr().cast(),
        ss_flags: 0,
        ss_size: SIZE,
    };
    // SAFETY: the stack is leaked (lives for the process); the action is the default
    // one with flags only; both calls are made before libFuzzer starts fuzzing.
    unsafe {
        assert_eq!(libc::sigaltstack(&ss, std::ptr::null_mut()), 0);
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        assert_eq!(libc::sigaction(libc::SIGSEGV, &sa, std::ptr::null_mut()), 0);
    }
}

fuzz_target!(init: crash_reports_survive_stack_overflow(), |data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.contains("include") && text.contains(['/', '~', '$']) {
        return;
    }
    let opts = LoadOptions {
        config_id: Some("fuzz".into()),
        check_interfaces: false,
        keep_tree: true,
    };
    let path = dir().join("keepalived.conf");
    // `load_str` runs everything `parse_tree` does (preprocessor, tree, diagnostics'
    // snippets) before the typed model; calling both cost a second preprocessing pass.
    let Ok(loaded) = load_str(text, &path, &opts) else {
        return;
    };
    let dump = loaded.dump().expect("loaded with keep_tree");
    let again = load_str(&dump, &dir().join("dump.conf"), &opts)
        .unwrap_or_else(|e| panic!("dump does not load: {e:?}\n--- dump ---\n{dump}"));
    assert_eq!(
        without_spans(&loaded.config),
        without_spans(&again.config),
        "dump changes the model\n--- dump ---\n{dump}"
    );
    assert_eq!(again.dump(), Some(dump), "dump is not a fixed point");
});
