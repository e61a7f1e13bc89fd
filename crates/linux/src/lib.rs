//! vipd's Linux runtime: the I/O around the sans-IO engine of `vipd-vrrp`.
//!
//! Its modules read config → plan → owners. Each layer imports only from the layers
//! above it (`layers` test below keeps it so; running programs and thread tuning are
//! in the `vipd-exec` crate):
//!
//! 1. Vocabulary, importing nothing of the crate: [`iface`], [`routes`], [`track`]
//!    (tracking rules, the tracker's plan types, [`track::VerdictSink`]), [`packet`],
//!    [`socket`], [`sockhealth`] (what a failing VRRP socket leads to, pure), [`pacing`]
//!    (GARP/NA pacing: `garp_group` lanes and their queues).
//! 2. Kernel requests and the published picture: [`netlink`] (iface, routes),
//!    [`status`] (netlink).
//! 3. [`plan`] (iface, netlink, pacing, routes, track): keepalived.conf model + host facts →
//!    what to run, pure.
//! 4. Owners, each of a thread or of kernel objects: [`links`] (the VMACs a plan asks
//!    for; plan, netlink), [`addresses`] (VIPs, static routes; netlink, routes),
//!    [`notifier`] (plan), [`mail`], [`tracker`] (track, status, linkwatch),
//!    [`linkwatch`] (reports to a callback; netlink), [`realserver`] (netlink), [`control`]
//!    (the socket that serves status to `vipd status`; status), [`metrics`] (status),
//!    [`bfd`] (the BFD thread: `bfd_instance` sessions; plan, status).
//! 5. [`runtime`]: the protocol thread (engine, VRRP sockets, GARP/NA); starts the
//!    owners and wires them (tracker → protocol thread through a
//!    [`track::VerdictSink`], link watcher and BFD thread → tracker through callbacks).

pub mod addresses;
pub mod bfd;
pub mod control;
pub mod iface;
pub mod links;
pub mod linkwatch;
pub mod mail;
pub mod metrics;
pub mod netlink;
pub mod notifier;
pub mod pacing;
pub mod packet;
pub mod plan;
pub mod realserver;
pub mod routes;
pub mod runtime;
pub mod socket;
pub mod sockhealth;
pub mod status;
pub mod track;
pub mod tracker;

/// Re-exported for the daemon's READY/RELOADING/STOPPING/WATCHDOG notifications.
pub use sd_notify;

#[cfg(test)]
mod layers {
    //! The module graph: a module depends on every module its code names as
    //! `crate::m` (or `use crate::{m, …}`), comments left out, tests included.
    use std::collections::{BTreeMap, BTreeSet};

    type Graph = BTreeMap<String, BTreeSet<String>>;

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// The modules named by `text` (`crate::` already removed from its start).
    fn named(text: &str, into: &mut BTreeSet<String>) {
        let Some(group) = text.strip_prefix('{') else {
            into.insert(text.chars().take_while(|&c| is_ident(c)).collect());
            return;
        };
        // `{a, b::{C, D}, e}`: the first word of each top-level item.
        let (mut depth, mut item_start) = (0, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => return,
                '}' => depth -= 1,
                ',' if depth == 0 => item_start = true,
                c if item_start && is_ident(c) => {
                    into.insert(group[i..].chars().take_while(|&c| is_ident(c)).collect());
                    item_start = false;
                }
                _ => {}
            }
        }
    }

    fn graph() -> Graph {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut sources = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                sources.insert(name, code.join("\n"));
            }
        }
        let modules: BTreeSet<String> = sources.keys().cloned().collect();
        sources
            .iter()
            .map(|(module, code)| {
                let mut deps = BTreeSet::new();
                for (i, _) in code.match_indices("crate::") {
                    if !code[..i].ends_with(|c: char| is_ident(c) || c == '$') {
                        named(&code[i + "crate::".len()..], &mut deps);
                    }
                }
                deps.retain(|d| d != module && modules.contains(d));
                (module.clone(), deps)
            })
            .collect()
    }

    /// A cycle through `at`, if there is one: the modules on it, `at` first and last.
    fn cycle(
        g: &Graph,
        at: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == at) {
            let mut c = path[start..].to_vec();
            c.push(at.to_string());
            return Some(c);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in &g[at] {
            if let Some(c) = cycle(g, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }

    fn reach(g: &Graph, from: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for d in &g[&m] {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }

    #[test]
    fn parsing_finds_imports() {
        let mut found = BTreeSet::new();
        named("{plan::{Plan, Vmac}, track, x::y}; use z", &mut found);
        assert_eq!(
            found,
            BTreeSet::from(["plan".into(), "track".into(), "x".into()])
        );
        let g = graph();
        // The parser sees real edges (an empty graph would be acyclic too).
        assert!(g["runtime"].contains("tracker") && g["runtime"].contains("plan"));
        assert!(g["tracker"].contains("track") && g["links"].contains("plan"));
    }

    #[test]
    fn module_graph_is_acyclic() {
        let g = graph();
        let mut done = BTreeSet::new();
        for m in g.keys() {
            if let Some(c) = cycle(&g, m, &mut Vec::new(), &mut done) {
                panic!("import cycle in vipd-linux: {}", c.join(" → "));
            }
        }
    }

    #[test]
    fn plan_imports_no_owner() {
        let g = graph();
        let vocabulary = ["iface", "netlink", "pacing", "routes", "track"].map(String::from);
        let extra: Vec<_> = reach(&g, "plan")
            .into_iter()
            .filter(|m| !vocabulary.contains(m))
            .collect();
        assert!(extra.is_empty(), "plan reaches {extra:?}");
    }

    #[test]
    fn crate_doc_places_every_module() {
        let lib = include_str!("lib.rs");
        let doc: String = lib.lines().filter(|l| l.starts_with("//!")).collect();
        for m in graph().keys() {
            assert!(
                doc.contains(&format!("[`{m}`]")),
                "the crate doc's layers miss `{m}`"
            );
        }
    }
}
