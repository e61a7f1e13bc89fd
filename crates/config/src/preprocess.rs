//! Line-level preprocessing: `include`, `@id` conditionals, `$NAME` parameters
//! (single-line, multi-line and parameterised) and `~SEQ`/`~SEQx`/`~LST` blocks.
//!
//! Produces the logical lines (non-empty token lists) that the tree builder consumes.
//! Every token keeps the position it was written at, even after substitution.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Diags, Severity, SourceMap};
use crate::lexer::{place, scan, Token, TokenKind};
use crate::model::Span;

/// Substitutions allowed on one token before assuming a self-referencing definition.
const MAX_SUBSTITUTIONS: usize = 1000;
/// Nesting of multi-line parameters and sequence blocks before assuming a loop.
const MAX_DEPTH: usize = 16;
/// Lines `~SEQ`/`~LST` and multi-line parameters may produce in all (keepalived's own
/// example makes 65,024).
const MAX_GENERATED: usize = 200_000;
/// Text parameter expansion, multi-line parameters and `~SEQ`/`~LST` blocks may
/// generate in all: the line limits alone let 200,000 lines of up to a million
/// characters through, and the lexer holds a line at ~20 bytes a character (a fuzzed
/// 0.5 kB config held 0.9 GB for seconds). 16 MiB is the line limit at 80 characters a
/// line, six times the 77,608-line benchmark configuration.
const MAX_GENERATED_BYTES: usize = 16 << 20;
/// Characters one line may grow to through parameter substitution.
const MAX_EXPANDED_CHARS: usize = 1 << 20;
/// Tokens a whole configuration may expand to: a runaway definition must end in an
/// error, not in the out-of-memory killer (5,000 instances are about 300,000 tokens).
const MAX_TOKENS: usize = 4_000_000;

/// A `$NAME(P1,P2)=...` definition.
#[derive(Debug, Clone)]
struct Macro {
    params: Vec<String>,
    body: String,
}

/// A multi-line definition being collected.
struct Pending {
    name: String,
    params: Option<Vec<String>>,
    lines: Vec<String>,
}

pub(crate) struct Preprocessor<'a, S: LineSink> {
    config_id: String,
    defs: HashMap<String, String>,
    macros: HashMap<String, Macro>,
    pending: Option<Pending>,
    depth: usize,
    generated: usize,
    generated_bytes: usize,
    tokens_out: usize,
    /// Set once a generation limit was reported; further expansion is skipped.
    over_limit: bool,
    random: std::cell::Cell<u64>,
    diags: &'a mut Diags,
    sources: &'a mut SourceMap,
    /// Canonical paths of the files being read, outermost first, for cycle detection.
    stack: Vec<PathBuf>,
    /// Where each finished logical line goes (the tree builder, as it is made).
    out: S,
    /// `include_check`: which include problems are errors ([`INCLUDE_R`] ...); saved
    /// when an included file is opened and restored when it ends, as keepalived does.
    include_check: u8,
}

/// `include_check read`: a match that is not a readable file (a directory) is an error.
const INCLUDE_R: u8 = 1;
/// `match`: a pattern without wildcards that matches no file is an error.
const INCLUDE_M: u8 = 2;
/// `wildcard_match`: a pattern with wildcards that matches no file is an error.
const INCLUDE_W: u8 = 4;
/// `brace_match`: a `{a,b}` alternative that matches no file is an error.
const INCLUDE_B: u8 = 8;
const INCLUDE_ALL: u8 = INCLUDE_R | INCLUDE_M | INCLUDE_W | INCLUDE_B;

/// Takes the preprocessor's logical lines, one at a time, in order.
pub(crate) trait LineSink {
    fn line(&mut self, tokens: Vec<Token>, diags: &mut Diags);
}

impl LineSink for crate::tree::Builder {
    fn line(&mut self, tokens: Vec<Token>, diags: &mut Diags) {
        crate::tree::Builder::line(self, tokens, diags);
    }
}

/// The lines as a list, for tests of the preprocessor on its own.
#[cfg(test)]
impl LineSink for Vec<Vec<Token>> {
    fn line(&mut self, tokens: Vec<Token>, _: &mut Diags) {
        self.push(tokens);
    }
}

#[cfg(test)]
impl<'a> Preprocessor<'a, Vec<Vec<Token>>> {
    pub fn new(config_id: String, diags: &'a mut Diags, sources: &'a mut SourceMap) -> Self {
        Self::with_sink(config_id, diags, sources, Vec::new())
    }
}

impl<'a, S: LineSink> Preprocessor<'a, S> {
    pub fn with_sink(
        config_id: String,
        diags: &'a mut Diags,
        sources: &'a mut SourceMap,
        out: S,
    ) -> Self {
        Preprocessor {
            config_id,
            defs: HashMap::new(),
            macros: HashMap::new(),
            pending: None,
            depth: 0,
            generated: 0,
            generated_bytes: 0,
            tokens_out: 0,
            over_limit: false,
            random: std::cell::Cell::new(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                    | 1,
            ),
            diags,
            sources,
            stack: Vec::new(),
            out,
            include_check: 0,
        }
    }

    /// Preprocesses the top-level file; `text` is its content.
    #[cfg(test)]
    pub fn run(self, path: &Path, text: &str) -> S {
        self.run_owned(path, text.to_owned())
    }

    /// Like `run`, keeping `text` (not a copy) as the file's text in the source map.
    pub fn run_owned(mut self, path: &Path, text: String) -> S {
        self.stack.push(canonical(path));
        self.process_text(path, text, Arc::from(Vec::new()));
        self.out
    }

    fn process_text(&mut self, path: &Path, text: String, chain: Arc<Vec<Span>>) {
        // The source map keeps the one copy of the text (a large config is megabytes).
        let text = self.sources.add(path.to_path_buf(), text);
        self.sources.set_chain(path, &chain);
        let dir = parent_dir(path);
        // One shared allocation of the path for every token of the file.
        let path: Arc<Path> = Arc::from(path);
        for (idx, line) in text.lines().enumerate() {
            self.process_line(&path, &dir, idx as u32 + 1, line, &chain, None);
        }
        self.finish_pending();
    }

    /// Stores a multi-line definition whose last line ended with `\` at end of file.
    fn finish_pending(&mut self) {
        if let Some(p) = self.pending.take() {
            self.store_definition(p.name, p.params, p.lines.join("\n"));
        }
    }

    fn store_definition(&mut self, name: String, params: Option<Vec<String>>, value: String) {
        match params {
            Some(params) => {
                self.defs.remove(&name);
                self.macros.insert(
                    name,
                    Macro {
                        params,
                        body: value,
                    },
                );
            }
            None => {
                self.macros.remove(&name);
                self.defs.insert(name, value);
            }
        }
    }

    /// Processes one line. `at`: the line was produced by a multi-line parameter or a
    /// sequence block, and its tokens are placed at that token (where it was used).
    fn process_line(
        &mut self,
        path: &Arc<Path>,
        dir: &Path,
        line_no: u32,
        line: &str,
        chain: &Arc<Vec<Span>>,
        at: Option<&Token>,
    ) {
        // Continuation of a multi-line definition: taken verbatim.
        if let Some(p) = &mut self.pending {
            let t = line.trim();
            match t.strip_suffix('\\') {
                Some(part) => p.lines.push(part.trim_end().to_string()),
                None => {
                    p.lines.push(t.to_string());
                    self.finish_pending();
                }
            }
            return;
        }
        let scanned = match scan(line, true) {
            Ok(s) => s,
            Err(e) => {
                let (span, len, chain) = match at {
                    Some(t) => (t.span.clone(), t.len, t.include_chain.to_vec()),
                    None => (
                        Span {
                            file: path.clone(),
                            line: line_no,
                            col: e.at as u32 + 1,
                        },
                        e.len as u32,
                        chain.to_vec(),
                    ),
                };
                self.diags
                    .push(Diagnostic::new(Severity::Error, e.message, span, len).with_chain(chain));
                return;
            }
        };
        let mut scanned = scanned;
        // Where the first two raw tokens start and end (the head is one of them); the
        // raw tokens themselves become the line's tokens (moved, not copied).
        let raw_bounds: [(usize, usize); 2] = std::array::from_fn(|k| {
            scanned
                .tokens
                .get(k)
                .map_or((0, 0), |t| (t.start, t.start + t.len))
        });
        let mut tokens: Vec<Token> = std::mem::take(&mut scanned.tokens)
            .into_iter()
            .map(|t| match at {
                Some(a) => Token {
                    kind: t.kind,
                    text: t.text,
                    quoted: t.quoted,
                    ..a.clone()
                },
                None => place(t, path, line_no, chain),
            })
            .collect();

        // `@id` / `@^id` prefix: keep or drop the rest of the line.
        let mut first = 0;
        if let Some(t) = tokens.first() {
            if is_unquoted_prefix(t, '@') {
                match self.condition(t) {
                    Some(true) => first = 1,
                    _ => return,
                }
            }
        }
        let Some(head) = tokens.get(first).cloned() else {
            return;
        };

        let head_start = raw_bounds[first].0;

        if is_unquoted_prefix(&head, '$') {
            if let Some((name, params, value_start)) = definition(&scanned.chars(), head_start) {
                let value = scanned
                    .text(value_start, scanned.code_end)
                    .trim()
                    .to_string();
                match value.strip_suffix('\\') {
                    Some(part) => {
                        let part = part.trim_end();
                        self.pending = Some(Pending {
                            name,
                            params,
                            lines: if part.is_empty() {
                                Vec::new()
                            } else {
                                vec![part.to_string()]
                            },
                        });
                    }
                    None => self.store_definition(name, params, value),
                }
                return;
            }
        }
        if head.is_word() && !head.quoted && head.text.starts_with('~') {
            for kind in ["~SEQx", "~SEQ", "~LST"] {
                if head.text.starts_with(kind) {
                    self.sequence(
                        kind,
                        &head,
                        &scanned.chars(),
                        head_start,
                        path,
                        dir,
                        line_no,
                        chain,
                        at,
                    );
                    return;
                }
            }
        }

        // A multi-line parameter expands to several lines, each processed in turn. (The
        // code's text is only built for a line with a `$`: most have none.)
        let code = if !scanned.is_plain() && scanned.code_has(head_start, '$') {
            scanned.text(head_start, scanned.code_end)
        } else {
            String::new()
        };
        if !code.is_empty() && self.needs_line_expansion(&code, dir) {
            match self.expand_once(&code, dir) {
                Ok(expanded) => {
                    if self.depth >= MAX_DEPTH {
                        return self.diags.error(
                            &head,
                            "multi-line parameters nest too deeply (is one defined in terms of itself?)",
                        );
                    }
                    // The per-token limit below does not see these lines whole.
                    if expanded.split('\n').any(|l| {
                        l.len() > MAX_EXPANDED_CHARS && l.chars().count() > MAX_EXPANDED_CHARS
                    }) {
                        return self.diags.error(
                            &head,
                            format!(
                                "parameter expansion makes a line longer than {MAX_EXPANDED_CHARS} characters"
                            ),
                        );
                    }
                    let anchor = at.cloned().unwrap_or_else(|| head.clone());
                    self.generated += expanded.matches('\n').count() + 1;
                    self.generated_bytes += expanded.len();
                    if let Some(what) = self.generation_limit() {
                        return self.limit_reached(
                            &head,
                            format!("parameter expansion generates more than {what}"),
                        );
                    }
                    self.depth += 1;
                    for l in expanded.split('\n') {
                        self.process_line(path, dir, line_no, l, chain, Some(&anchor));
                    }
                    self.depth -= 1;
                    self.finish_pending();
                }
                Err(msg) => self.diags.error(&head, msg),
            }
            return;
        }

        // keepalived's include variants add checks to this include only.
        let variant = match head.text.as_str() {
            "include" => Some(0),
            "includer" => Some(INCLUDE_R),
            "includem" => Some(INCLUDE_R | INCLUDE_M),
            "includew" => Some(INCLUDE_R | INCLUDE_W),
            "includeb" => Some(INCLUDE_R | INCLUDE_B),
            "includea" => Some(INCLUDE_ALL),
            _ => None,
        };
        if let (Some(extra), true, false) = (variant, head.is_word(), head.quoted) {
            let rest = scanned.text(raw_bounds[first].1, scanned.code_end);
            self.include_line(&head, rest.trim(), dir, chain, extra);
            return;
        }

        let before = self.generated_bytes;
        // (Drained in place: `split_off(0)` would copy the whole line.)
        tokens.drain(..first);
        let mut tokens = if scanned.is_plain() {
            tokens
        } else {
            self.expand_tokens(tokens, dir)
        };
        if self.generated_bytes > before && self.generated_bytes > MAX_GENERATED_BYTES {
            return self.limit_reached(
                &head,
                format!(
                    "parameter expansion generates more than {} MiB of text",
                    MAX_GENERATED_BYTES >> 20
                ),
            );
        }
        // A substituted value may itself start with a condition (`$IF_MAIN=@main`).
        if let Some(t) = tokens.first() {
            if is_unquoted_prefix(t, '@') {
                if self.condition(t) != Some(true) {
                    return;
                }
                tokens.remove(0);
            }
        }
        self.set_include_check(&tokens);
        if !tokens.is_empty() {
            self.tokens_out += tokens.len();
            if self.tokens_out > MAX_TOKENS {
                return self.limit_reached(
                    &tokens[0],
                    format!("the configuration expands to more than {MAX_TOKENS} words; is a definition runaway?"),
                );
            }
            self.out.line(tokens, self.diags);
        }
    }

    /// A limit on what the configuration generates was passed: said once (the first
    /// time, at `at`); what would follow is skipped quietly.
    fn limit_reached(&mut self, at: &Token, message: String) {
        if !self.over_limit {
            self.over_limit = true;
            self.diags.error(at, message);
        }
    }

    /// Which limit on generated text, if any, has been passed.
    fn generation_limit(&self) -> Option<String> {
        if self.generated > MAX_GENERATED {
            Some(format!("{MAX_GENERATED} lines"))
        } else if self.generated_bytes > MAX_GENERATED_BYTES {
            Some(format!("{} MiB of text", MAX_GENERATED_BYTES >> 20))
        } else {
            None
        }
    }

    /// Whether `code` uses a parameterised definition or one spanning several lines;
    /// such lines are expanded as text and re-read line by line.
    fn needs_line_expansion(&self, code: &str, dir: &Path) -> bool {
        let uses_macro = self
            .macros
            .keys()
            .any(|k| code.contains(&format!("${k}(")) || code.contains(&format!("${{{k}(")));
        let multi = self.defs.values().any(|v| v.contains('\n'));
        uses_macro || (multi && self.expand_str(code, dir).is_ok_and(|e| e.contains('\n')))
    }

    /// Substitutes macro uses and multi-line parameters one level deep (their own
    /// `$` references are left for when each resulting line is read, so definitions
    /// inside a multi-line value take effect in order).
    fn expand_once(&self, code: &str, dir: &Path) -> Result<String, String> {
        let chars: Vec<char> = code.chars().collect();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            if let Some((value, end)) = self.macro_use(&chars, i, dir)? {
                out.push_str(&value);
                i = end;
                continue;
            }
            let braced = chars.get(i + 1) == Some(&'{');
            let from = i + 1 + usize::from(braced);
            let len = chars[from..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                .count();
            let name: String = chars[from..from + len].iter().collect();
            let end = from + len + usize::from(braced);
            let well_formed = if braced {
                chars.get(from + len) == Some(&'}')
            } else {
                chars.get(end).is_none_or(|c| c.is_whitespace())
            };
            match self.defs.get(&name) {
                Some(v) if len > 0 && well_formed && v.contains('\n') => {
                    out.push_str(v);
                    i = end;
                }
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// `~SEQ(VAR, [START,] [STEP,] END) rest`, `~SEQx(...)` (hexadecimal values) and
    /// `~LST(VAR, V1, V2, ...)` / `~LST({A, B}, {1, 2}, {3, 4})`: the rest of the line is
    /// processed once per value with `$VAR` defined.
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &mut self,
        kind: &str,
        head: &Token,
        chars: &[char],
        start: usize,
        path: &Arc<Path>,
        dir: &Path,
        line_no: u32,
        chain: &Arc<Vec<Span>>,
        at: Option<&Token>,
    ) {
        let open = start + kind.chars().count();
        if chars.get(open) != Some(&'(') {
            return self.diags.error_help(
                head,
                format!("`{kind}` needs its arguments in parentheses"),
                format!("write e.g. `{kind}(N, 1, 4) ...`"),
            );
        }
        let Some(close) = matching_close(chars, open, "({", ")}") else {
            return self
                .diags
                .error(head, format!("unclosed `(` after `{kind}`"));
        };
        let inner: String = chars[open + 1..close].iter().collect();
        let inner = match self.expand_str(&inner, dir) {
            Ok(i) => i,
            Err(msg) => return self.diags.error(head, msg),
        };
        // The rest of the line keeps its columns: the `~SEQ(...)` part becomes blanks.
        let rest: String = std::iter::repeat_n(' ', close + 1)
            .chain(chars[close + 1..].iter().copied())
            .collect();
        let assignments = match kind {
            "~LST" => list_values(&inner),
            _ => seq_values(&inner, kind == "~SEQx"),
        };
        let assignments = match assignments {
            Ok(a) => a,
            Err(msg) => {
                let help = if kind == "~LST" {
                    "write `~LST(VAR, V1, V2, ...)` or `~LST({A, B}, {1, 2}, {3, 4})`"
                } else {
                    "write `~SEQ(VAR, END)`, `~SEQ(VAR, START, END)` or `~SEQ(VAR, START, STEP, END)`"
                };
                return self
                    .diags
                    .error_help(head, format!("invalid `{kind}`: {msg}"), help);
            }
        };
        self.generated += assignments.len();
        // The rest of the line is read again for each value.
        self.generated_bytes = self
            .generated_bytes
            .saturating_add(rest.len().saturating_mul(assignments.len()));
        let limit = match self.generation_limit() {
            None if self.depth >= MAX_DEPTH => Some(format!("{MAX_GENERATED} lines")),
            limit => limit,
        };
        if let Some(what) = limit {
            return self.limit_reached(head, format!("`{kind}` blocks generate more than {what}"));
        }
        let names: Vec<String> = assignments
            .first()
            .map(|a| a.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default();
        let saved: Vec<Option<String>> = names.iter().map(|n| self.defs.get(n).cloned()).collect();
        self.depth += 1;
        // The body is the same line each time: once one iteration fails, the others
        // would fail the same way (a definition that does not terminate costs up to
        // MAX_EXPANDED_CHARS of work each), so the rest is skipped and said once.
        let total = assignments.len();
        let seen = self.diags.list.len();
        for (i, values) in assignments.into_iter().enumerate() {
            for (name, value) in values {
                self.defs.insert(name, value);
            }
            self.process_line(path, dir, line_no, &rest, chain, at);
            if i + 1 < total && self.diags.list[seen..].iter().any(Diagnostic::is_error) {
                self.diags.warning(
                    head,
                    format!(
                        "`{kind}`: the {} iterations after the first failing one are not expanded",
                        total - i - 1
                    ),
                );
                break;
            }
        }
        self.depth -= 1;
        for (name, old) in names.into_iter().zip(saved) {
            match old {
                Some(v) => self.defs.insert(name, v),
                None => self.defs.remove(&name),
            };
        }
    }

    /// `Some(selected)` for a well-formed `@id` / `@^id`, `None` after reporting an error.
    fn condition(&mut self, tok: &Token) -> Option<bool> {
        let (negate, id) = match tok.text.strip_prefix("@^") {
            Some(id) => (true, id),
            None => (false, &tok.text[1..]),
        };
        if id.is_empty() {
            self.diags.error_help(
                tok,
                "missing config id after `@`",
                "write `@ID line` or `@^ID line` with no space after `@`",
            );
            return None;
        }
        // `@vipd` lines are vipd's own (keepalived skips them unless run with `-i vipd`).
        Some((id == self.config_id || id == "vipd") != negate)
    }

    fn expand_tokens(&mut self, tokens: Vec<Token>, dir: &Path) -> Vec<Token> {
        // Most lines name no parameter: kept as they are, not rebuilt token by token.
        if !tokens.iter().any(|t| t.is_word() && t.text.contains('$')) {
            return tokens;
        }
        let mut out = Vec::with_capacity(tokens.len());
        for mut tok in tokens {
            if !tok.is_word() || !tok.text.contains('$') {
                out.push(tok);
                continue;
            }
            let expanded = match self.expand_str(&tok.text, dir) {
                Ok(s) => s,
                Err(msg) => {
                    self.diags.error(&tok, msg);
                    out.push(tok);
                    continue;
                }
            };
            if expanded == tok.text {
                out.push(tok);
                continue;
            }
            self.generated_bytes = self.generated_bytes.saturating_add(expanded.len());
            if tok.quoted {
                // Quoted text stays one word whatever it expands to.
                tok.text = expanded.into();
                out.push(tok);
            } else {
                match scan(&expanded, false) {
                    Ok(s) => out.extend(s.tokens.into_iter().map(|raw| Token {
                        kind: raw.kind,
                        text: raw.text,
                        quoted: raw.quoted,
                        ..tok.clone()
                    })),
                    Err(e) => {
                        self.diags.error(
                            &tok,
                            format!("after parameter substitution (`{expanded}`): {}", e.message),
                        );
                        out.push(tok);
                    }
                }
            }
        }
        out
    }

    /// Replaces `${NAME}` anywhere and `$NAME` followed by whitespace or the end, rescanning
    /// the inserted text in place as keepalived does (so nested references work).
    ///
    /// Scanning only moves forward and never looks behind the current position, so the
    /// text before it is final (`out`) and its room in `buf` is free: an inserted value
    /// is written to end where the reference ended, without moving the rest of the line
    /// (splicing it in moved the whole tail: quadratic for a line that a self-referencing
    /// parameter grows to the length limit).
    fn expand_str(&self, s: &str, dir: &Path) -> Result<String, String> {
        // Most tokens name no parameter: no need to take them apart.
        if !s.contains('$') {
            return Ok(s.to_owned());
        }
        let mut buf: Vec<char> = s.chars().collect();
        let mut out = String::with_capacity(s.len());
        // Chars in `out`.
        let mut done = 0usize;
        let mut count = 0;
        let mut i = 0;
        while i < buf.len() {
            if buf[i] != '$' {
                out.push(buf[i]);
                done += 1;
                i += 1;
                continue;
            }
            // `$NAME(args)` / `${NAME(args)}`: a parameterised definition.
            if let Some((value, end)) = self.macro_use(&buf, i, dir)? {
                count += 1;
                if count > MAX_SUBSTITUTIONS {
                    return Err(
                        "parameter substitution does not terminate (is a definition written in terms of itself?)".into(),
                    );
                }
                i = replace_before(&mut buf, end, &value);
                if done + buf.len() - i > MAX_EXPANDED_CHARS {
                    return Err(format!("parameter expansion makes a line longer than {MAX_EXPANDED_CHARS} characters"));
                }
                continue;
            }
            let found = if buf.get(i + 1) == Some(&'{') {
                buf[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .map(|p| (buf[i + 2..i + 2 + p].iter().collect::<String>(), i + 3 + p))
            } else {
                let len = buf[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let end = i + 1 + len;
                let followed_ok = end == buf.len() || buf[end].is_whitespace();
                (len > 0 && followed_ok && !buf[i + 1].is_ascii_digit())
                    .then(|| (buf[i + 1..end].iter().collect(), end))
            };
            let Some((name, end)) = found else {
                out.push('$');
                done += 1;
                i += 1;
                continue;
            };
            match self.lookup(&name, dir)? {
                Some(value) => {
                    count += 1;
                    if count > MAX_SUBSTITUTIONS {
                        return Err(format!(
                            "parameter substitution does not terminate (is `${name}` defined in terms of itself?)"
                        ));
                    }
                    i = replace_before(&mut buf, end, &value);
                    if done + buf.len() - i > MAX_EXPANDED_CHARS {
                        return Err(format!(
                            "parameter expansion makes a line longer than {MAX_EXPANDED_CHARS} characters"
                        ));
                    }
                }
                // Undefined parameters stay as written, like keepalived.
                None => {
                    out.push('$');
                    done += 1;
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    fn lookup(&self, name: &str, dir: &Path) -> Result<Option<String>, String> {
        Ok(match name {
            "_PWD" => Some(dir.display().to_string()),
            "_INSTANCE" => Some(self.config_id.clone()),
            "_HASH" => Some("#".into()),
            "_BANG" => Some("!".into()),
            _ if name == "_ENV" || name.starts_with("_ENV ") => {
                match name
                    .split_whitespace()
                    .skip(1)
                    .collect::<Vec<_>>()
                    .as_slice()
                {
                    // An unset variable expands to nothing.
                    [var] => Some(std::env::var(var).unwrap_or_default()),
                    _ => return Err("`${_ENV}` takes one environment variable name".into()),
                }
            }
            _ if name == "_RANDOM" || name.starts_with("_RANDOM ") => {
                let bounds: Vec<&str> = name.split_whitespace().skip(1).collect();
                let num = |s: &str| {
                    s.parse::<u64>().map_err(|_| {
                        format!("`${{_RANDOM}}` bounds must be non-negative integers, found `{s}`")
                    })
                };
                let (lo, hi) = match bounds.as_slice() {
                    [] => (0, 32767),
                    [lo] => (num(lo)?, 32767),
                    [lo, hi] => (num(lo)?, num(hi)?),
                    _ => return Err("`${_RANDOM}` takes at most MIN and MAX".into()),
                };
                if hi < lo {
                    return Err(format!("`${{_RANDOM {lo} {hi}}}`: MAX is below MIN"));
                }
                // xorshift64: no cryptographic needs here.
                let mut x = self.random.get();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.random.set(x);
                Some((lo + x % (hi - lo + 1)).to_string())
            }
            _ => self.defs.get(name).cloned(),
        })
    }

    /// `include_check [OPTIONS]` on this line (in `global_defs`, where the tree checks
    /// its place): the checks for the includes that follow, in this file and the files
    /// it includes. No option: all of them; `+x` / `-x` add or remove one; a first
    /// plain option sets `read` and it. `match`, `wildcard_match` and `brace_match`
    /// include `read`.
    fn set_include_check(&mut self, tokens: &[Token]) {
        let Some(at) = tokens
            .iter()
            .position(|t| t.is_word() && !t.quoted && t.text == "include_check")
        else {
            return;
        };
        let args: Vec<&Token> = tokens[at + 1..]
            .iter()
            .take_while(|t| t.text != "{" && t.text != "}")
            .collect();
        if args.is_empty() {
            self.include_check = INCLUDE_ALL;
            return;
        }
        for (i, a) in args.iter().enumerate() {
            // (Not split_at(1): a word may start with a multi-byte character, which a
            // fuzzed config did, and slicing inside it panics.)
            let (op, name) = if let Some(rest) = a.text.strip_prefix('+') {
                ('+', rest)
            } else if let Some(rest) = a.text.strip_prefix('-') {
                ('-', rest)
            } else {
                ('=', a.text.as_str())
            };
            let flag = match name {
                "read" => INCLUDE_R,
                "match" => INCLUDE_M,
                "wildcard_match" => INCLUDE_W,
                "brace_match" => INCLUDE_B,
                other => {
                    self.diags.error_help(
                        a,
                        format!("unknown `include_check` option `{other}`"),
                        "use read, match, wildcard_match or brace_match, each optionally with + or -",
                    );
                    continue;
                }
            };
            match op {
                '=' if i > 0 => self.diags.error_help(
                    a,
                    format!("`include_check` option `{name}` after the first needs + or -"),
                    format!("write `+{name}` to add it"),
                ),
                '=' => self.include_check = INCLUDE_R | flag,
                '+' => self.include_check |= flag,
                _ => self.include_check &= !flag,
            }
        }
    }

    fn include_line(
        &mut self,
        tok: &Token,
        rest: &str,
        dir: &Path,
        chain: &Arc<Vec<Span>>,
        extra: u8,
    ) {
        let checks = self.include_check | extra;
        let rest = match self.expand_str(rest, dir) {
            Ok(r) => r,
            Err(msg) => return self.diags.error(tok, msg),
        };
        let pattern = if rest.starts_with('"') || rest.starts_with('\'') {
            match scan(&rest, false) {
                Ok(s) if s.tokens.len() == 1 => s.tokens[0].text.to_string(),
                _ => {
                    return self
                        .diags
                        .error(tok, "`include` takes exactly one (quoted) file pattern")
                }
            }
        } else {
            let words: Vec<&str> = rest.split_whitespace().collect();
            match words.as_slice() {
                [one] => one.to_string(),
                [] => {
                    return self
                        .diags
                        .error(tok, "`include` needs a file name or pattern")
                }
                _ => {
                    return self.diags.error_help(
                        tok,
                        "`include` takes exactly one file pattern",
                        "quote a file name that contains spaces",
                    )
                }
            }
        };

        let mut matches: Vec<PathBuf> = Vec::new();
        let Some(alternatives) = brace_expand(&pattern) else {
            return self.diags.error(
                tok,
                format!(
                    "include pattern `{pattern}`: its `{{a,b}}` groups expand to too many patterns"
                ),
            );
        };
        let braces = alternatives.len() > 1;
        for alt in alternatives {
            let full = dir.join(&alt);
            let Some(full_str) = full.to_str() else {
                return self.diags.error(tok, "include path is not valid UTF-8");
            };
            match glob::glob(full_str) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    found.sort();
                    if braces && found.is_empty() && checks & INCLUDE_B != 0 {
                        self.diags.error(
                            tok,
                            format!("include alternative `{alt}` of `{pattern}` matched no file (include_check brace_match)"),
                        );
                    }
                    for p in found {
                        if !matches.contains(&p) {
                            matches.push(p);
                        }
                    }
                }
                Err(e) => {
                    return self
                        .diags
                        .error(tok, format!("invalid include pattern `{alt}`: {e}"))
                }
            }
        }
        if matches.is_empty() {
            let wildcard = pattern.contains(['*', '?', '[']);
            let check = if wildcard { INCLUDE_W } else { INCLUDE_M };
            if checks & check != 0 {
                let name = if wildcard { "wildcard_match" } else { "match" };
                self.diags.error(
                    tok,
                    format!("include pattern `{pattern}` matched no files (include_check {name})"),
                );
            } else if !(braces && checks & INCLUDE_B != 0) {
                self.diags
                    .warning(tok, format!("include pattern `{pattern}` matched no files"));
            }
            return;
        }

        let mut inner: Vec<Span> = vec![tok.span.clone()];
        inner.extend(chain.iter().cloned());
        let inner: Arc<Vec<Span>> = inner.into();
        for file in matches {
            if file.is_dir() {
                let msg = format!(
                    "include pattern `{pattern}` matched directory `{}`; skipped",
                    file.display()
                );
                if checks & INCLUDE_R != 0 {
                    self.diags.error(tok, format!("{msg} (include_check read)"));
                } else {
                    self.diags.warning(tok, msg);
                }
                continue;
            }
            let canon = canonical(&file);
            if self.stack.contains(&canon) {
                let cycle: Vec<String> = self
                    .stack
                    .iter()
                    .skip_while(|p| **p != canon)
                    .chain(std::iter::once(&canon))
                    .map(|p| format!("`{}`", p.display()))
                    .collect();
                self.diags.error_help(
                    tok,
                    format!("include cycle: `{}` is already being read", file.display()),
                    format!("the cycle is {}", cycle.join(" -> ")),
                );
                continue;
            }
            match fs::read_to_string(&file) {
                Ok(text) => {
                    self.stack.push(canon);
                    let saved = self.include_check;
                    self.process_text(&file, text, inner.clone());
                    self.include_check = saved;
                    self.stack.pop();
                }
                Err(e) => self.diags.error(
                    tok,
                    format!("cannot read included file `{}`: {e}", file.display()),
                ),
            }
        }
    }
}

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Directory relative includes and `${_PWD}` resolve against.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => canonical(p),
        _ => canonical(Path::new(".")),
    }
}

impl<S: LineSink> Preprocessor<'_, S> {
    /// A use of a parameterised definition at `chars[i]` (a `$`): its expansion and the
    /// index after the use. Unknown names and other `$` forms give `Ok(None)`.
    fn macro_use(
        &self,
        chars: &[char],
        i: usize,
        dir: &Path,
    ) -> Result<Option<(String, usize)>, String> {
        if self.macros.is_empty() {
            return Ok(None);
        }
        let braced = chars.get(i + 1) == Some(&'{');
        let name_start = i + 1 + usize::from(braced);
        let name_len = chars[name_start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
            .count();
        let name: String = chars[name_start..name_start + name_len].iter().collect();
        let Some(m) = self.macros.get(&name) else {
            return Ok(None);
        };
        let open = name_start + name_len;
        if chars.get(open) != Some(&'(') {
            return Ok(None);
        }
        let Some(close) = matching_close(chars, open, "(", ")") else {
            return Err(format!("unclosed `(` in use of `${name}`"));
        };
        let end = if braced {
            if chars.get(close + 1) != Some(&'}') {
                return Err(format!("expected `}}` after `${{{name}(...)`"));
            }
            close + 2
        } else {
            close + 1
        };
        let inner: String = chars[open + 1..close].iter().collect();
        let args: Vec<String> = if inner.trim().is_empty() {
            Vec::new()
        } else {
            split_top(&inner)
                .into_iter()
                .map(|a| self.expand_str(a.trim(), dir))
                .collect::<Result<_, _>>()?
        };
        if args.len() != m.params.len() {
            return Err(format!(
                "`${name}` takes {} argument(s) ({}), found {}",
                m.params.len(),
                m.params.join(", "),
                args.len()
            ));
        }
        let mut body = m.body.clone();
        for (p, a) in m.params.iter().zip(&args) {
            body = substitute_param(&body, p, a);
        }
        Ok(Some((body, end)))
    }
}

/// Replaces `${P}` and `$P` (followed by whitespace or the end) in `body`.
fn substitute_param(body: &str, p: &str, value: &str) -> String {
    let braced = format!("${{{p}}}");
    let body = body.replace(&braced, value);
    let bare = format!("${p}");
    let mut out = String::with_capacity(body.len());
    let mut rest = body.as_str();
    while let Some(pos) = rest.find(&bare) {
        let after = &rest[pos + bare.len()..];
        let ends = after.chars().next().is_none_or(|c| c.is_whitespace());
        out.push_str(&rest[..pos]);
        out.push_str(if ends { value } else { &bare });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Splits at commas outside `{...}` and `(...)`.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut from = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' | '(' => depth += 1,
            '}' | ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[from..]);
    parts
}

fn parse_seq_number(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16),
        None => digits.parse::<i64>(),
    }
    .map_err(|_| format!("`{t}` is not a number"))?;
    Ok(if neg { -v } else { v })
}

type Assignments = Vec<Vec<(String, String)>>;

fn seq_values(inner: &str, hex: bool) -> Result<Assignments, String> {
    let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
    let var = parts[0];
    if !valid_name(var) {
        return Err(format!("`{var}` is not a valid variable name"));
    }
    let nums = parts[1..]
        .iter()
        .map(|p| parse_seq_number(p))
        .collect::<Result<Vec<i64>, String>>()?;
    let (start, step, end) = match nums.as_slice() {
        [end] => (
            match end.signum() {
                1 => 1,
                -1 => -1,
                _ => 0,
            },
            None,
            *end,
        ),
        [start, end] => (*start, None, *end),
        [start, step, end] => (*start, Some(*step), *end),
        _ => return Err("expected 2 to 4 arguments".into()),
    };
    let step = step.unwrap_or(if end >= start { 1 } else { -1 });
    if step == 0 {
        return Err("the step must not be 0".into());
    }
    let mut out = Vec::new();
    let mut v = start;
    while (step > 0 && v <= end) || (step < 0 && v >= end) {
        let text = match (hex, v < 0) {
            (true, false) => format!("{v:x}"),
            (true, true) => format!("-{:x}", v.unsigned_abs()),
            (false, _) => v.to_string(),
        };
        out.push(vec![(var.to_string(), text)]);
        if out.len() > MAX_GENERATED {
            return Err(format!("more than {MAX_GENERATED} values"));
        }
        v = match v.checked_add(step) {
            Some(n) => n,
            None => break,
        };
    }
    Ok(out)
}

fn list_values(inner: &str) -> Result<Assignments, String> {
    let parts = split_top(inner);
    let unbrace = |s: &str| -> Vec<String> {
        let t = s.trim();
        match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
            Some(body) => body.split(',').map(|v| v.trim().to_string()).collect(),
            None => vec![t.to_string()],
        }
    };
    let vars = unbrace(parts[0]);
    if let Some(bad) = vars.iter().find(|v| !valid_name(v)) {
        return Err(format!("`{bad}` is not a valid variable name"));
    }
    if parts.len() < 2 {
        return Err("no values given".into());
    }
    parts[1..]
        .iter()
        .map(|p| {
            let vals = unbrace(p);
            if vals.len() != vars.len() {
                return Err(format!(
                    "`{}` has {} value(s) for {} variable(s)",
                    p.trim(),
                    vals.len(),
                    vars.len()
                ));
            }
            Ok(vars.iter().cloned().zip(vals).collect())
        })
        .collect()
}

fn is_unquoted_prefix(t: &Token, c: char) -> bool {
    t.kind == TokenKind::Word && !t.quoted && t.text.starts_with(c)
}

/// `$NAME=...` or `$NAME(P1, P2)=...` starting at `chars[start]` (the `$`): the name,
/// the parameter names and the index of the value's first char. Names are
/// `[A-Za-z_][A-Za-z0-9_]*`; no space before `=`.
fn definition(chars: &[char], start: usize) -> Option<(String, Option<Vec<String>>, usize)> {
    let name_len = chars[start + 1..]
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .count();
    let name: String = chars[start + 1..start + 1 + name_len].iter().collect();
    if !valid_name(&name) {
        return None;
    }
    let after = start + 1 + name_len;
    match chars.get(after) {
        Some('=') => Some((name, None, after + 1)),
        Some('(') => {
            let close = after + chars[after..].iter().position(|&c| c == ')')?;
            if chars.get(close + 1) != Some(&'=') {
                return None;
            }
            let inner: String = chars[after + 1..close].iter().collect();
            let params: Vec<String> = if inner.trim().is_empty() {
                Vec::new()
            } else {
                inner.split(',').map(|p| p.trim().to_string()).collect()
            };
            params
                .iter()
                .all(|p| valid_name(p))
                .then_some((name, Some(params), close + 2))
        }
        _ => None,
    }
}

fn valid_name(name: &str) -> bool {
    let mut cs = name.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The most steps [`brace_expand`] takes (each one a brace group opened on one
/// candidate pattern), and the most groups one pattern may nest or chain. keepalived's
/// own patterns need a handful; without a bound a 3 kB line of a few dozen `{a,b}`
/// groups expands to 2^dozens patterns (a fuzzing find that took 7 GB before it was
/// stopped).
pub(crate) const MAX_BRACE_STEPS: usize = 4096;
const MAX_BRACE_GROUPS: usize = 64;

/// csh-style `{a,b}` expansion (glob(3) with GLOB_BRACE), which the glob crate lacks.
/// `None` when the expansion takes more than [`MAX_BRACE_STEPS`] steps or a pattern
/// has more than `MAX_BRACE_GROUPS` groups in a row.
pub(crate) fn brace_expand(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut budget = MAX_BRACE_STEPS;
    expand_into(s, &mut out, &mut budget, 0).then_some(out)
}

fn expand_into(s: &str, out: &mut Vec<String>, budget: &mut usize, groups: usize) -> bool {
    if *budget == 0 || groups > MAX_BRACE_GROUPS {
        return false;
    }
    *budget -= 1;
    let chars: Vec<char> = s.chars().collect();
    let Some(open) = chars.iter().position(|&c| c == '{') else {
        out.push(s.to_string());
        return true;
    };
    let mut depth = 0;
    let mut commas = Vec::new();
    let mut close = None;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(j),
            _ => {}
        }
    }
    let Some(close) = close else {
        out.push(s.to_string());
        return true;
    };
    let prefix: String = chars[..open].iter().collect();
    let suffix: String = chars[close + 1..].iter().collect();
    if commas.is_empty() {
        // `{x}` has no alternatives: keep it literally and expand what follows.
        let head: String = chars[..=close].iter().collect();
        let mut tails = Vec::new();
        if !expand_into(&suffix, &mut tails, budget, groups + 1) {
            return false;
        }
        out.extend(tails.into_iter().map(|t| format!("{head}{t}")));
        return true;
    }
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    bounds.windows(2).all(|w| {
        let alt: String = chars[w[0] + 1..w[1]].iter().collect();
        expand_into(&format!("{prefix}{alt}{suffix}"), out, budget, groups + 1)
    })
}

/// Index of the bracket closing the one at `open`, counting any of `opens` / `closes`.
/// Puts `value` in `buf` so that it ends at `end` (where the replaced reference ended)
/// and returns where it starts; what lies before that start is consumed text. When the
/// consumed room is too small, `buf` is rebuilt with as much free room again in front,
/// so growing a line costs amortised linear time.
fn replace_before(buf: &mut Vec<char>, end: usize, value: &str) -> usize {
    let len = value.chars().count();
    if len <= end {
        let start = end - len;
        for (slot, c) in buf[start..end].iter_mut().zip(value.chars()) {
            *slot = c;
        }
        return start;
    }
    let room = len + (buf.len() - end);
    let mut rebuilt = Vec::with_capacity(room + len + buf.len() - end);
    rebuilt.resize(room, '\0');
    rebuilt.extend(value.chars());
    rebuilt.extend_from_slice(&buf[end..]);
    *buf = rebuilt;
    room
}

pub(crate) fn matching_close(
    chars: &[char],
    open: usize,
    opens: &str,
    closes: &str,
) -> Option<usize> {
    let mut depth = 0i32;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        if opens.contains(c) {
            depth += 1;
        } else if closes.contains(c) {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expand_str` as it was (splicing each value into the whole line), the reference
    /// for the in-place version.
    fn reference_expand_str(
        p: &Preprocessor<Vec<Vec<Token>>>,
        s: &str,
        dir: &Path,
    ) -> Result<String, String> {
        let mut chars: Vec<char> = s.chars().collect();
        let mut count = 0;
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                i += 1;
                continue;
            }
            if let Some((value, end)) = p.macro_use(&chars, i, dir)? {
                count += 1;
                if count > MAX_SUBSTITUTIONS {
                    return Err("parameter substitution does not terminate (is a definition written in terms of itself?)".into());
                }
                chars.splice(i..end, value.chars());
                if chars.len() > MAX_EXPANDED_CHARS {
                    return Err(format!("parameter expansion makes a line longer than {MAX_EXPANDED_CHARS} characters"));
                }
                continue;
            }
            let found = if chars.get(i + 1) == Some(&'{') {
                chars[i + 2..].iter().position(|&c| c == '}').map(|q| {
                    (
                        chars[i + 2..i + 2 + q].iter().collect::<String>(),
                        i + 3 + q,
                    )
                })
            } else {
                let len = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .count();
                let end = i + 1 + len;
                let followed_ok = end == chars.len() || chars[end].is_whitespace();
                (len > 0 && followed_ok && !chars[i + 1].is_ascii_digit())
                    .then(|| (chars[i + 1..end].iter().collect(), end))
            };
            let Some((name, end)) = found else {
                i += 1;
                continue;
            };
            match p.lookup(&name, dir)? {
                Some(value) => {
                    count += 1;
                    if count > MAX_SUBSTITUTIONS {
                        return Err(format!("parameter substitution does not terminate (is `${name}` defined in terms of itself?)"));
                    }
                    chars.splice(i..end, value.chars());
                    if chars.len() > MAX_EXPANDED_CHARS {
                        return Err(format!("parameter expansion makes a line longer than {MAX_EXPANDED_CHARS} characters"));
                    }
                }
                None => i += 1,
            }
        }
        Ok(chars.into_iter().collect())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn expand_str_matches_splicing(
            line in "[$${}()AB_M1x, é]{0,24}",
            a in "[$${}AB_x é]{0,8}",
            b in "[$${}AB_x é]{0,8}",
            body in "[$${}ABpx é]{0,8}",
        ) {
            let mut diags = Diags::default();
            let mut sources = SourceMap::default();
            let mut p = Preprocessor::new("id".into(), &mut diags, &mut sources);
            p.defs.insert("A".into(), a);
            p.defs.insert("B".into(), b);
            p.defs.insert("AB".into(), "A$B".into());
            p.macros.insert(
                "M".into(),
                Macro { params: vec!["p".into()], body },
            );
            let dir = Path::new("/nonexistent");
            proptest::prop_assert_eq!(p.expand_str(&line, dir), reference_expand_str(&p, &line, dir));
        }
    }

    /// A parameter that grows by referring to itself used to cost a move of the whole
    /// line per substitution; now the limit is reached in linear time, with the same
    /// error (and the result of the splicing version).
    #[test]
    fn a_self_growing_parameter_hits_the_limit_fast() {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let mut p = Preprocessor::new("id".into(), &mut diags, &mut sources);
        p.defs
            .insert("X".into(), format!("${{X}}{}", "y".repeat(2000)));
        let dir = Path::new("/nonexistent");
        let got = p.expand_str("a ${X} b", dir);
        assert_eq!(got, reference_expand_str(&p, "a ${X} b", dir));
        assert_eq!(
            got,
            Err(format!(
                "parameter expansion makes a line longer than {MAX_EXPANDED_CHARS} characters"
            ))
        );
    }

    fn run(text: &str, id: &str) -> (Vec<Vec<String>>, Vec<Diagnostic>) {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let lines = Preprocessor::new(id.into(), &mut diags, &mut sources)
            .run(Path::new("/nonexistent/dir/k.conf"), text);
        let words = lines
            .into_iter()
            .map(|l| l.into_iter().map(|t| t.text.to_string()).collect())
            .collect();
        (words, diags.list)
    }

    fn w(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn conditionals_select_by_config_id() {
        let text =
            "@main router_id main_router\n@backup router_id backup_router\n@^main x\n@^backup y\n";
        let (lines, d) = run(text, "main");
        assert!(d.is_empty());
        assert_eq!(lines, vec![w(&["router_id", "main_router"]), w(&["y"])]);
        let (lines, _) = run(text, "other");
        assert_eq!(lines, vec![w(&["x"]), w(&["y"])]);
    }

    #[test]
    fn bare_at_is_an_error() {
        let (lines, d) = run("@ priority 1\n", "main");
        assert!(lines.is_empty());
        assert_eq!(d[0].message, "missing config id after `@`");
        assert_eq!((d[0].span.line, d[0].span.col), (1, 1));
    }

    #[test]
    fn parameters_expand_recursively_at_use_time() {
        let text = "$ADDRESS_BASE=10.2.${ADDRESS_BASE_SUB}\n$ADDRESS_BASE_SUB=0\n${ADDRESS_BASE}.100/32\n$ADDRESS_BASE_SUB=10\n${ADDRESS_BASE}.100/32\n";
        let (lines, d) = run(text, "x");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(lines, vec![w(&["10.2.0.100/32"]), w(&["10.2.10.100/32"])]);
    }

    #[test]
    fn bare_parameter_needs_whitespace_after_it() {
        let (lines, _) = run("$P=240\npriority $P\nx $P.1 ${P}.1\n", "x");
        assert_eq!(
            lines,
            vec![w(&["priority", "240"]), w(&["x", "$P.1", "240.1"])]
        );
    }

    #[test]
    fn parameter_values_may_hold_several_words_and_conditions() {
        let text =
            "$VIP=192.0.2.1/24 dev eth0 # comment\n$VIP\n$IF_MAIN=@main\n$IF_MAIN priority 240\n";
        let (lines, _) = run(text, "main");
        assert_eq!(
            lines,
            vec![w(&["192.0.2.1/24", "dev", "eth0"]), w(&["priority", "240"])]
        );
        let (lines, _) = run(text, "backup");
        assert_eq!(lines.len(), 1);
    }

    #[test]
    fn substituted_tokens_keep_the_original_position() {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let lines = Preprocessor::new("x".into(), &mut diags, &mut sources)
            .run(Path::new("k.conf"), "$V=a b\n  key $V\n");
        assert_eq!(lines[0][1].span.col, 7);
        assert_eq!(lines[0][2].span.col, 7);
        assert_eq!(lines[0][2].len, 2);
    }

    #[test]
    fn predefined_parameters() {
        let (lines, _) = run("x ${_HASH}${_BANG} ${_INSTANCE} ${_PWD}\n", "node1");
        assert_eq!(lines[0][1], "#!");
        assert_eq!(lines[0][2], "node1");
        assert!(lines[0][3].ends_with("dir") || lines[0][3].contains("nonexistent"));
    }

    #[test]
    fn undefined_parameters_stay() {
        let (lines, d) = run("script \"echo $HOME ${NOPE}\"\n", "x");
        assert!(d.is_empty());
        assert_eq!(lines[0][1], "echo $HOME ${NOPE}");
    }

    #[test]
    fn self_reference_is_reported() {
        let (_, d) = run("$A=x ${A}\nkey ${A}\n", "x");
        assert!(
            d[0].message.contains("does not terminate"),
            "{}",
            d[0].message
        );
        assert_eq!(d[0].span.line, 2);
    }

    #[test]
    fn include_check_turns_missing_includes_into_errors() {
        let errors = |text: &str| {
            let (_, d) = run(text, "x");
            d.iter()
                .map(|d| (d.severity == Severity::Error, d.message.clone()))
                .collect::<Vec<_>>()
        };
        // Without include_check: warnings, as before.
        assert_eq!(
            errors("include /nonexistent/a.conf\n"),
            [(
                false,
                "include pattern `/nonexistent/a.conf` matched no files".into()
            )]
        );
        assert_eq!(
            errors("include_check\ninclude /nonexistent/a.conf\ninclude /nonexistent/*.conf\n"),
            [
                (true, "include pattern `/nonexistent/a.conf` matched no files (include_check match)".into()),
                (true, "include pattern `/nonexistent/*.conf` matched no files (include_check wildcard_match)".into()),
            ]
        );
        // A plain option sets read and it alone; -x removes one.
        let e = errors(
            "include_check match\ninclude /nonexistent/a.conf\ninclude /nonexistent/*.conf\n",
        );
        assert_eq!((e[0].0, e[1].0), (true, false), "{e:?}");
        let e = errors("include_check -match\ninclude /nonexistent/a.conf\n");
        assert!(!e[0].0, "{e:?}");
        // The include variants add their check to that include only.
        let e = errors("includem /nonexistent/a.conf\ninclude /nonexistent/b.conf\nincludea /nonexistent/*.conf\n");
        assert_eq!(
            e.iter().map(|x| x.0).collect::<Vec<_>>(),
            [true, false, true],
            "{e:?}"
        );
        let e = errors("include_check bogus\n");
        assert_eq!(
            e[0],
            (true, "unknown `include_check` option `bogus`".into())
        );
        let e = errors("include_check read match\n");
        assert!(e[0].1.contains("after the first needs + or -"), "{e:?}");
    }

    fn joined(lines: &[Vec<String>]) -> Vec<String> {
        lines.iter().map(|l| l.join(" ")).collect()
    }

    #[test]
    fn multi_line_definitions_expand_line_by_line() {
        let text = "$INST= \\\nvrrp_instance VI_${NUM} { \\\n  @high priority 130 \\\n  @low priority 120 \\\n  virtual_router_id ${NUM} # comment \\\n}\n$NUM=1\n$INST\n$NUM=2\n  $INST\n";
        let (lines, d) = run(text, "high");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            joined(&lines),
            [
                "vrrp_instance VI_1 {",
                "priority 130",
                "virtual_router_id 1",
                "}",
                "vrrp_instance VI_2 {",
                "priority 130",
                "virtual_router_id 2",
                "}",
            ]
        );
        // Tokens from the expansion sit where the parameter was used.
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let l =
            Preprocessor::new("x".into(), &mut diags, &mut sources).run(Path::new("k.conf"), text);
        assert_eq!((l[4][0].span.line, l[4][0].span.col), (10, 3));
    }

    #[test]
    fn nested_multi_line_definitions_see_definitions_in_order() {
        let text = "$RS= \\\nreal_server 10.0.${VS}.${RS_NUM} 80\n$VS_BODY= \\\nvirtual_server 10.0.${VS}.4 80 { \\\n $RS_NUM=1 \\\n $RS \\\n $RS_NUM=2 \\\n $RS \\\n}\n$VS=7\n$VS_BODY\n";
        let (lines, d) = run(text, "x");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            joined(&lines),
            [
                "virtual_server 10.0.7.4 80 {",
                "real_server 10.0.7.1 80",
                "real_server 10.0.7.2 80",
                "}"
            ]
        );
    }

    #[test]
    fn parameterised_definitions() {
        let text = "$VIP(N, MASK)=192.0.2.${N}/${MASK}\n$VIP(1, 24)\nx ${VIP(2,25)} y\n$BLK(A)= \\\nk ${A} \\\nl $A\n$BLK(z)\n";
        let (lines, d) = run(text, "x");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            joined(&lines),
            ["192.0.2.1/24", "x 192.0.2.2/25 y", "k z", "l z"]
        );
        let (_, d) = run("$F(a)=x\n$F(1,2)\n", "x");
        assert_eq!(d[0].message, "`$F` takes 1 argument(s) (a), found 2");
    }

    #[test]
    fn sequence_blocks() {
        let (lines, d) = run("~SEQ(S, 0, 3) ip 10.0.${S}.1\n", "x");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            joined(&lines),
            ["ip 10.0.0.1", "ip 10.0.1.1", "ip 10.0.2.1", "ip 10.0.3.1"]
        );
        let (lines, _) = run("~SEQx(S, 0x90, 0x10, 0xc0) fe80::${S}:1\n", "x");
        assert_eq!(
            joined(&lines),
            ["fe80::90:1", "fe80::a0:1", "fe80::b0:1", "fe80::c0:1"]
        );
        let (lines, _) = run("~SEQ(A,3) ~SEQ(B, 2, 1) ${A}.${B}\n", "x");
        assert_eq!(joined(&lines), ["1.2", "1.1", "2.2", "2.1", "3.2", "3.1"]);
        let (lines, _) = run("~SEQ(A,-2) a$A\n", "x");
        assert_eq!(joined(&lines), ["a-1", "a-2"]);
        let (lines, _) = run("~SEQ(A,-2) ${A}\n", "x");
        assert_eq!(joined(&lines), ["-1", "-2"]);
        // Columns of the rest of the line are kept.
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let l = Preprocessor::new("x".into(), &mut diags, &mut sources)
            .run(Path::new("k.conf"), "~SEQ(A,2) key ${A}\n");
        assert_eq!(l[1][1].span.col, 15);
        let (_, d) = run("~SEQ(A, 1, 0, 5) x\n~SEQ A\n~SEQ(1A, 2) x\n", "x");
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "invalid `~SEQ`: the step must not be 0",
                "`~SEQ` needs its arguments in parentheses",
                "invalid `~SEQ`: `1A` is not a valid variable name",
            ]
        );
    }

    #[test]
    fn list_blocks() {
        let (lines, d) = run(
            "~LST({IP, IP1}, {10,1},{20,4}) ~SEQ(X,168,2,170) ${X}.${IP}.${IP1}\n",
            "x",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            joined(&lines),
            ["168.10.1", "170.10.1", "168.20.4", "170.20.4"]
        );
        let (_, d) = run("~LST({A,B}, {1}) x\n", "x");
        assert_eq!(
            d[0].message,
            "invalid `~LST`: `{1}` has 1 value(s) for 2 variable(s)"
        );
    }

    #[test]
    fn env_expands_environment_variables() {
        std::env::set_var("VIPD_TEST_ENV_IFACE", "eth7");
        let (lines, d) = run(
            "interface ${_ENV VIPD_TEST_ENV_IFACE} x${_ENV VIPD_TEST_UNSET_XYZ}y\n",
            "x",
        );
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(lines[0], ["interface", "eth7", "xy"]);
        let (_, d) = run("x ${_ENV}\n", "x");
        assert_eq!(
            d[0].message,
            "`${_ENV}` takes one environment variable name"
        );
    }

    #[test]
    fn random_is_in_range() {
        let (lines, d) = run("~SEQ(I,20) ${_RANDOM 5 7}\n", "x");
        assert!(d.is_empty());
        for l in lines {
            let v: u32 = l[0].parse().unwrap();
            assert!((5..=7).contains(&v));
        }
        let (_, d) = run("x ${_RANDOM 9 1}\n", "x");
        assert_eq!(d[0].message, "`${_RANDOM 9 1}`: MAX is below MIN");
    }

    #[test]
    fn include_without_match_warns() {
        let (_, d) = run("include /nonexistent/*.conf\n", "x");
        assert_eq!(d[0].severity, Severity::Warning);
        assert_eq!(
            d[0].message,
            "include pattern `/nonexistent/*.conf` matched no files"
        );
        let (_, d) = run("include\n", "x");
        assert_eq!(d[0].message, "`include` needs a file name or pattern");
        let (_, d) = run("include a b\n", "x");
        assert_eq!(d[0].message, "`include` takes exactly one file pattern");
    }

    #[test]
    fn brace_expansion() {
        let expand = |s| brace_expand(s).expect("within the limit");
        assert_eq!(expand("a/{b,c}/d"), vec!["a/b/d", "a/c/d"]);
        assert_eq!(
            expand("{foo/{,cat,dog},bar}"),
            vec!["foo/", "foo/cat", "foo/dog", "bar"]
        );
        assert_eq!(expand("x{y}z{1,2}"), vec!["x{y}z1", "x{y}z2"]);
        assert_eq!(expand("plain"), vec!["plain"]);
        // 2^10 patterns: within the limit.
        assert_eq!(expand(&"{a,b}".repeat(10)).len(), 1024);
    }

    /// A fuzzing find (config_load oom-a9c45ef…): dozens of `{a,b}` groups on one
    /// `include` line expanded without bound (7 GB and a minute before it was stopped).
    /// Now the expansion stops at its step limit and the line is one error.
    /// A fuzzing find (config_load crash-d6a6223…): an `include_check` option starting
    /// with a multi-byte character panicked (a byte slice inside the character).
    #[test]
    fn include_check_options_may_start_with_any_character() {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let text = "global_defs {\n  include_check \u{742}read +\u{e9} -match\n}\n";
        let _ = Preprocessor::new("x".into(), &mut diags, &mut sources)
            .run(Path::new("/nonexistent/keepalived.conf"), text);
        let msgs: Vec<_> = diags.list.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "unknown `include_check` option `\u{742}read`",
                "unknown `include_check` option `\u{e9}`"
            ]
        );
    }

    #[test]
    fn brace_expansion_is_bounded() {
        assert_eq!(brace_expand(&"{a,b}".repeat(40)), None);
        assert_eq!(brace_expand(&"{x}".repeat(MAX_BRACE_GROUPS + 1)), None);
        assert_eq!(
            brace_expand(&"{x}".repeat(MAX_BRACE_GROUPS)).map(|v| v.len()),
            Some(1)
        );
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let text = format!("include conf.d/{}*.conf\n", "{a,b}".repeat(40));
        let _ = Preprocessor::new("x".into(), &mut diags, &mut sources)
            .run(Path::new("/nonexistent/keepalived.conf"), &text);
        let msgs: Vec<_> = diags.list.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert!(
            msgs[0].ends_with("groups expand to too many patterns"),
            "{msgs:?}"
        );
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    /// A sequence over a failing body reports the failure once, not once per value
    /// (each failure of a self-referring definition is up to a million characters of
    /// work: 1,163 of them made one 4 kB fuzz input cost 5 s).
    #[test]
    fn a_sequence_stops_at_its_first_failing_iteration() {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let text = "$VI=x $VI\n~SEQ(N, 1163) $VI\n~SEQ(M, 3) ok $M\n";
        let _ =
            Preprocessor::new("x".into(), &mut diags, &mut sources).run(Path::new("k.conf"), text);
        let d = diags.list;
        let errors: Vec<_> = d.iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 1, "{d:#?}");
        assert!(errors[0].message.contains("does not terminate"), "{d:#?}");
        assert!(
            d.iter().any(|d| d
                .message
                .contains("the 1162 iterations after the first failing one")),
            "{d:#?}"
        );
    }

    /// Lines and tokens were bounded in number, not in length: a thousand copies of a
    /// half-megabyte parameter were half a gigabyte (a fuzzed 0.5 kB config held
    /// 0.9 GB). The text generated in all is bounded too.
    #[test]
    fn generated_text_is_bounded_in_bytes() {
        for text in [
            // One long parameter, substituted once per sequence value.
            format!("$BIG={}\n~SEQ(N, 1000) v $BIG\n", "x".repeat(500_000)),
            // A multi-line parameter of long lines, used once per sequence value.
            format!("$ML=a{} \\\nb\n~SEQ(N, 1000) $ML\n", "y".repeat(500_000)),
        ] {
            let mut diags = Diags::default();
            let mut sources = SourceMap::default();
            let lines = Preprocessor::new("x".into(), &mut diags, &mut sources)
                .run(Path::new("k.conf"), &text);
            let bytes: usize = lines.iter().flatten().map(|t| t.text.len()).sum();
            assert!(bytes <= MAX_GENERATED_BYTES, "{bytes} bytes");
            assert!(bytes > MAX_GENERATED_BYTES / 2, "{bytes} bytes");
            let errors: Vec<_> = diags.list.iter().filter(|d| d.is_error()).collect();
            assert_eq!(errors.len(), 1, "{:#?}", diags.list);
            assert!(
                errors[0]
                    .message
                    .ends_with("generates more than 16 MiB of text")
                    || errors[0]
                        .message
                        .ends_with("generate more than 16 MiB of text"),
                "{}",
                errors[0].message
            );
        }
    }

    /// Lines that macros and multi-line parameters produce are bounded like a line
    /// grown by substitution: a fuzzed 0.5 kB config nested macros whose every level
    /// doubled a line, 17 million characters at the sixteenth level and 0.9 GB held
    /// across the levels.
    #[test]
    fn lines_made_by_macros_are_bounded_in_length() {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let text = format!("$D(X)=${{X}}${{X}}\nv $D({})\n", "y".repeat(600_000));
        let lines =
            Preprocessor::new("x".into(), &mut diags, &mut sources).run(Path::new("k.conf"), &text);
        assert!(lines.is_empty(), "{} lines", lines.len());
        let msgs: Vec<_> = diags.list.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            ["parameter expansion makes a line longer than 1048576 characters"]
        );
    }

    #[test]
    fn self_multiplying_definitions_stop() {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let text = "$X= \\\n${X} ${X} \\\n${X}\n$X\n~SEQ(A,1000) ~SEQ(B,1000) ~SEQ(C,1000) x\n";
        let t = std::time::Instant::now();
        let _ =
            Preprocessor::new("x".into(), &mut diags, &mut sources).run(Path::new("k.conf"), text);
        assert!(t.elapsed() < std::time::Duration::from_secs(20));
        assert!(diags.list.iter().any(|d| d.is_error()));
    }
}
