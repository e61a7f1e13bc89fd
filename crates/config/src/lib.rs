//! keepalived.conf parser for vipd.
//!
//! Pipeline: [`lexer`] (tokens with exact positions) → `preprocess` (`include`, `@id`
//! conditionals, `$NAME` parameters) → [`tree`] (generic keyword/argument/block nodes) →
//! `typed` (the [`model`]) → `validate` (cross-field rules). Lines stream through: each
//! top-level block is mapped and dropped once closed, so the whole tree is never held.
//!
//! Deviation from keepalived: keywords it knows but vipd does not implement, and unknown
//! keywords, are errors rather than warnings, so a config never half-applies silently.

mod blocks;
mod diagnostic;
pub mod dump;
mod fingerprint;
mod iproute;
mod keywords;
pub mod lexer;
mod lints;
pub mod model;
mod preprocess;
mod routes;
mod schema;
pub mod tree;
mod typed;
mod validate;
mod value;

use std::fs;
use std::path::Path;

pub use diagnostic::{Diagnostic, Severity, INACTIVE};
use diagnostic::{Diags, SourceMap};
pub use lexer::{Token, TokenKind, TokenText};
pub use lints::{cross_node, host_addresses, CROSS_NODE};
pub use model::*;
pub use tree::Node;
pub use value::{parse_agentx_address, parse_smtp_server, parse_umask, AgentxAddress};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Selects `@ID` conditional lines; `None` = short host name (like keepalived's `-i`).
    pub config_id: Option<String>,
    /// Warn about interfaces missing from /sys/class/net (off for tests on other hosts).
    pub check_interfaces: bool,
    /// Keep the preprocessed tree in [`Loaded::tree`] (for [`Loaded::dump`]); off, it
    /// is dropped while it is mapped (a large file's tree is ten megabytes and more).
    pub keep_tree: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            config_id: None,
            check_interfaces: true,
            keep_tree: false,
        }
    }
}

/// A successfully loaded configuration and its warnings.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// Warnings only; errors make loading fail.
    pub diagnostics: Vec<Diagnostic>,
    /// The preprocessed tree (includes, conditionals and parameters resolved), if
    /// [`LoadOptions::keep_tree`] asked for it.
    pub tree: Option<Vec<Node>>,
    /// Every file read (the main file first, then each included file once, in reading
    /// order), with its text exactly as read: what `config_save_dir` keeps.
    pub files: Vec<SourceFile>,
}

/// One configuration file as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: std::path::PathBuf,
    pub text: String,
}

impl Loaded {
    /// Warnings about keywords that are parsed but not acted on by the runtime yet.
    pub fn inactive(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_inactive())
    }

    /// The fully expanded, normalised configuration text (see [`dump`]); `None` unless
    /// loaded with [`LoadOptions::keep_tree`].
    pub fn dump(&self) -> Option<String> {
        self.tree.as_deref().map(dump::dump)
    }
}

/// Any part of the model as JSON with every `span` removed: equal values mean the same
/// configuration wherever it was written (reload comparisons, dump round trips).
pub fn without_spans<T: serde::Serialize>(v: &T) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("span");
                m.values_mut().for_each(strip);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(v).unwrap_or_default();
    strip(&mut v);
    v
}

/// A 128-bit fingerprint of `v` as [`without_spans`] sees it, taken straight from the
/// serializer ([`fingerprint`]): no JSON tree or text is built (a configuration with
/// 40,000 real servers is hundreds of MB of it). Equal values give equal fingerprints
/// wherever they were written; a `span` counts as a unit value instead of being left
/// out, which changes nothing for comparisons.
pub fn fingerprint_without_spans<T: serde::Serialize>(v: &T) -> u128 {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            model::SPANS_HIDDEN.with(|h| h.set(self.0));
        }
    }
    let _restore = Restore(model::SPANS_HIDDEN.with(|h| h.replace(true)));
    fingerprint::of(v)
}

/// keepalived's default config id: the host name up to its first `.`.
pub fn default_config_id() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .and_then(|h| h.trim().split('.').next().map(str::to_owned))
        .filter(|h| !h.is_empty())
        .unwrap_or_default()
}

/// Loads and validates a config file (with its includes).
///
/// `Err` holds every error found plus the warnings, sorted by file (in reading order),
/// line and column.
pub fn load_file(path: &Path, opts: &LoadOptions) -> Result<Loaded, Vec<Diagnostic>> {
    match fs::read_to_string(path) {
        Ok(text) => load(text, path, opts),
        Err(e) => Err(vec![Diagnostic::file_error(
            format!("cannot read configuration file: {e}"),
            path.to_path_buf(),
        )]),
    }
}

/// Like [`load_file`] for text already in memory; `virtual_path` names it in diagnostics
/// and anchors relative `include`s.
pub fn load_str(
    text: &str,
    virtual_path: &Path,
    opts: &LoadOptions,
) -> Result<Loaded, Vec<Diagnostic>> {
    load(text.to_owned(), virtual_path, opts)
}

/// Parses into the generic tree only (after preprocessing), for tools and later stages.
pub fn parse_tree(
    text: &str,
    virtual_path: &Path,
    opts: &LoadOptions,
) -> (Vec<Node>, Vec<Diagnostic>) {
    let mut diags = Diags::default();
    let mut sources = SourceMap::default();
    let id = opts.config_id.clone().unwrap_or_else(default_config_id);
    let nodes =
        preprocess::Preprocessor::with_sink(id, &mut diags, &mut sources, tree::Builder::default())
            .run_owned(virtual_path, text.to_owned())
            .finish(&mut diags);
    sources.sort(&mut diags.list);
    sources.attach_snippets(&mut diags.list);
    (nodes, diags.list)
}

/// The stages after the preprocessor, fed one top-level block at a time: its lints that
/// read the tree, its mapping into the model, and then it is dropped (kept only for
/// [`LoadOptions::keep_tree`]). A large file's whole tree is never held: it would be
/// ten megabytes and more beside the model.
struct Blocks {
    lints: lints::TreeLints,
    mapping: typed::Mapping,
    kept: Option<Vec<Node>>,
    /// The iproute2 directories come from the whole file ([`iproute::IprouteNames::from_tree`]),
    /// not from the `global_defs` seen so far.
    whole_file_names: bool,
    /// A `global_defs` changed the iproute2 directories after a block before it looked
    /// names up in the old ones: the file must be mapped again, whole.
    remap: bool,
}

impl Blocks {
    fn new(names: Option<iproute::IprouteNames>, keep_tree: bool) -> Self {
        Blocks {
            lints: lints::TreeLints::default(),
            whole_file_names: names.is_some(),
            mapping: typed::Mapping::new(
                names.unwrap_or_else(|| iproute::IprouteNames::from_tree(&[])),
            ),
            kept: keep_tree.then(Vec::new),
            remap: false,
        }
    }

    fn node(&mut self, n: Node, diags: &mut Diags) {
        if n.name() == "global_defs" && !self.whole_file_names {
            self.remap |= !self.mapping.names.global_defs(&n);
        }
        self.lints.node(&n, diags);
        self.mapping.node(&n, diags);
        if let Some(kept) = &mut self.kept {
            kept.push(n.clone());
        }
        self.lints.keep(n);
    }
}

/// The tree builder feeding [`Blocks`] each top-level block as it is closed.
struct Streaming {
    builder: tree::Builder,
    blocks: Blocks,
}

impl preprocess::LineSink for Streaming {
    fn line(&mut self, tokens: Vec<Token>, diags: &mut Diags) {
        self.builder.line(tokens, diags);
        for n in self.builder.take_complete() {
            self.blocks.node(n, diags);
        }
    }
}

fn load(text: String, path: &Path, opts: &LoadOptions) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diags = Diags::default();
    let mut sources = SourceMap::default();
    let id = opts.config_id.clone().unwrap_or_else(default_config_id);
    let sink = Streaming {
        builder: tree::Builder::default(),
        blocks: Blocks::new(None, opts.keep_tree),
    };
    let Streaming {
        builder,
        mut blocks,
    } = preprocess::Preprocessor::with_sink(id.clone(), &mut diags, &mut sources, sink)
        .run_owned(path, text);
    for n in builder.finish(&mut diags) {
        blocks.node(n, &mut diags);
    }
    if blocks.remap {
        // Rare: `iproute_etc_dir` / `iproute_usr_dir` after a route that named a table
        // (or scope, or group). Mapped again with the whole tree: the main file's text
        // as it was read, its includes read again.
        let text = (sources.into_texts().into_iter().next()).map_or_else(String::new, |(_, t)| t);
        diags = Diags::default();
        sources = SourceMap::default();
        let nodes = preprocess::Preprocessor::with_sink(
            id,
            &mut diags,
            &mut sources,
            tree::Builder::default(),
        )
        .run_owned(path, text)
        .finish(&mut diags);
        blocks = Blocks::new(
            Some(iproute::IprouteNames::from_tree(&nodes)),
            opts.keep_tree,
        );
        for n in nodes {
            blocks.node(n, &mut diags);
        }
    }
    let Blocks {
        lints,
        mapping,
        kept,
        ..
    } = blocks;
    let facts = lints.finish(&mut diags);
    let (mut config, metas) = mapping.finish(&mut diags);
    validate::validate(&config, &metas, opts, &mut diags);
    lints::lint(&config, &metas, &facts, opts, &mut diags);
    // Where each instance's fields were written is not needed past the checks.
    drop(metas);
    // keepalived ignores a virtual server without real servers (the lint says so).
    config
        .virtual_servers
        .retain(|vs| !vs.real_servers.is_empty());
    sources.sort(&mut diags.list);
    sources.attach_snippets(&mut diags.list);
    sources.attach_chains(&mut diags.list);
    if diags.has_errors() {
        Err(diags.list)
    } else {
        Ok(Loaded {
            config,
            diagnostics: diags.list,
            tree: kept,
            files: sources
                .into_texts()
                .into_iter()
                .map(|(path, text)| SourceFile { path, text })
                .collect(),
        })
    }
}
