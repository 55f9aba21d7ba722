//! A minimal XML writer for audit messages: elements, attributes, text, every value escaped.
//!
//! Values come from peers (AE titles, patient names, user names typed into a login form): a
//! hostile one must not be able to close an attribute or an element, nor carry a character XML
//! 1.0 forbids (a control character makes the whole message unparseable at the collector).
//! Line breaks are written as character references, so a message is always one line — the
//! local file keeps one message per line and no syslog relay splits it.

/// Append `value` to `out` escaped for an attribute value or text: `& < > " '` become
/// entities, `\t \n \r` character references, other characters XML 1.0 does not allow
/// (C0 controls, U+FFFE/U+FFFF; Rust strings hold no lone surrogates) U+FFFD.
pub fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Builds one document. Element and attribute names are our own constants, never peer data.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
    /// Open elements, innermost last.
    open: Vec<&'static str>,
    /// The start tag of the innermost element is not closed yet (attributes may follow).
    in_start_tag: bool,
}

impl XmlWriter {
    pub fn new() -> XmlWriter {
        XmlWriter {
            out: String::from(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
            ..Default::default()
        }
    }

    fn close_start_tag(&mut self) {
        if self.in_start_tag {
            self.out.push('>');
            self.in_start_tag = false;
        }
    }

    /// Open `<name`; attributes may follow until a child, text or [`XmlWriter::end`].
    pub fn start(&mut self, name: &'static str) -> &mut Self {
        self.close_start_tag();
        self.out.push('<');
        self.out.push_str(name);
        self.open.push(name);
        self.in_start_tag = true;
        self
    }

    /// An attribute of the element just started.
    pub fn attr(&mut self, name: &'static str, value: &str) -> &mut Self {
        debug_assert!(self.in_start_tag, "attribute {name} outside a start tag");
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_into(&mut self.out, value);
        self.out.push('"');
        self
    }

    /// An attribute only when `value` is `Some` and not empty.
    pub fn attr_opt(&mut self, name: &'static str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) if !v.is_empty() => self.attr(name, v),
            _ => self,
        }
    }

    /// Text content of the current element.
    pub fn text(&mut self, value: &str) -> &mut Self {
        self.close_start_tag();
        escape_into(&mut self.out, value);
        self
    }

    /// Close the innermost element (`/>` when it has no content).
    pub fn end(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            if self.in_start_tag {
                self.out.push_str("/>");
                self.in_start_tag = false;
            } else {
                self.out.push_str("</");
                self.out.push_str(name);
                self.out.push('>');
            }
        }
        self
    }

    /// The document, every element closed.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.end();
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_cannot_break_out() {
        let mut w = XmlWriter::new();
        w.start("A")
            .attr("UserID", "\"/><Evil x=\"1")
            .text("</A><B>&amp;\u{1}\n")
            .end();
        let xml = w.finish();
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><A UserID=\"&quot;/&gt;&lt;Evil x=&quot;1\">&lt;/A&gt;&lt;B&gt;&amp;amp;\u{FFFD}&#10;</A>"
        );
        assert!(!xml.contains('\n'));
    }

    #[test]
    fn empty_elements_self_close_and_finish_closes_all() {
        let mut w = XmlWriter::new();
        w.start("Outer")
            .start("Inner")
            .attr("k", "v")
            .end()
            .start("Open");
        let xml = w.finish();
        assert!(
            xml.ends_with("<Outer><Inner k=\"v\"/><Open/></Outer>"),
            "{xml}"
        );
    }

    #[test]
    fn optional_attributes_are_left_out_when_empty() {
        let mut w = XmlWriter::new();
        w.start("E")
            .attr_opt("a", None)
            .attr_opt("b", Some(""))
            .attr_opt("c", Some("x"))
            .end();
        assert!(w.finish().ends_with("<E c=\"x\"/>"));
    }
}
