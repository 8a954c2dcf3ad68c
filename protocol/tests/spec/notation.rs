//! The notation the spec writes frame values in: the reference implementation's `Debug`
//! output, with the body type named after its frame kind (`Error { .. }`, not `ErrorFrame`),
//! laid out freely. Two renderings are the same value when they are equal once whitespace
//! outside string literals and commas before a closing bracket are dropped.

use chute_protocol::Frame;

/// The frame's body as the spec writes it, on one line.
pub fn render(frame: &Frame) -> String {
    let kind = format!("{:?}", frame.kind());
    let debug = format!("{frame:?}");
    // `Frame`'s Debug wraps the body in the variant: `Error(ErrorFrame { .. })`.
    let body = debug
        .strip_prefix(&format!("{kind}("))
        .and_then(|rest| rest.strip_suffix(')'))
        .expect("Frame's Debug is Variant(body)");
    let name_len = body.find(|c: char| !c.is_alphanumeric()).unwrap_or(body.len());
    format!("{kind}{}", &body[name_len..])
}

/// `text` with whitespace outside string literals and commas before a closing bracket dropped.
pub fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = Scanner::new(text);
    while let Some((c, in_string)) = chars.next_char() {
        if in_string {
            out.push(c);
        } else if !c.is_whitespace() {
            if matches!(c, '}' | ']' | ')') && out.ends_with(',') {
                out.pop();
            }
            out.push(c);
        }
    }
    out
}

/// A one-line rendering laid out to fit `width` columns: a group that does not fit on its line
/// puts each item on a line of its own, indented by four, with a trailing comma.
pub fn layout(text: &str, width: usize) -> String {
    let mut out = String::new();
    layout_into(&mut out, text, 0, width);
    out
}

fn layout_into(out: &mut String, text: &str, indent: usize, width: usize) {
    let Some(open) = first_group(text).filter(|_| indent + text.len() > width) else {
        out.push_str(text);
        return;
    };
    let (head, inner) = (&text[..=open], &text[open + 1..text.len() - 1]);
    out.push_str(head);
    for item in split_items(inner) {
        out.push('\n');
        out.push_str(&" ".repeat(indent + 4));
        layout_into(out, item, indent + 4, width);
        out.push(',');
    }
    out.push('\n');
    out.push_str(&" ".repeat(indent));
    out.push_str(&text[text.len() - 1..]);
}

/// The byte offset of the first bracket outside a string literal that opens a group running to
/// the end of `text` (`Name { .. }`, `[..]`, `Some(..)`).
fn first_group(text: &str) -> Option<usize> {
    let mut scanner = Scanner::new(text);
    let open = loop {
        let (c, in_string) = scanner.next_char()?;
        if !in_string && matches!(c, '{' | '[' | '(') {
            break scanner.offset - 1;
        }
    };
    let closes_at_end = matches!(text.as_bytes().last(), Some(b'}' | b']' | b')'));
    closes_at_end.then_some(open)
}

/// The items of a group's inside, split at its top-level commas and trimmed.
fn split_items(inner: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    let mut scanner = Scanner::new(inner);
    while let Some((c, in_string)) = scanner.next_char() {
        match c {
            _ if in_string => {}
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(inner[start..scanner.offset - 1].trim());
                start = scanner.offset;
            }
            _ => {}
        }
    }
    items.push(inner[start..].trim());
    items.retain(|item| !item.is_empty());
    items
}

/// The characters of a rendering, each with whether it lies inside a string literal (its
/// quotes included), and the byte offset after the last one returned.
struct Scanner<'a> {
    text: &'a str,
    offset: usize,
    in_string: bool,
    escaped: bool,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, offset: 0, in_string: false, escaped: false }
    }

    fn next_char(&mut self) -> Option<(char, bool)> {
        let c = self.text[self.offset..].chars().next()?;
        self.offset += c.len_utf8();
        let in_string = self.in_string || c == '"';
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if c == '\\' {
                self.escaped = true;
            } else if c == '"' {
                self.in_string = false;
            }
        } else if c == '"' {
            self.in_string = true;
        }
        Some((c, in_string))
    }
}
