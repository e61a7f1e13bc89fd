//! Loads one configuration file and says what it holds: a target for profilers (the
//! parse alone, without the daemon around it), e.g.
//!
//! `valgrind --tool=callgrind target/release/examples/load_one FILE`
//!
//! `cargo build --release -p vipd-config --example load_one`

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: load_one FILE");
        std::process::exit(2);
    };
    let opts = vipd_config::LoadOptions::default();
    match vipd_config::load_file(std::path::Path::new(&path), &opts) {
        Ok(l) => println!(
            "ok: {} instances, {} virtual servers",
            l.config.instances.len(),
            l.config.virtual_servers.len()
        ),
        Err(d) => {
            println!("{} diagnostics", d.len());
            std::process::exit(1);
        }
    }
}
