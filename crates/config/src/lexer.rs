//! Splits one physical line of keepalived.conf into tokens with exact positions.
//!
//! keepalived's grammar is line based (a keyword takes the rest of its line), so the
//! lexer works a line at a time and the preprocessor keeps the line grouping.

use std::path::Path;
use std::sync::Arc;

use crate::model::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    /// An unquoted `{`.
    Open,
    /// An unquoted `}`.
    Close,
}

/// A token's text: up to 22 bytes (nearly every keyword and value) inline, longer
/// text on the heap. A large config has hundreds of thousands of tokens, and a heap
/// string each cost 32 bytes or more of allocation on top of the token.
#[derive(Clone)]
pub struct TokenText(Repr);

const INLINE: usize = 22;

#[derive(Clone)]
enum Repr {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<str>),
}

impl TokenText {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // SAFETY: `Inline` is only made by `From<&str>`, from all `len` bytes of a
            // `str` (so valid UTF-8, and `len` <= INLINE), and never changed after.
            // Unchecked: this is read for every keyword comparison of every node.
            Repr::Inline { len, buf } => unsafe {
                std::str::from_utf8_unchecked(buf.get_unchecked(..*len as usize))
            },
            Repr::Heap(s) => s,
        }
    }
}

impl From<&str> for TokenText {
    fn from(s: &str) -> Self {
        if s.len() <= INLINE {
            let mut buf = [0; INLINE];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            TokenText(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            TokenText(Repr::Heap(s.into()))
        }
    }
}

impl From<String> for TokenText {
    fn from(s: String) -> Self {
        if s.len() <= INLINE {
            TokenText::from(s.as_str())
        } else {
            TokenText(Repr::Heap(s.into_boxed_str()))
        }
    }
}

impl Default for TokenText {
    fn default() -> Self {
        TokenText::from("")
    }
}

impl std::ops::Deref for TokenText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for TokenText {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<std::path::Path> for TokenText {
    fn as_ref(&self) -> &std::path::Path {
        self.as_str().as_ref()
    }
}

impl AsRef<std::ffi::OsStr> for TokenText {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.as_str().as_ref()
    }
}

impl std::borrow::Borrow<str> for TokenText {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for TokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Debug for TokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for TokenText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for TokenText {}

impl std::hash::Hash for TokenText {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialEq<str> for TokenText {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TokenText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for TokenText {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<TokenText> for str {
    fn eq(&self, other: &TokenText) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<TokenText> for &str {
    fn eq(&self, other: &TokenText) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<TokenText> for String {
    fn eq(&self, other: &TokenText) -> bool {
        self == other.as_str()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// Text with quotes removed and escapes resolved.
    pub text: TokenText,
    /// Some part of the word was written in quotes.
    pub quoted: bool,
    /// 1-based line and column (in chars) of the token's first char.
    pub span: Span,
    /// Length in chars as written in the source (quotes included).
    pub len: u32,
    /// `include` directives that led to this token's file, innermost first (behind a
    /// thin pointer: one word per token, shared by every token of the file).
    pub include_chain: Arc<Vec<Span>>,
}

impl Token {
    pub fn is_word(&self) -> bool {
        self.kind == TokenKind::Word
    }
}

/// A token before it is tied to a file: positions are char offsets in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawToken {
    pub kind: TokenKind,
    /// Inline when short: no heap string per word on the way to its [`Token`].
    pub text: TokenText,
    pub quoted: bool,
    pub start: usize,
    pub len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    /// 0-based char offset.
    pub at: usize,
    pub len: usize,
    pub message: String,
}

/// The tokens of one line and where its trailing comment (if any) starts.
#[derive(Debug, Clone)]
pub(crate) struct Scanned<'a> {
    pub tokens: Vec<RawToken>,
    line: &'a str,
    /// The line's chars; `None` for a plain line (ASCII: its char offsets are its byte
    /// offsets), which is most lines: collecting them was a fifth of a large file's
    /// parse (a `Vec<char>` grown two or three times per line).
    chars: Option<Vec<char>>,
    /// Char offset of the comment start, or the line length.
    pub code_end: usize,
}

impl Scanned<'_> {
    /// Source text between two char offsets.
    pub fn text(&self, from: usize, to: usize) -> String {
        let from = from.min(to);
        match &self.chars {
            Some(chars) => chars[from..to].iter().collect(),
            None => self.line[from..to].to_string(),
        }
    }

    /// Whether the line was plain: ASCII, without quotes or `$` (nothing to expand).
    pub fn is_plain(&self) -> bool {
        self.chars.is_none()
    }

    /// The line's chars (collected here for a plain line).
    pub fn chars(&self) -> std::borrow::Cow<'_, [char]> {
        match &self.chars {
            Some(chars) => std::borrow::Cow::Borrowed(chars),
            None => std::borrow::Cow::Owned(self.line.chars().collect()),
        }
    }

    /// Whether the code (the line before its comment) has `c` at or after char `from`.
    pub fn code_has(&self, from: usize, c: char) -> bool {
        let from = from.min(self.code_end);
        match &self.chars {
            Some(chars) => chars[from..self.code_end].contains(&c),
            None => self.line[from..self.code_end].contains(c),
        }
    }
}

/// Scans a line. With `comments`, an unquoted `#` or `!` ends the line; that is off when
/// re-scanning substituted text, so `${_HASH}` can yield a literal `#`.
pub(crate) fn scan(line: &str, comments: bool) -> Result<Scanned<'_>, LexError> {
    match scan_plain(line, comments) {
        Some(s) => Ok(s),
        None => scan_general(line, comments),
    }
}

/// [`scan`] of the usual line: ASCII, with no quote and no `$`. Its words are then plain
/// runs between whitespace, braces and the comment, taken as slices (char offsets are
/// byte offsets); the general scanner grows each word char by char. `None` for any
/// other line.
fn scan_plain(line: &str, comments: bool) -> Option<Scanned<'_>> {
    let b = line.as_bytes();
    if !line.is_ascii() || b.iter().any(|c| matches!(c, b'"' | b'\'' | b'$')) {
        return None;
    }
    // `char::is_whitespace` on ASCII: tab, LF, VT, FF, CR, space.
    let space = |c: u8| matches!(c, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ');
    let comment = |c: u8| comments && (c == b'#' || c == b'!');
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if space(c) {
            i += 1;
            continue;
        }
        if comment(c) {
            break;
        }
        let start = i;
        let kind = match c {
            b'{' => TokenKind::Open,
            b'}' => TokenKind::Close,
            _ => {
                while i < b.len() && !space(b[i]) && b[i] != b'{' && b[i] != b'}' && !comment(b[i])
                {
                    i += 1;
                }
                TokenKind::Word
            }
        };
        if kind != TokenKind::Word {
            i += 1;
        }
        tokens.push(RawToken {
            kind,
            text: line[start..i].into(),
            quoted: false,
            start,
            len: i - start,
        });
    }
    Some(Scanned {
        tokens,
        line,
        chars: None,
        code_end: i,
    })
}

/// [`scan`] of any line.
fn scan_general(line: &str, comments: bool) -> Result<Scanned<'_>, LexError> {
    // Sized once (a `collect` grows from a quarter of the bytes).
    let mut chars: Vec<char> = Vec::with_capacity(line.len());
    chars.extend(line.chars());
    let n = chars.len();
    let mut tokens = Vec::new();
    let mut i = 0;
    let is_comment = |c: char| comments && (c == '#' || c == '!');
    // Where each `{` of the line closes, worked out once, when the first `${` asks:
    // searching from every `${` was quadratic in a line of many unclosed ones
    // (parameter expansion makes such lines; a fuzzed 0.5 kB config ran for minutes).
    let mut closes: Option<Vec<u32>> = None;
    while i < n {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if is_comment(c) {
            break;
        }
        if c == '{' || c == '}' {
            tokens.push(RawToken {
                kind: if c == '{' {
                    TokenKind::Open
                } else {
                    TokenKind::Close
                },
                text: if c == '{' { "{" } else { "}" }.into(),
                quoted: false,
                start: i,
                len: 1,
            });
            i += 1;
            continue;
        }
        let start = i;
        let mut text = String::new();
        let mut quoted = false;
        while i < n {
            let c = chars[i];
            if c.is_whitespace() || c == '{' || c == '}' || is_comment(c) {
                break;
            }
            if c == '"' || c == '\'' {
                quoted = true;
                let open = i;
                i += 1;
                loop {
                    if i >= n {
                        return Err(LexError {
                            at: open,
                            len: n - open,
                            message: format!("unterminated quoted string (missing closing {c})"),
                        });
                    }
                    let q = chars[i];
                    if q == c {
                        i += 1;
                        break;
                    }
                    if q == '\\' && i + 1 < n {
                        i = unescape(&chars, i + 1, &mut text);
                    } else {
                        text.push(q);
                        i += 1;
                    }
                }
                continue;
            }
            // `${NAME}` belongs to the word: its braces are not block delimiters.
            if c == '$' && chars.get(i + 1) == Some(&'{') {
                let close = closes.get_or_insert_with(|| brace_closes(&chars))[i + 1];
                if close != UNCLOSED {
                    let close = close as usize;
                    text.extend(&chars[i..=close]);
                    i = close + 1;
                    continue;
                }
            }
            text.push(c);
            i += 1;
        }
        tokens.push(RawToken {
            kind: TokenKind::Word,
            text: text.into(),
            quoted,
            start,
            len: i - start,
        });
    }
    Ok(Scanned {
        tokens,
        line,
        chars: Some(chars),
        code_end: i.min(n),
    })
}

const UNCLOSED: u32 = u32::MAX;

/// For each `{` of `chars`, the index of the `}` that closes it (nesting counted), else
/// [`UNCLOSED`]; other positions hold `UNCLOSED` too. One pass with a stack. A line is
/// far shorter than 4 G chars (the preprocessor bounds what it generates).
fn brace_closes(chars: &[char]) -> Vec<u32> {
    let mut closes = vec![UNCLOSED; chars.len()];
    let mut open = Vec::new();
    for (j, &c) in chars.iter().enumerate() {
        match c {
            '{' => open.push(j),
            '}' => {
                if let Some(o) = open.pop() {
                    closes[o] = j as u32;
                }
            }
            _ => {}
        }
    }
    closes
}

/// Resolves the escape whose first char (after the backslash) is at `i`; returns the
/// index after it. Follows the man page: \a \b \E \f \n \r \t \v \nnn \xXX \cC, \C = C.
fn unescape(chars: &[char], i: usize, out: &mut String) -> usize {
    let c = chars[i];
    let simple = match c {
        'a' => Some('\x07'),
        'b' => Some('\x08'),
        'E' => Some('\x1b'),
        'f' => Some('\x0c'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\x0b'),
        _ => None,
    };
    if let Some(s) = simple {
        out.push(s);
        return i + 1;
    }
    let digits = |from: usize, max: usize, radix: u32| {
        chars[from..]
            .iter()
            .take(max)
            .take_while(|c| c.is_digit(radix))
            .count()
    };
    match c {
        '0'..='7' => {
            let k = digits(i, 3, 8);
            let s: String = chars[i..i + k].iter().collect();
            let v = u32::from_str_radix(&s, 8).unwrap_or(0);
            out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            i + k
        }
        'x' if digits(i + 1, 2, 16) > 0 => {
            let k = digits(i + 1, 2, 16);
            let s: String = chars[i + 1..i + 1 + k].iter().collect();
            let v = u32::from_str_radix(&s, 16).unwrap_or(0);
            out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
            i + 1 + k
        }
        'c' if i + 1 < chars.len() => {
            let ctl = (chars[i + 1].to_ascii_uppercase() as u32) ^ 0x40;
            out.push(char::from_u32(ctl).unwrap_or('\u{fffd}'));
            i + 2
        }
        other => {
            out.push(other);
            i + 1
        }
    }
}

/// Turns a raw token of `file:line` into a positioned [`Token`].
pub(crate) fn place(raw: RawToken, file: &Arc<Path>, line: u32, chain: &Arc<Vec<Span>>) -> Token {
    Token {
        kind: raw.kind,
        text: raw.text,
        quoted: raw.quoted,
        span: Span {
            file: file.clone(),
            line,
            col: raw.start as u32 + 1,
        },
        len: raw.len as u32,
        include_chain: chain.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<(TokenKind, String, usize, bool)> {
        scan(line, true)
            .unwrap()
            .tokens
            .into_iter()
            .map(|t| (t.kind, t.text.to_string(), t.start, t.quoted))
            .collect()
    }

    #[test]
    fn brace_closes_agrees_with_searching_from_each_brace() {
        // Every line of up to 8 chars over `{`, `}`, `$`, `a`.
        let alphabet = ['{', '}', '$', 'a'];
        for len in 0..=8u32 {
            for mut code in 0..4usize.pow(len) {
                let chars: Vec<char> = (0..len)
                    .map(|_| {
                        let c = alphabet[code % 4];
                        code /= 4;
                        c
                    })
                    .collect();
                let table = brace_closes(&chars);
                for (open, &c) in chars.iter().enumerate() {
                    // The search it replaced (the one `~SEQ(` and macro uses still do).
                    let expected = if c == '{' {
                        crate::preprocess::matching_close(&chars, open, "{", "}")
                    } else {
                        None
                    };
                    let got = (table[open] != UNCLOSED).then_some(table[open] as usize);
                    assert_eq!(got, expected, "{chars:?} at {open}");
                }
            }
        }
    }

    /// A fuzzed config expanded to lines of tens of thousands of unclosed `${`; each
    /// searched the rest of the line for its `}`.
    #[test]
    fn a_line_of_many_unclosed_parameter_braces_scans_in_one_pass() {
        let line = "x".to_string() + &"${a".repeat(100_000) + " ${b} ${c";
        let s = scan(&line, true).unwrap();
        let texts: Vec<&str> = s.tokens.iter().map(|t| t.text.as_str()).collect();
        // `${a` has no `}`: its `{` is a block brace, and the `$` ends the word before.
        assert_eq!(texts.len(), 2 * 100_000 + 5, "{:?}", &texts[..4]);
        assert_eq!(&texts[..4], ["x$", "{", "a$", "{"]);
        assert_eq!(&texts[texts.len() - 5..], ["a", "${b}", "$", "{", "c"]);
    }

    #[test]
    fn splits_words_and_glued_braces() {
        use TokenKind::*;
        assert_eq!(
            words("vrrp_instance VI_1{"),
            vec![
                (Word, "vrrp_instance".into(), 0, false),
                (Word, "VI_1".into(), 14, false),
                (Open, "{".into(), 18, false),
            ]
        );
        assert_eq!(
            words("  }}a"),
            vec![
                (Close, "}".into(), 2, false),
                (Close, "}".into(), 3, false),
                (Word, "a".into(), 4, false),
            ]
        );
    }

    #[test]
    fn comments_end_the_line() {
        let s = scan("priority 100 # the # rest", true).unwrap();
        assert_eq!(s.tokens.len(), 2);
        assert_eq!(s.code_end, 13);
        let s = scan("state MASTER!comment", true).unwrap();
        assert_eq!(s.tokens[1].text, "MASTER");
        assert_eq!(scan("   ! only a comment", true).unwrap().tokens.len(), 0);
        // Without comment handling `#` is an ordinary char.
        assert_eq!(scan("a#b", false).unwrap().tokens[0].text, "a#b");
    }

    #[test]
    fn quoted_strings_keep_spaces_braces_and_comment_chars() {
        let t = words(r#"notify "/bin/x {y} # !z" 'a b'"#);
        assert_eq!(t[1].1, "/bin/x {y} # !z");
        assert!(t[1].3);
        assert_eq!(t[2].1, "a b");
        // A quote in the middle of a word joins it, as the man page describes.
        let t = words(r#"abcd" efg h jkl "mnop"#);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].1, "abcd efg h jkl mnop");
        let s = scan(r#"x "ab""#, true).unwrap();
        assert_eq!(s.tokens[1].len, 4);
    }

    #[test]
    fn escapes_in_quotes() {
        let t = words(r#""a\tb\"c\\d\x41\101\cA""#);
        assert_eq!(t[0].1, "a\tb\"c\\dAA\x01");
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        let e = scan(r#"auth_pass "secret"#, true).unwrap_err();
        assert_eq!(e.at, 10);
        assert!(e.message.contains("unterminated"));
    }

    #[test]
    fn parameter_braces_stay_in_the_word() {
        let t = words("${BASE}.100/32 {");
        assert_eq!(t[0].1, "${BASE}.100/32");
        assert_eq!(t[1].0, TokenKind::Open);
    }

    /// Short texts live in the token, long ones on the heap; both read back exactly and
    /// compare by content, whichever way they are stored.
    #[test]
    fn token_text_inline_and_heap() {
        assert_eq!(
            std::mem::size_of::<TokenText>(),
            std::mem::size_of::<String>()
        );
        for s in [
            "",
            "state",
            "1234567890123456789012",  // 22 bytes: inline
            "12345678901234567890123", // 23: heap
            "ééééééééééé",             // 22 bytes in 11 chars
            "/etc/keepalived/scripts/check_something.sh",
        ] {
            let t = TokenText::from(s);
            assert_eq!(t.as_str(), s);
            assert_eq!(t, TokenText::from(s.to_string()));
            let owned = s.to_string();
            assert!(t == s, "TokenText == &str");
            assert!(s == t, "&str == TokenText");
            assert!(t == owned, "TokenText == String");
            assert!(owned == t, "String == TokenText");
            assert_eq!(t.to_string(), s);
            assert_eq!(format!("{t:?}"), format!("{s:?}"));
        }
        assert_ne!(TokenText::from("a"), TokenText::from("ab"));
        assert_eq!(format!("[{:>4}]", TokenText::from("ab")), "[  ab]");
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        let t = words("é priority");
        assert_eq!(t[1].2, 2);
    }

    proptest::proptest! {
        /// The plain-line scanner gives what the general one gives, wherever it applies.
        #[test]
        fn plain_lines_scan_as_the_general_scanner_does(
            line in "[a-z0-9_./:{}#! \\t\\x0b\\x0c\\r-]{0,40}",
            comments in proptest::bool::ANY,
        ) {
            let plain = scan_plain(&line, comments).expect("a plain line");
            let general = scan_general(&line, comments).unwrap();
            proptest::prop_assert_eq!(&plain.tokens, &general.tokens);
            proptest::prop_assert_eq!(plain.chars(), general.chars());
            let end = plain.code_end;
            proptest::prop_assert_eq!(plain.text(0, end), general.text(0, end));
            for c in ['{', '#', 'a'] {
                proptest::prop_assert_eq!(plain.code_has(0, c), general.code_has(0, c));
            }
            proptest::prop_assert_eq!(plain.code_end, general.code_end);
        }
    }

    #[test]
    fn only_plain_lines_take_the_plain_scanner() {
        for line in ["a \"b\"", "a 'b'", "a ${B}", "a $B", "é b"] {
            assert!(scan_plain(line, true).is_none(), "{line}");
        }
        assert!(scan_plain("vrrp_instance V { # x", true).is_some());
    }
}
