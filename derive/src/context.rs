//! Where the annotated function sits: an attribute on an associated function receives the
//! function alone, and the companions `#[grad]` emits (`FGrad`, the rule companion) are
//! items an `impl` or `trait` cannot hold. rustc then reports each of them, and every
//! use of them, as errors of its own. To give one error instead, the macro reads the
//! source file the function's span points to (`proc_macro::Span::local_file`, stable
//! since Rust 1.88) and finds the block that encloses it.
//!
//! The scan is conservative: anything it cannot place (a span from a macro expansion, a
//! file that does not read back as expected) answers "not in an impl", the old behaviour.
//! `#[grad]` on the `impl` itself (`methods.rs`) needs none of this; the scan only lets
//! a `#[grad]` method without it say so, once.

/// The kind of block a function is declared directly inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// `impl Model { .. }`, `impl<T> Model<T> where .. { .. }`.
    Impl,
    /// `impl Loss for Model { .. }`.
    TraitImpl,
    /// `trait Loss { .. }`.
    Trait,
    /// A module, a function body, ...
    Other,
}

/// The block that the function whose `fn` keyword has this span is declared directly
/// in. `Some(Block::Other)` in a function body or a `mod`; `None` at the top level of a
/// file, and when that cannot be known (outside rustc, in a macro's expansion).
pub fn enclosing_block(fn_token: proc_macro2::Span) -> Option<Block> {
    if !proc_macro::is_available() {
        return None;
    }
    let span = fn_token.unwrap();
    let path = span.local_file()?;
    let text = std::fs::read_to_string(path).ok()?;
    let offset = offset_of(&text, span.line(), span.column())?;
    if !text[offset..].starts_with("fn") {
        return None;
    }
    enclosing_header(&text, offset).map(|h| block_kind(&h))
}

/// The byte offset of a 1-based line and column (columns count chars).
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    let start = if line == 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let rest = &text[start..];
    rest.char_indices()
        .nth(column.checked_sub(1)?)
        .map(|(i, _)| start + i)
}

/// The text before the `{` of the innermost block open at `offset` (from the previous
/// `;`, `{` or `}`), or `None` at the top level of the file. Comments, strings and char
/// literals are skipped.
pub fn enclosing_header(text: &str, offset: usize) -> Option<String> {
    let bytes = text.as_bytes();
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let mut header_start = 0;
    let mut i = 0;
    while i < offset.min(bytes.len()) {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'r' if is_raw_string_start(bytes, i) => {
                i = skip_raw_string(bytes, i);
                continue;
            }
            b'"' => {
                i = skip_string(bytes, i);
                continue;
            }
            b'\'' => {
                i = skip_char_or_lifetime(bytes, i);
                continue;
            }
            b'{' => {
                stack.push((header_start, i));
                header_start = i + 1;
            }
            b'}' => {
                stack.pop();
                header_start = i + 1;
            }
            b';' => header_start = i + 1,
            _ => {}
        }
        i += 1;
    }
    stack.last().map(|&(s, e)| text[s..e].to_string())
}

fn is_raw_string_start(bytes: &[u8], i: usize) -> bool {
    // `r"`, `r#"`, `br"`: not the end of an identifier (`for"` cannot occur, `bar#` can't).
    let prev_ident = i > 0
        && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')
        && !(bytes[i - 1] == b'b' && (i < 2 || !bytes[i - 2].is_ascii_alphanumeric()));
    if prev_ident {
        return false;
    }
    let mut j = i + 1;
    while bytes.get(j) == Some(&b'#') {
        j += 1;
    }
    bytes.get(j) == Some(&b'"')
}

fn skip_raw_string(bytes: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    let mut hashes = 0;
    while bytes.get(j) == Some(&b'#') {
        hashes += 1;
        j += 1;
    }
    j += 1; // the opening quote
    while j < bytes.len() {
        if bytes[j] == b'"'
            && bytes[j + 1..]
                .iter()
                .take(hashes)
                .filter(|&&b| b == b'#')
                .count()
                == hashes
        {
            return j + 1 + hashes;
        }
        j += 1;
    }
    j
}

fn skip_string(bytes: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    while j < bytes.len() {
        match bytes[j] {
            b'\\' => j += 2,
            b'"' => return j + 1,
            _ => j += 1,
        }
    }
    j
}

/// `'x'`, `'\n'`, `'\u{1F600}'` are char literals; `'a` (a lifetime or label) is not.
fn skip_char_or_lifetime(bytes: &[u8], i: usize) -> usize {
    if bytes.get(i + 1) == Some(&b'\\') {
        let mut j = i + 2;
        while j < bytes.len() && bytes[j] != b'\'' {
            j += 1;
        }
        return j + 1;
    }
    // One char (possibly multi-byte) then a quote: a char literal.
    let rest = std::str::from_utf8(&bytes[i + 1..]).unwrap_or("");
    let mut chars = rest.char_indices();
    if let (Some((_, _)), Some((k, '\''))) = (chars.next(), chars.next()) {
        return i + 1 + k + 1;
    }
    i + 1
}

/// `impl<T> Model<T> where ..`, `unsafe impl ..`, `impl Loss for Model`, `pub trait
/// Loss`, with attributes and doc comments before them.
fn block_kind(header: &str) -> Block {
    let mut words = header
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("#[") && !l.starts_with("//"))
        .flat_map(str::split_whitespace);
    for w in words.by_ref() {
        match w {
            "pub" | "unsafe" | "default" | "auto" => continue,
            w if w.starts_with("pub(") => continue,
            "trait" => return Block::Trait,
            w if w == "impl" || w.starts_with("impl<") => {
                // `for` as a word of its own outside `<..>` (not `for<'a>` in a bound).
                let mut depth = w.matches('<').count() as i64 - w.matches('>').count() as i64;
                for rest in words.by_ref() {
                    if rest == "for" && depth <= 0 {
                        return Block::TraitImpl;
                    }
                    if rest == "where" && depth <= 0 {
                        break;
                    }
                    depth += rest.matches('<').count() as i64;
                    depth -= rest.matches('>').count() as i64 - rest.matches("->").count() as i64;
                }
                return Block::Impl;
            }
            _ => return Block::Other,
        }
    }
    Block::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_at(src: &str, marker: &str) -> Option<String> {
        enclosing_header(src, src.find(marker).expect("marker"))
    }

    #[test]
    fn finds_the_enclosing_impl_or_trait() {
        let src = r##"
            struct M;
            /// docs { with a brace
            impl M {
                #[grad]
                fn inside(x: f64) -> f64 { x }
            }
            fn outside(x: f64) -> f64 {
                let s = "impl { not a block";
                let c = '{';
                let r = r#"}"#;
                x
            }
            pub(crate) trait T { fn traited(); }
            mod m { fn in_mod() {} }
            impl<'a, T: Clone> Wrap<'a, T> where T: Copy { fn generic() {} }
            impl<T> Loss for Wrap<T> { fn for_trait() {} }
            impl<F: for<'a> Fn(&'a f64) -> f64> Holder<F> where F: Copy { fn hrtb() {} }
        "##;
        let kind = |marker| block_kind(&header_at(src, marker).unwrap());
        assert_eq!(kind("fn inside"), Block::Impl);
        assert_eq!(header_at(src, "fn outside"), None);
        assert_eq!(kind("fn traited"), Block::Trait);
        assert_eq!(kind("fn in_mod"), Block::Other);
        assert_eq!(kind("fn generic"), Block::Impl);
        assert_eq!(kind("fn for_trait"), Block::TraitImpl);
        assert_eq!(kind("fn hrtb"), Block::Impl);
        // After the function with the tricky literals, the top level again.
        let after = src.find("pub(crate) trait").unwrap();
        assert_eq!(enclosing_header(src, after), None);
    }

    #[test]
    fn a_function_in_a_function_body_is_not_in_an_impl() {
        let src = "impl M { fn a() { fn helper() {} } }";
        assert_eq!(
            block_kind(&header_at(src, "fn helper").unwrap()),
            Block::Other
        );
    }

    #[test]
    fn offsets_count_lines_and_chars_from_one() {
        let text = "ab\nx→fn y";
        assert_eq!(offset_of(text, 1, 1), Some(0));
        assert_eq!(&text[offset_of(text, 2, 3).unwrap()..], "fn y");
    }
}
