//! Runs the `config_load` fuzz target's body (fuzz/fuzz_targets/config_load.rs: tree,
//! load, dump round trip) over a corpus directory or file without libFuzzer's
//! instrumentation, for profiling what a fuzz input costs:
//!
//! `cargo build --release -p vipd-config --example replay_corpus`
//! `valgrind --tool=callgrind target/release/examples/replay_corpus fuzz/corpus/config_load`
//!
//! Prints the time per input and the slowest inputs. Inputs the target skips (not
//! UTF-8; an `include` together with `/`, `~` or `$`) are skipped here too. Includes
//! resolve against /nonexistent, so they read nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vipd_config::{load_str, without_spans, LoadOptions};

fn one(text: &str) {
    let opts = LoadOptions {
        config_id: Some("fuzz".into()),
        check_interfaces: false,
        keep_tree: true,
    };
    let path = Path::new("/nonexistent/keepalived.conf");
    let Ok(loaded) = load_str(text, path, &opts) else {
        return;
    };
    let dump = loaded.dump().expect("loaded with keep_tree");
    let again = load_str(&dump, Path::new("/nonexistent/dump.conf"), &opts)
        .unwrap_or_else(|e| panic!("dump does not load: {e:?}"));
    assert_eq!(without_spans(&loaded.config), without_spans(&again.config));
    assert_eq!(again.dump(), Some(dump));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next().map(PathBuf::from) else {
        eprintln!("usage: replay_corpus DIR|FILE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: u32 = args.next().map_or(1, |r| r.parse().expect("ROUNDS"));
    let files: Vec<PathBuf> = if target.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(&target)
            .expect("read corpus")
            .map(|e| e.expect("entry").path())
            .collect();
        f.sort();
        f
    } else {
        vec![target]
    };
    let inputs: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter_map(|f| {
            let text = String::from_utf8(std::fs::read(&f).ok()?).ok()?;
            let skipped = text.contains("include") && text.contains(['/', '~', '$']);
            (!skipped).then_some((f, text))
        })
        .collect();
    if inputs.is_empty() {
        eprintln!("no inputs");
        return;
    }
    let mut times = vec![Duration::ZERO; inputs.len()];
    let start = Instant::now();
    for _ in 0..rounds {
        for (i, (_, text)) in inputs.iter().enumerate() {
            let t = Instant::now();
            one(text);
            times[i] += t.elapsed();
        }
    }
    let total = start.elapsed();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(times[i]));
    for &i in order.iter().take(5) {
        eprintln!(
            "{:?} ({:.1}%) {} bytes {}",
            times[i] / rounds,
            100.0 * times[i].as_secs_f64() / total.as_secs_f64(),
            inputs[i].1.len(),
            inputs[i].0.display()
        );
    }
    eprintln!(
        "{} inputs, {:?} per input",
        inputs.len(),
        total / (rounds * inputs.len() as u32)
    );
}
