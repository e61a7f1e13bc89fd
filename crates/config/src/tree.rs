//! Generic keyword tree: each node is `keyword args...` with an optional `{ ... }` block.

use crate::diagnostic::Diags;
use crate::lexer::{Token, TokenKind};
use crate::model::Span;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub keyword: Token,
    /// Exactly sized lists (a large config has a hundred thousand nodes).
    pub args: Box<[Token]>,
    /// `Some` when the node is followed by a `{ ... }` block (possibly empty).
    pub children: Option<Box<[Node]>>,
    /// The `{` that opened `children`, for diagnostics about the block itself (boxed:
    /// most nodes have none, and a node is a large config's commonest value).
    pub open_brace: Option<Box<Token>>,
}

impl Node {
    fn new(keyword: Token, args: Box<[Token]>) -> Self {
        Node {
            keyword,
            args,
            children: None,
            open_brace: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.keyword.text
    }

    /// Where the node starts: its keyword (not a field of its own, a large config has
    /// a hundred thousand nodes).
    pub fn span(&self) -> &Span {
        &self.keyword.span
    }
}

struct Frame {
    /// Node owning this block; `None` for the root and for stray `{`.
    owner: Option<Node>,
    open: Option<Token>,
    nodes: Vec<Node>,
    /// The last node ended its line without a block, so a `{` starting the next line
    /// belongs to it.
    may_take_block: bool,
}

impl Frame {
    fn new(owner: Option<Node>, open: Option<Token>, nodes: Vec<Node>) -> Self {
        Frame {
            owner,
            open,
            nodes,
            may_take_block: false,
        }
    }
}

/// Blocks nested deeper than this are an error and their contents are dropped.
/// keepalived's deepest real nesting is 4 (`virtual_server` > `real_server` >
/// `HTTP_GET` > `url`); the limit keeps every recursive walk of the tree (and its
/// drop) shallow: parameter expansion can turn a 4 kB file into tens of thousands of
/// unclosed `{`, which overflowed the stack when the tree was dropped (found by
/// fuzzing).
pub(crate) const MAX_NESTING: usize = 64;

/// Builds the tree from logical lines, one line at a time as the preprocessor makes
/// them (so a large file's lines are never all held as tokens beside the tree). Brace
/// errors are reported and recovered from so that later findings still show up.
pub(crate) struct Builder {
    stack: Vec<Frame>,
    /// Emptied node lists of closed blocks, reused by the next ones: a block's nodes are
    /// gathered in one of these and copied once into its exactly sized slice, instead of
    /// growing a fresh list two or three times and shrinking it (a reload's file has
    /// 40,000 blocks).
    spare: Vec<Vec<Node>>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            stack: vec![Frame::new(None, None, Vec::new())],
            spare: Vec::new(),
        }
    }
}

impl Builder {
    pub(crate) fn line(&mut self, line: Vec<Token>, diags: &mut Diags) {
        let stack = &mut self.stack;
        let mut current: Option<Node> = None;
        let mut at_line_start = true;
        let mut rest = line.into_iter();
        while let Some(tok) = rest.next() {
            match tok.kind {
                TokenKind::Word => {
                    // The keyword's arguments: the words that follow on this line, up
                    // to a brace (so a word never follows a node still being built).
                    let n_args = rest.as_slice().iter().take_while(|t| t.is_word()).count();
                    let args = rest.by_ref().take(n_args).collect();
                    if let Some(prev) = current.replace(Node::new(tok, args)) {
                        stack.last_mut().expect("root frame").nodes.push(prev);
                    }
                }
                TokenKind::Open => {
                    let top = stack.last_mut().expect("root frame");
                    let owner = match current.take() {
                        Some(n) => Some(n),
                        None if at_line_start && top.may_take_block => top.nodes.pop(),
                        None => {
                            diags.error_help(
                                &tok,
                                "unexpected `{`",
                                "a block must follow a keyword, e.g. `vrrp_instance NAME {`",
                            );
                            None
                        }
                    };
                    top.may_take_block = false;
                    // stack[0] is the root: stack.len() - 1 blocks are open.
                    let owner = if stack.len() <= MAX_NESTING {
                        owner
                    } else {
                        if stack.len() == MAX_NESTING + 1 {
                            diags.error_help(
                                &tok,
                                format!("blocks nested more than {MAX_NESTING} deep"),
                                "this block and the ones inside it are ignored",
                            );
                        }
                        None
                    };
                    let nodes = self.spare.pop().unwrap_or_default();
                    stack.push(Frame::new(owner, Some(tok), nodes));
                }
                TokenKind::Close => {
                    if let Some(n) = current.take() {
                        stack.last_mut().expect("root frame").nodes.push(n);
                    }
                    if stack.len() == 1 {
                        diags.error(&tok, "unmatched `}`");
                    } else {
                        close_frame(stack, &mut self.spare);
                    }
                }
            }
            at_line_start = false;
        }
        let top = stack.last_mut().expect("root frame");
        top.may_take_block = current.is_some();
        if let Some(n) = current {
            top.nodes.push(n);
        }
    }

    /// The top-level blocks finished so far (taken): all but one that ended its line
    /// without a block, which a `{` starting the next line still belongs to.
    pub(crate) fn take_complete(&mut self) -> std::vec::Drain<'_, Node> {
        // With a block open, the root's last node is complete (a `{` cleared the flag).
        let root = &mut self.stack[0];
        let mut done = root.nodes.len();
        if root.may_take_block {
            done = done.saturating_sub(1);
        }
        root.nodes.drain(..done)
    }

    /// The top-level nodes, once every line is in; blocks still open are reported.
    pub(crate) fn finish(mut self, diags: &mut Diags) -> Vec<Node> {
        let stack = &mut self.stack;
        while stack.len() > 1 {
            let frame = stack.last().expect("non-root frame");
            if let Some(open) = &frame.open {
                diags.error_help(open, "unclosed `{`", "add the matching `}`");
            }
            close_frame(stack, &mut self.spare);
        }
        let mut nodes = stack.pop().map(|f| f.nodes).unwrap_or_default();
        nodes.shrink_to_fit();
        nodes
    }
}

fn close_frame(stack: &mut Vec<Frame>, spare: &mut Vec<Vec<Node>>) {
    let mut frame = stack.pop().expect("non-root frame");
    let parent = stack.last_mut().expect("root frame");
    parent.may_take_block = false;
    // Without an owner (a stray `{`, already reported) the block's contents are dropped.
    if let Some(mut owner) = frame.owner {
        owner.children = Some(frame.nodes.drain(..).collect());
        owner.open_brace = frame.open.map(Box::new);
        parent.nodes.push(owner);
    }
    frame.nodes.clear();
    spare.push(frame.nodes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceMap;
    use crate::preprocess::Preprocessor;
    use std::path::Path;

    fn parse(text: &str) -> (Vec<Node>, Vec<crate::Diagnostic>) {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let nodes =
            Preprocessor::with_sink("x".into(), &mut diags, &mut sources, Builder::default())
                .run(Path::new("t.conf"), text)
                .finish(&mut diags);
        (nodes, diags.list)
    }

    /// Compact S-expression-ish rendering for assertions.
    fn show(nodes: &[Node]) -> String {
        nodes
            .iter()
            .map(|n| {
                let mut s = n.keyword.text.to_string();
                for a in &n.args {
                    s.push(' ');
                    s.push_str(&a.text);
                }
                if let Some(c) = &n.children {
                    s.push_str(&format!(" {{{}}}", show(c)));
                }
                s
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Argument and child lists are boxed slices (no spare capacity: a large config has
    /// a hundred thousand nodes), the top-level list too; every word after a keyword up
    /// to a brace or the line end is an argument, whatever follows.
    #[test]
    fn lists_are_exactly_sized() {
        let (nodes, diags) = parse("a x y {\n b c\n d\n e f g h i\n}\nk { l } m n\no p{q r}s t\n");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(nodes.capacity(), nodes.len());
        assert_eq!(
            show(&nodes),
            "a x y {b c; d; e f g h i}; k {l}; m n; o p {q r}; s t"
        );
    }

    /// Every token of a file shares one allocation of its path (a large config has
    /// hundreds of thousands of tokens); equal paths still compare equal.
    #[test]
    fn tokens_of_a_file_share_its_path() {
        let (nodes, diags) = parse("a {\n b c\n}\nd e\n");
        assert!(diags.is_empty(), "{diags:?}");
        let kids = nodes[0].children.as_ref().unwrap();
        let spans = [
            &nodes[0].keyword.span,
            nodes[0].span(),
            &kids[0].keyword.span,
            &kids[0].args[0].span,
            &nodes[1].args[0].span,
        ];
        for s in spans {
            assert!(std::sync::Arc::ptr_eq(&s.file, &nodes[0].keyword.span.file));
            assert_eq!(&*s.file, Path::new("t.conf"));
        }
        let (other, _) = parse("a\n");
        assert_eq!(other[0].keyword.span.file, nodes[0].keyword.span.file);
    }

    #[test]
    fn braces_on_same_or_next_line() {
        let (n, d) = parse("a X {\n  b 1\n}\nc Y\n{\n  d\n}\n");
        assert!(d.is_empty());
        assert_eq!(show(&n), "a X {b 1}; c Y {d}");
        assert_eq!(n[1].span().line, 4);
        assert_eq!(n[1].open_brace.as_ref().unwrap().span.line, 5);
    }

    #[test]
    fn one_line_blocks_and_trailing_close() {
        let (n, d) = parse("v { 1.2.3.4/24 5.6.7.8 }\nw{\n x\n y }\nz {}\n");
        assert!(d.is_empty());
        assert_eq!(show(&n), "v {1.2.3.4/24 5.6.7.8}; w {x; y}; z {}");
    }

    #[test]
    fn glued_braces_and_nesting() {
        let (n, d) = parse("top{inner{leaf 1}}\nnext\n");
        assert!(d.is_empty());
        assert_eq!(show(&n), "top {inner {leaf 1}}; next");
    }

    #[test]
    fn next_line_brace_needs_a_plain_preceding_line() {
        let (_, d) = parse("a {\n}\n{\n}\n");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].message, "unexpected `{`");
        assert_eq!((d[0].span.line, d[0].span.col), (3, 1));
    }

    #[test]
    fn blocks_nested_too_deep_are_reported_once_and_dropped() {
        let depth = super::MAX_NESTING + 1000;
        let text = "a {\n".repeat(depth) + &"}\n".repeat(depth) + "b\n";
        let (n, d) = parse(&text);
        let found: Vec<_> = d
            .iter()
            .map(|d| (d.message.as_str(), d.span.line))
            .collect();
        assert_eq!(found, vec![("blocks nested more than 64 deep", 65)]);
        fn height(nodes: &[Node]) -> usize {
            nodes
                .iter()
                .map(|n| 1 + n.children.as_deref().map_or(0, height))
                .max()
                .unwrap_or(0)
        }
        assert_eq!(height(&n), super::MAX_NESTING);
        assert_eq!(n.last().map(Node::name), Some("b"));
        // Unclosed: the same limit, and one "unclosed" per open block is still said.
        let (n, d) = parse(&"a {\n".repeat(depth));
        assert_eq!(height(&n), super::MAX_NESTING);
        assert_eq!(
            d.iter()
                .filter(|d| d.message.starts_with("blocks nested"))
                .count(),
            1
        );
    }

    #[test]
    fn unmatched_and_unclosed_braces() {
        let (n, d) = parse("a 1\n}\nb {\n c\n");
        let found: Vec<_> = d
            .iter()
            .map(|d| (d.message.as_str(), d.span.line, d.span.col))
            .collect();
        assert_eq!(found, vec![("unmatched `}`", 2, 1), ("unclosed `{`", 3, 3)]);
        // Recovery keeps the block content.
        assert_eq!(show(&n), "a 1; b {c}");
    }

    /// The builder hands over each top-level block as soon as it is closed (so the
    /// whole tree is never held), except a keyword that ended its line without a
    /// block: a `{` on the next line still belongs to it.
    #[test]
    fn top_level_blocks_are_handed_over_once_closed() {
        use crate::lexer::scan;
        let mut diags = Diags::default();
        let mut b = Builder::default();
        let mut feed = |b: &mut Builder, text: &str| {
            let raw = scan(text, false).unwrap().tokens;
            let file: std::sync::Arc<Path> = Path::new("t.conf").into();
            let line = (raw.into_iter())
                .map(|r| Token {
                    kind: r.kind,
                    text: r.text,
                    quoted: r.quoted,
                    span: Span {
                        file: file.clone(),
                        line: 1,
                        col: 1,
                    },
                    len: 1,
                    include_chain: Default::default(),
                })
                .collect();
            b.line(line, &mut diags);
            let done: Vec<Node> = b.take_complete().collect();
            show(&done)
        };
        assert_eq!(feed(&mut b, "global_defs {"), "");
        assert_eq!(feed(&mut b, "router_id r1"), "");
        assert_eq!(feed(&mut b, "}"), "global_defs {router_id r1}");
        // Might still take a block from the next line.
        assert_eq!(feed(&mut b, "vrrp_instance VI_1"), "");
        assert_eq!(feed(&mut b, "{"), "");
        assert_eq!(
            feed(&mut b, "interface eth0 }"),
            "vrrp_instance VI_1 {interface eth0}"
        );
        assert_eq!(feed(&mut b, "net_namespace_ipvs x"), "");
        assert_eq!(
            feed(&mut b, "vrrp_script s { }"),
            "net_namespace_ipvs x; vrrp_script s {}"
        );
        assert_eq!(feed(&mut b, "a 1"), "");
        assert_eq!(show(&b.finish(&mut diags)), "a 1");
        assert!(diags.list.is_empty(), "{:?}", diags.list);
    }
}
