//! Errors and warnings with exact source positions, rendered rustc-style.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use crate::lexer::Token;
use crate::model::Span;

/// What a finding needs of where something was written: its position, its length
/// (for the caret underline) and the includes that led to its file.
pub trait Place {
    fn place(&self) -> (&Span, u32, &[Span]);
}

impl<T: Place + ?Sized> Place for &T {
    fn place(&self) -> (&Span, u32, &[Span]) {
        (**self).place()
    }
}

impl<T: Place + ?Sized> Place for Box<T> {
    fn place(&self) -> (&Span, u32, &[Span]) {
        (**self).place()
    }
}

impl Place for Token {
    fn place(&self) -> (&Span, u32, &[Span]) {
        (&self.span, self.len, &self.include_chain)
    }
}

/// A token's place without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub span: Span,
    pub len: u32,
    pub include_chain: std::sync::Arc<Vec<Span>>,
}

impl Place for Loc {
    fn place(&self) -> (&Span, u32, &[Span]) {
        (&self.span, self.len, &self.include_chain)
    }
}

impl From<&Token> for Loc {
    fn from(t: &Token) -> Self {
        Loc {
            span: t.span.clone(),
            len: t.len,
            include_chain: t.include_chain.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One finding about the configuration.
///
/// `span.line == 0` means the finding concerns a whole file (e.g. it cannot be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Length in chars of the offending token, for the caret underline.
    pub len: u32,
    pub help: Option<String>,
    /// Innermost first: the `include` directive that pulled in `span.file`, then the one
    /// that pulled in that file, and so on.
    pub include_chain: Vec<Span>,
    /// The source line `span.line`, filled in by the loader so `Display` needs no file access.
    pub snippet: Option<String>,
    /// Machine-readable class of the finding. `Some("inactive")`: the keyword is parsed
    /// and checked, but the runtime does not act on it yet (see [`crate::Loaded::inactive`]).
    pub code: Option<&'static str>,
}

/// [`Diagnostic::code`] of "parsed but not active yet" warnings.
pub const INACTIVE: &str = "inactive";

impl Diagnostic {
    pub fn new(severity: Severity, message: impl Into<String>, span: Span, len: u32) -> Self {
        Diagnostic {
            severity,
            message: message.into(),
            span,
            len,
            help: None,
            include_chain: Vec::new(),
            snippet: None,
            code: None,
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// A "parsed but not active yet" warning.
    pub fn is_inactive(&self) -> bool {
        self.code == Some(INACTIVE)
    }

    /// Diagnostic pointing at `tok`, carrying its include chain.
    pub fn at(severity: Severity, message: impl Into<String>, at: &impl Place) -> Self {
        let (span, len, chain) = at.place();
        let mut d = Diagnostic::new(severity, message, span.clone(), len);
        d.include_chain = chain.to_vec();
        d
    }

    pub fn error_at(message: impl Into<String>, tok: &impl Place) -> Self {
        Self::at(Severity::Error, message, tok)
    }

    pub fn warning_at(message: impl Into<String>, tok: &impl Place) -> Self {
        Self::at(Severity::Warning, message, tok)
    }

    /// A finding about a whole file rather than a position in it.
    pub fn file_error(message: impl Into<String>, file: PathBuf) -> Self {
        Diagnostic::new(
            Severity::Error,
            message,
            Span {
                file: file.into(),
                line: 0,
                col: 0,
            },
            0,
        )
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_chain(mut self, chain: Vec<Span>) -> Self {
        self.include_chain = chain;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn to_json(&self) -> serde_json::Value {
        let chain: Vec<_> = self
            .include_chain
            .iter()
            .map(|s| serde_json::json!({"file": &*s.file, "line": s.line, "col": s.col}))
            .collect();
        serde_json::json!({
            "severity": self.severity,
            "message": self.message,
            "file": &*self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "len": self.len,
            "help": self.help,
            "include_chain": chain,
            "code": self.code,
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.span.file.display();
        if self.span.line == 0 {
            write!(f, "{file}: {}: {}", self.severity, self.message)?;
        } else {
            write!(
                f,
                "{file}:{}:{}: {}: {}",
                self.span.line, self.span.col, self.severity, self.message
            )?;
        }
        let lineno = self.span.line.to_string();
        let pad = " ".repeat(lineno.len() + 1);
        if let (Some(src), true) = (&self.snippet, self.span.line > 0) {
            write!(f, "\n{pad}|\n{lineno} | {src}\n{pad}| ")?;
            // Keep tabs so the caret lines up with the source as a terminal shows it.
            let indent: String = src
                .chars()
                .take(self.span.col.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "{indent}{}", "^".repeat(self.len.max(1) as usize))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n{pad}= help: {help}")?;
        }
        for inc in &self.include_chain {
            write!(
                f,
                "\n{pad}= note: included from {}:{}:{}",
                inc.file.display(),
                inc.line,
                inc.col
            )?;
        }
        Ok(())
    }
}

/// Source text of every file read, so diagnostics can quote their line.
#[derive(Debug, Default)]
pub(crate) struct SourceMap {
    /// Per file: its index in `texts` and the byte offset of each line's start there.
    files: HashMap<PathBuf, (usize, Vec<u32>)>,
    /// Files in the order they were first read, to sort findings in reading order.
    order: Vec<PathBuf>,
    /// The include chain each file was (first) read through.
    chains: HashMap<PathBuf, Vec<Span>>,
    /// Every file's text exactly as read, in reading order (shared with the
    /// preprocessor while it reads the file: one copy of the text, not two).
    texts: Vec<(PathBuf, Rc<String>)>,
}

impl SourceMap {
    /// Records a file read and returns its text; a file read again keeps its first text.
    pub fn add(&mut self, path: PathBuf, text: String) -> Rc<String> {
        if let Some((i, _)) = self.files.get(&path) {
            return self.texts[*i].1.clone();
        }
        // Lines as offsets into the one copy of the text (not a String or a range
        // each), as `str::lines` splits them; exactly sized.
        // One pass over the bytes (a line of a few dozen bytes made a search call
        // each, twice: ~5 % of loading a 132,000-line file).
        let mut starts: Vec<u32> = (!text.is_empty())
            .then_some(0)
            .into_iter()
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(i, b)| b == b'\n' && i + 1 < text.len())
                    .map(|(i, _)| i + 1),
            )
            .map_while(|at| u32::try_from(at).ok())
            .collect();
        starts.shrink_to_fit();
        let text = Rc::new(text);
        self.order.push(path.clone());
        self.files.insert(path.clone(), (self.texts.len(), starts));
        self.texts.push((path, text.clone()));
        text
    }

    /// Line `line` (1-based) of a file read, as in `str::lines`.
    fn line(&self, file: &std::path::Path, line: u32) -> Option<&str> {
        let (i, starts) = self.files.get(file)?;
        let start = *starts.get((line as usize).checked_sub(1)?)? as usize;
        let text = &self.texts[*i].1[start..];
        let l = text.find('\n').map_or(text, |end| &text[..end]);
        Some(l.strip_suffix('\r').unwrap_or(l))
    }

    /// The files read, in reading order, each once, with their text as read.
    pub fn into_texts(self) -> Vec<(PathBuf, String)> {
        (self.texts.into_iter())
            .map(|(p, t)| (p, Rc::try_unwrap(t).unwrap_or_else(|t| (*t).clone())))
            .collect()
    }

    /// Sorts findings by file (in reading order), line and column; stable, so findings
    /// at one position keep their discovery order.
    pub fn sort(&self, diags: &mut [Diagnostic]) {
        let rank = |d: &Diagnostic| {
            let file = self.order.iter().position(|p| **p == *d.span.file);
            (file.unwrap_or(usize::MAX), d.span.line, d.span.col)
        };
        diags.sort_by_key(rank);
    }

    pub fn set_chain(&mut self, path: &std::path::Path, chain: &[Span]) {
        if !chain.is_empty() {
            self.chains
                .entry(path.to_path_buf())
                .or_insert_with(|| chain.to_vec());
        }
    }

    /// Gives findings raised after parsing (which only know a position) the include
    /// chain of their file.
    pub fn attach_chains(&self, diags: &mut [Diagnostic]) {
        for d in diags {
            if d.include_chain.is_empty() {
                if let Some(c) = self.chains.get(&*d.span.file) {
                    d.include_chain = c.clone();
                }
            }
        }
    }

    pub fn attach_snippets(&self, diags: &mut [Diagnostic]) {
        for d in diags {
            if d.snippet.is_some() || d.span.line == 0 {
                continue;
            }
            d.snippet = self.line(&d.span.file, d.span.line).map(redact_secret);
        }
    }
}

/// An `auth_hmac` line `key ID VALUE` shows `<redacted>` for an inline VALUE (a
/// `file:` path is no secret): diagnostics end up in logs. (SSL's `key PATH` has one
/// argument and is left alone.)
fn redact_secret(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["key", _, value, ..] if !value.starts_with("file:") => {
            let at = line.find(value).unwrap_or(line.len());
            format!("{}{}", &line[..at], crate::dump::REDACTED)
        }
        _ => line.to_string(),
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn key_values_are_redacted_in_snippets() {
        use super::redact_secret;
        assert_eq!(
            redact_secret("        key 1 hex:0011 # x"),
            "        key 1 <redacted>"
        );
        assert_eq!(redact_secret("  key 2 file:/k"), "  key 2 file:/k");
        assert_eq!(
            redact_secret("  key /etc/ssl/k.pem"),
            "  key /etc/ssl/k.pem"
        );
        assert_eq!(redact_secret("  priority 100"), "  priority 100");
    }
}

/// Collects findings in discovery order.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub list: Vec<Diagnostic>,
}

impl Diags {
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }

    pub fn error(&mut self, tok: &impl Place, msg: impl Into<String>) {
        self.list.push(Diagnostic::error_at(msg, tok));
    }

    pub fn error_help(
        &mut self,
        tok: &impl Place,
        msg: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.list
            .push(Diagnostic::error_at(msg, tok).with_help(help));
    }

    pub fn warning(&mut self, tok: &impl Place, msg: impl Into<String>) {
        self.list.push(Diagnostic::warning_at(msg, tok));
    }

    /// Warns that `tok` (a keyword or option) is parsed but its runtime is not built yet.
    pub fn inactive(&mut self, tok: &Token, what: &str) {
        self.list.push(
            Diagnostic::warning_at(format!("{what} is parsed but not active yet"), tok)
                .with_code(INACTIVE)
                .with_help("vipd checks it but does not act on it yet; `vipd run` refuses to start with inactive features unless given `--ignore-inactive`"),
        );
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(Diagnostic::is_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Snippets are the lines of the file a finding names, as `str::lines` splits
    /// them (CRLF too); the texts come back whole, in reading order, once each.
    #[test]
    fn source_map_lines_and_texts() {
        let mut m = SourceMap::default();
        m.add("a.conf".into(), "one\r\ntwo\n\nfour".into());
        m.add("b.conf".into(), "only\n".into());
        m.add("a.conf".into(), "read again: ignored".into());
        let a = Path::new("a.conf");
        let got: Vec<Option<&str>> = (0..6).map(|l| m.line(a, l)).collect();
        assert_eq!(
            got,
            [None, Some("one"), Some("two"), Some(""), Some("four"), None]
        );
        assert_eq!(m.line(Path::new("b.conf"), 1), Some("only"));
        // No line after the last newline, none in an empty file (as `str::lines`).
        assert_eq!(m.line(Path::new("b.conf"), 2), None);
        m.add("empty.conf".into(), String::new());
        assert_eq!(m.line(Path::new("empty.conf"), 1), None);
        assert_eq!(m.line(Path::new("c.conf"), 1), None);
        let mut d = sample();
        d.snippet = None;
        d.span.file = Path::new("a.conf").into();
        d.span.line = 2;
        let mut ds = vec![d];
        m.attach_snippets(&mut ds);
        assert_eq!(ds[0].snippet.as_deref(), Some("two"));
        assert_eq!(
            m.into_texts(),
            [
                (PathBuf::from("a.conf"), "one\r\ntwo\n\nfour".to_string()),
                (PathBuf::from("b.conf"), "only\n".to_string()),
                (PathBuf::from("empty.conf"), String::new())
            ]
        );
    }

    fn sample() -> Diagnostic {
        let mut d = Diagnostic::new(
            Severity::Error,
            "unknown keyword `priorty`",
            Span {
                file: Path::new("path/to/keepalived.conf").into(),
                line: 12,
                col: 5,
            },
            7,
        )
        .with_help("did you mean `priority`?")
        .with_chain(vec![Span {
            file: Path::new("/etc/keepalived/keepalived.conf").into(),
            line: 3,
            col: 1,
        }]);
        d.snippet = Some("    priorty 100".into());
        d
    }

    #[test]
    fn renders_rustc_style() {
        let expected = "\
path/to/keepalived.conf:12:5: error: unknown keyword `priorty`
   |
12 |     priorty 100
   |     ^^^^^^^
   = help: did you mean `priority`?
   = note: included from /etc/keepalived/keepalived.conf:3:1";
        assert_eq!(sample().to_string(), expected);
    }

    #[test]
    fn renders_without_snippet_and_for_whole_file() {
        let mut d = sample();
        d.snippet = None;
        d.help = None;
        d.include_chain.clear();
        assert_eq!(
            d.to_string(),
            "path/to/keepalived.conf:12:5: error: unknown keyword `priorty`"
        );
        let f = Diagnostic::file_error("cannot read file: gone", "/x.conf".into());
        assert_eq!(f.to_string(), "/x.conf: error: cannot read file: gone");
    }

    #[test]
    fn caret_keeps_tabs() {
        let mut d = sample();
        d.snippet = Some("\tpriorty 100".into());
        d.span.col = 2;
        d.help = None;
        d.include_chain.clear();
        assert!(d
            .to_string()
            .ends_with("12 | \tpriorty 100\n   | \t^^^^^^^"));
    }

    #[test]
    fn json_has_all_fields() {
        let j = sample().to_json();
        assert_eq!(j["severity"], "error");
        assert_eq!(j["message"], "unknown keyword `priorty`");
        assert_eq!(j["file"], "path/to/keepalived.conf");
        assert_eq!(j["line"], 12);
        assert_eq!(j["col"], 5);
        assert_eq!(j["len"], 7);
        assert_eq!(j["help"], "did you mean `priority`?");
        assert_eq!(j["include_chain"][0]["line"], 3);
        assert_eq!(
            j["include_chain"][0]["file"],
            "/etc/keepalived/keepalived.conf"
        );
    }
}
