//! Reading `docs/PROTOCOL.md`: its labelled fenced blocks (test vectors, their values, their
//! annotated bytes) and the tables marked for checking.

pub mod notation;

pub const SPEC_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");

pub fn spec() -> String {
    std::fs::read_to_string(SPEC_PATH).unwrap_or_else(|e| panic!("cannot read {SPEC_PATH}: {e}"))
}

/// What a labelled block holds, by the label on its first line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Label {
    /// `vector: <name>`: lines of whitespace-separated hex bytes, one complete unit on the wire.
    Vector,
    /// `value: <name>`: the value the vector of that name decodes to (`notation`).
    Value,
    /// `annotated: <name>`: the vector's bytes again, each line starting with hex bytes and
    /// going on, after two spaces or more, with an explanation.
    Annotated,
}

impl Label {
    fn parse(line: &str) -> Option<(Label, &str)> {
        let (label, name) = line.split_once(':')?;
        let label = match label {
            "vector" => Label::Vector,
            "value" => Label::Value,
            "annotated" => Label::Annotated,
            _ => return None,
        };
        Some((label, name.trim()))
    }
}

pub struct Block {
    pub label: Label,
    pub name: String,
    /// The lines after the label.
    pub lines: Vec<String>,
    /// 1-based line of the label, for error messages.
    pub line: usize,
}

/// Every labelled block of the document: a fenced block whose first line is a label. Fails on
/// a label without a name, a label and name used twice, an empty block and an unclosed fence.
pub fn blocks(doc: &str) -> Result<Vec<Block>, String> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut fence: Option<(usize, Option<Block>)> = None;
    for (index, raw) in doc.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim_end();
        if line.trim_start().starts_with("```") {
            match fence.take() {
                None => fence = Some((number, None)),
                Some((_, None)) => {}
                Some((_, Some(block))) if block.lines.is_empty() => {
                    return Err(format!("line {}: {:?} block is empty", block.line, block.name));
                }
                Some((_, Some(block))) => blocks.push(block),
            }
            continue;
        }
        match &mut fence {
            Some((opened, current @ None)) if *opened + 1 == number => {
                if let Some((label, name)) = Label::parse(line) {
                    if name.is_empty() {
                        return Err(format!("line {number}: label without a name"));
                    }
                    if blocks.iter().any(|b| b.label == label && b.name == name) {
                        return Err(format!("line {number}: {label:?} {name:?} appears twice"));
                    }
                    let name = name.to_owned();
                    *current = Some(Block { label, name, lines: Vec::new(), line: number });
                }
            }
            Some((_, Some(block))) => block.lines.push(line.to_owned()),
            _ => {}
        }
    }
    match fence {
        Some((opened, _)) => Err(format!("line {opened}: fenced block never closed")),
        None => Ok(blocks),
    }
}

fn hex_byte(token: &str) -> Option<u8> {
    (token.len() == 2).then(|| u8::from_str_radix(token, 16).ok()).flatten()
}

/// The bytes of a `vector:` block: every token of every line is a hex byte.
pub fn vector_bytes(block: &Block) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    for (offset, line) in block.lines.iter().enumerate() {
        for token in line.split_whitespace() {
            let number = block.line + 1 + offset;
            bytes.push(
                hex_byte(token).ok_or(format!("line {number}: {token:?} is not a hex byte"))?,
            );
        }
    }
    Ok(bytes)
}

/// The bytes of an `annotated:` block: the hex bytes that start each line, up to two spaces
/// or a token that is not a hex byte.
pub fn annotated_bytes(block: &Block) -> Vec<u8> {
    block
        .lines
        .iter()
        .flat_map(|line| {
            let line = line.trim_start();
            let column = line.split_once("  ").map_or(line, |(column, _)| column);
            column.split(' ').map_while(hex_byte).collect::<Vec<_>>()
        })
        .collect()
}

/// The rows of the markdown table that follows the line `<!-- check: {name} -->`, header and
/// separator rows dropped, cells trimmed and stripped of backticks.
pub fn table(doc: &str, name: &str) -> Vec<Vec<String>> {
    let marker = format!("<!-- check: {name} -->");
    let mut lines = doc.lines().skip_while(|line| line.trim() != marker);
    assert!(lines.next().is_some(), "the spec has no `{marker}` table");
    lines
        .skip_while(|line| !line.trim_start().starts_with('|'))
        .take_while(|line| line.trim_start().starts_with('|'))
        .skip(2)
        .map(|line| {
            let line = line.trim().trim_start_matches('|').trim_end_matches('|');
            line.split('|').map(|cell| cell.trim().replace('`', "")).collect()
        })
        .collect()
}
