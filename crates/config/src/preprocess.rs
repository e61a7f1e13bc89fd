//! Line-level preprocessing: `include`, `@id` conditionals and `$NAME` parameters.
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

pub(crate) struct Preprocessor<'a> {
    config_id: String,
    defs: HashMap<String, String>,
    diags: &'a mut Diags,
    sources: &'a mut SourceMap,
    /// Canonical paths of the files being read, outermost first, for cycle detection.
    stack: Vec<PathBuf>,
    out: Vec<Vec<Token>>,
}

impl<'a> Preprocessor<'a> {
    pub fn new(config_id: String, diags: &'a mut Diags, sources: &'a mut SourceMap) -> Self {
        Preprocessor {
            config_id,
            defs: HashMap::new(),
            diags,
            sources,
            stack: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Preprocesses the top-level file; `text` is its content.
    pub fn run(mut self, path: &Path, text: &str) -> Vec<Vec<Token>> {
        self.stack.push(canonical(path));
        self.process_text(path, text, Arc::from(Vec::new()));
        self.out
    }

    fn process_text(&mut self, path: &Path, text: &str, chain: Arc<[Span]>) {
        self.sources.add(path.to_path_buf(), text);
        let dir = parent_dir(path);
        for (idx, line) in text.lines().enumerate() {
            self.process_line(path, &dir, idx as u32 + 1, line, &chain);
        }
    }

    fn process_line(
        &mut self,
        path: &Path,
        dir: &Path,
        line_no: u32,
        line: &str,
        chain: &Arc<[Span]>,
    ) {
        let scanned = match scan(line, true) {
            Ok(s) => s,
            Err(e) => {
                let span = Span {
                    file: path.to_path_buf(),
                    line: line_no,
                    col: e.at as u32 + 1,
                };
                self.diags.push(
                    Diagnostic::new(Severity::Error, e.message, span, e.len as u32)
                        .with_chain(chain.to_vec()),
                );
                return;
            }
        };
        let raw_ends: Vec<usize> = scanned.tokens.iter().map(|t| t.start + t.len).collect();
        let mut tokens: Vec<Token> = scanned
            .tokens
            .iter()
            .cloned()
            .map(|t| place(t, path, line_no, chain))
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

        if is_unquoted_prefix(&head, '$') {
            if let Some(name) = definition_name(&head.text) {
                let eq = head.span.col as usize - 1 + 1 + name.len();
                let value = scanned.text(eq + 1, scanned.code_end).trim().to_string();
                if value.ends_with('\\') {
                    self.diags.error(
                        &head,
                        format!("multi-line parameter definition `${name}` is not supported yet"),
                    );
                } else {
                    self.defs.insert(name.to_string(), value);
                }
                return;
            }
            if is_parameterised_definition(&head.text) {
                self.diags.error(
                    &head,
                    "parameterised (macro) definitions are not supported yet",
                );
                return;
            }
        }
        if head.is_word() && !head.quoted {
            for seq in ["~SEQx", "~SEQ", "~LST"] {
                if head.text.starts_with(seq) {
                    self.diags
                        .error(&head, format!("`{seq}` blocks are not supported yet"));
                    return;
                }
            }
        }

        if head.is_word() && !head.quoted && head.text == "include" {
            let rest = scanned.text(raw_ends[first], scanned.code_end);
            self.include_line(&head, rest.trim(), dir, chain);
            return;
        }
        if head.is_word()
            && !head.quoted
            && matches!(
                head.text.as_str(),
                "includer" | "includem" | "includew" | "includeb" | "includea"
            )
        {
            self.diags.error_help(
                &head,
                format!("keyword `{}` is not supported yet", head.text),
                "use `include`",
            );
            return;
        }

        let mut tokens = self.expand_tokens(tokens.split_off(first), dir);
        // A substituted value may itself start with a condition (`$IF_MAIN=@main`).
        if let Some(t) = tokens.first() {
            if is_unquoted_prefix(t, '@') {
                if self.condition(t) != Some(true) {
                    return;
                }
                tokens.remove(0);
            }
        }
        if !tokens.is_empty() {
            self.out.push(tokens);
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
        Some((id == self.config_id) != negate)
    }

    fn expand_tokens(&mut self, tokens: Vec<Token>, dir: &Path) -> Vec<Token> {
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
            } else if tok.quoted {
                // Quoted text stays one word whatever it expands to.
                tok.text = expanded;
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
    fn expand_str(&self, s: &str, dir: &Path) -> Result<String, String> {
        let mut chars: Vec<char> = s.chars().collect();
        let mut count = 0;
        let mut i = 0;
        while i < chars.len() {
            if chars[i] != '$' {
                i += 1;
                continue;
            }
            let found = if chars.get(i + 1) == Some(&'{') {
                chars[i + 2..].iter().position(|&c| c == '}').map(|p| {
                    (
                        chars[i + 2..i + 2 + p].iter().collect::<String>(),
                        i + 3 + p,
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
            match self.lookup(&name, dir)? {
                Some(value) => {
                    count += 1;
                    if count > MAX_SUBSTITUTIONS {
                        return Err(format!(
                            "parameter substitution does not terminate (is `${name}` defined in terms of itself?)"
                        ));
                    }
                    chars.splice(i..end, value.chars());
                }
                // Undefined parameters stay as written, like keepalived.
                None => i += 1,
            }
        }
        Ok(chars.into_iter().collect())
    }

    fn lookup(&self, name: &str, dir: &Path) -> Result<Option<String>, String> {
        Ok(match name {
            "_PWD" => Some(dir.display().to_string()),
            "_INSTANCE" => Some(self.config_id.clone()),
            "_HASH" => Some("#".into()),
            "_BANG" => Some("!".into()),
            _ if name.starts_with("_RANDOM") => {
                return Err("`${_RANDOM}` is not supported yet".into());
            }
            _ => self.defs.get(name).cloned(),
        })
    }

    fn include_line(&mut self, tok: &Token, rest: &str, dir: &Path, chain: &Arc<[Span]>) {
        let rest = match self.expand_str(rest, dir) {
            Ok(r) => r,
            Err(msg) => return self.diags.error(tok, msg),
        };
        let pattern = if rest.starts_with('"') || rest.starts_with('\'') {
            match scan(&rest, false) {
                Ok(s) if s.tokens.len() == 1 => s.tokens[0].text.clone(),
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
        for alt in brace_expand(&pattern) {
            let full = dir.join(&alt);
            let Some(full_str) = full.to_str() else {
                return self.diags.error(tok, "include path is not valid UTF-8");
            };
            match glob::glob(full_str) {
                Ok(paths) => {
                    let mut found: Vec<PathBuf> = paths.filter_map(Result::ok).collect();
                    found.sort();
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
            self.diags
                .warning(tok, format!("include pattern `{pattern}` matched no files"));
            return;
        }

        let mut inner: Vec<Span> = vec![tok.span.clone()];
        inner.extend(chain.iter().cloned());
        let inner: Arc<[Span]> = inner.into();
        for file in matches {
            if file.is_dir() {
                self.diags.warning(
                    tok,
                    format!(
                        "include pattern `{pattern}` matched directory `{}`; skipped",
                        file.display()
                    ),
                );
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
                    self.process_text(&file, &text, inner.clone());
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

fn is_unquoted_prefix(t: &Token, c: char) -> bool {
    t.kind == TokenKind::Word && !t.quoted && t.text.starts_with(c)
}

/// `$NAME=...` → `NAME` (names: `[A-Za-z_][A-Za-z0-9_]*`, no space before `=`).
fn definition_name(word: &str) -> Option<&str> {
    let rest = word.strip_prefix('$')?;
    let (name, _) = rest.split_once('=')?;
    valid_name(name).then_some(name)
}

fn is_parameterised_definition(word: &str) -> bool {
    word.strip_prefix('$')
        .and_then(|r| r.split_once('('))
        .is_some_and(|(name, rest)| valid_name(name) && rest.contains('='))
}

fn valid_name(name: &str) -> bool {
    let mut cs = name.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// csh-style `{a,b}` expansion (glob(3) with GLOB_BRACE), which the glob crate lacks.
pub(crate) fn brace_expand(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    let Some(open) = chars.iter().position(|&c| c == '{') else {
        return vec![s.to_string()];
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
        return vec![s.to_string()];
    };
    let prefix: String = chars[..open].iter().collect();
    let suffix: String = chars[close + 1..].iter().collect();
    if commas.is_empty() {
        // `{x}` has no alternatives: keep it literally and expand what follows.
        let head: String = chars[..=close].iter().collect();
        return brace_expand(&suffix)
            .into_iter()
            .map(|t| format!("{head}{t}"))
            .collect();
    }
    let mut bounds = vec![open];
    bounds.extend(&commas);
    bounds.push(close);
    bounds
        .windows(2)
        .flat_map(|w| {
            let alt: String = chars[w[0] + 1..w[1]].iter().collect();
            brace_expand(&format!("{prefix}{alt}{suffix}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, id: &str) -> (Vec<Vec<String>>, Vec<Diagnostic>) {
        let mut diags = Diags::default();
        let mut sources = SourceMap::default();
        let lines = Preprocessor::new(id.into(), &mut diags, &mut sources)
            .run(Path::new("/nonexistent/dir/k.conf"), text);
        let words = lines
            .into_iter()
            .map(|l| l.into_iter().map(|t| t.text).collect())
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
        let (_, d) = run("x ${_RANDOM 1 5}\n", "n");
        assert_eq!(d[0].message, "`${_RANDOM}` is not supported yet");
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
    fn unsupported_preprocessor_features_are_errors() {
        let (lines, d) = run(
            "$M= \\\n~SEQ(A,1,3) ip ${A}\n$F(a)=x\nincludea /x\n~LST(I,1,2) x\n",
            "x",
        );
        let msgs: Vec<&str> = d.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            msgs,
            vec![
                "multi-line parameter definition `$M` is not supported yet",
                "`~SEQ` blocks are not supported yet",
                "parameterised (macro) definitions are not supported yet",
                "keyword `includea` is not supported yet",
                "`~LST` blocks are not supported yet",
            ]
        );
        assert!(lines.is_empty());
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
        assert_eq!(brace_expand("a/{b,c}/d"), vec!["a/b/d", "a/c/d"]);
        assert_eq!(
            brace_expand("{foo/{,cat,dog},bar}"),
            vec!["foo/", "foo/cat", "foo/dog", "bar"]
        );
        assert_eq!(brace_expand("x{y}z{1,2}"), vec!["x{y}z1", "x{y}z2"]);
        assert_eq!(brace_expand("plain"), vec!["plain"]);
    }
}
