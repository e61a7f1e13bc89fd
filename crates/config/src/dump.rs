//! `vipd check-config --dump`: the configuration after `include`, `@` conditionals,
//! `$` parameters and `~SEQ`/`~LST` blocks are resolved, one keyword per line with
//! four-space indentation. The output parses back to the same model.

use crate::tree::Node;

/// Renders `nodes` as normalised keepalived.conf text.
pub fn dump(nodes: &[Node]) -> String {
    let mut out = String::new();
    write_nodes(nodes, 0, false, &mut out);
    out
}

/// What an inline `auth_hmac` key is replaced with: keys never leave the file.
pub const REDACTED: &str = "<redacted>";

fn write_nodes(nodes: &[Node], depth: usize, in_auth_hmac: bool, out: &mut String) {
    for n in nodes {
        for _ in 0..depth {
            out.push_str("    ");
        }
        out.push_str(&quote(&n.keyword.text, true));
        for (i, a) in n.args.iter().enumerate() {
            out.push(' ');
            // `auth_hmac { key ID VALUE }`: the value is a secret unless it names a file.
            if in_auth_hmac && n.keyword.text == "key" && i == 1 && !a.text.starts_with("file:") {
                out.push_str(REDACTED);
            } else {
                out.push_str(&quote(&a.text, false));
            }
        }
        if let Some(children) = &n.children {
            if children.is_empty() {
                out.push_str(" {\n");
            } else {
                out.push_str(" {\n");
                write_nodes(children, depth + 1, n.keyword.text == "auth_hmac", out);
            }
            for _ in 0..depth {
                out.push_str("    ");
            }
            out.push('}');
        }
        out.push('\n');
    }
}

/// One argument word as `--dump` writes it (quoted when needed).
pub fn dump_word(text: &str) -> String {
    quote(text, false)
}

/// Quotes a word when reading it back unquoted would change it: whitespace, comment and
/// brace characters, quotes, backslashes, `$` (parameters), and, at the start of a line,
/// `@`, `~` and the preprocessor directives.
pub(crate) fn quote(text: &str, line_start: bool) -> String {
    let special = text.is_empty()
        || text.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '#' | '!' | '{' | '}' | '"' | '\'' | '\\' | '$')
        })
        || (line_start
            && (text.starts_with('@')
                || text.starts_with('~')
                || matches!(
                    text,
                    "include" | "includer" | "includem" | "includew" | "includeb" | "includea"
                )));
    if !special {
        return text.to_string();
    }
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\t' => s.push_str("\\t"),
            '\r' => s.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                s.push_str(&format!("\\{:03o}", c as u32));
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("eth0", false), "eth0");
        assert_eq!(quote("a b", false), "\"a b\"");
        assert_eq!(quote("x\"y\\z", false), "\"x\\\"y\\\\z\"");
        assert_eq!(quote("@main", true), "\"@main\"");
        assert_eq!(quote("@main", false), "@main");
        assert_eq!(quote("${X}", false), "\"${X}\"");
        assert_eq!(quote("", false), "\"\"");
        assert_eq!(quote("a\x01", false), "\"a\\001\"");
    }
}
