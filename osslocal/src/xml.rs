//! XML for the OSS wire format: a tiny writer for response documents (escaping, optional
//! `encoding-type=url` percent-encoding) and strict parsers for the two request bodies the
//! server accepts (`<Delete>` and `<CompleteMultipartUpload>`). Anything unexpected in a
//! request body is `MalformedXML`; the parsers never panic on hostile input.

use std::fmt::Write as _;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use quick_xml::Reader;
use quick_xml::events::Event;

/// RFC 3986 unreserved characters stay literal; everything else is `%XX` (upper-case).
const PE_SET: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

pub fn url_encode(s: &str) -> String {
    utf8_percent_encode(s, PE_SET).to_string()
}

/// Escape text for element content (quotes stay literal, as OSS writes ETags). Characters XML 1.0 cannot carry at all (C0 controls
/// other than tab/CR/LF) are written as `&#xN;` so the document stays parseable by lenient
/// readers; clients should use `encoding-type=url` for such keys.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => {
                let _ = write!(out, "&#x{:X};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Builder for a response document.
pub struct XmlWriter {
    buf: String,
    stack: Vec<&'static str>,
}

impl XmlWriter {
    pub fn new(root: &'static str) -> Self {
        let mut w = XmlWriter {
            buf: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            stack: Vec::new(),
        };
        w.open(root);
        w
    }
    pub fn open(&mut self, name: &'static str) -> &mut Self {
        let _ = write!(self.buf, "<{name}>");
        self.stack.push(name);
        self
    }
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.stack.pop() {
            let _ = write!(self.buf, "</{name}>");
        }
        self
    }
    pub fn elem(&mut self, name: &str, text: &str) -> &mut Self {
        let _ = write!(self.buf, "<{name}>{}</{name}>", escape(text));
        self
    }
    /// Element whose text is percent-encoded when `url` is set.
    pub fn elem_enc(&mut self, name: &str, text: &str, url: bool) -> &mut Self {
        if url {
            self.elem(name, &url_encode(text))
        } else {
            self.elem(name, text)
        }
    }
    pub fn finish(mut self) -> String {
        while !self.stack.is_empty() {
            self.close();
        }
        self.buf
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Flatten a document into (element path, text) pairs, e.g. ("Delete/Object/Key", "a").
/// Elements without text yield ("path", "") when they close. Rejects DTDs, mismatched tags
/// and more than `MAX_XML_DEPTH` levels of nesting.
fn flatten(body: &[u8]) -> Result<Vec<(String, String)>, XmlError> {
    const MAX_XML_DEPTH: usize = 16;
    let mut reader = Reader::from_reader(body);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    let mut path: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut root_seen = false;
    loop {
        match reader.read_event_into(&mut buf).map_err(malformed)? {
            Event::Start(e) => {
                if path.is_empty() && root_seen {
                    return Err(malformed("more than one root element"));
                }
                root_seen = true;
                let name = std::str::from_utf8(e.name().as_ref()).map_err(malformed)?.to_string();
                path.push(name);
                if path.len() > MAX_XML_DEPTH {
                    return Err(malformed("nesting too deep"));
                }
                text.clear();
            }
            Event::Empty(e) => {
                if path.is_empty() && root_seen {
                    return Err(malformed("more than one root element"));
                }
                root_seen = true;
                let qname = e.name();
                let name = std::str::from_utf8(qname.as_ref()).map_err(malformed)?;
                let p = if path.is_empty() {
                    name.to_string()
                } else {
                    format!("{}/{name}", path.join("/"))
                };
                out.push((p, String::new()));
            }
            Event::Text(t) => {
                if path.is_empty() {
                    if !t.iter().all(u8::is_ascii_whitespace) {
                        return Err(malformed("text outside the root element"));
                    }
                } else {
                    text.push_str(&t.unescape().map_err(malformed)?);
                }
            }
            Event::CData(c) => {
                text.push_str(std::str::from_utf8(&c).map_err(malformed)?);
            }
            Event::End(_) => {
                out.push((path.join("/"), std::mem::take(&mut text)));
                path.pop();
            }
            Event::DocType(_) => return Err(malformed("DTDs are not accepted")),
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
        }
        buf.clear();
    }
    if !path.is_empty() || !root_seen {
        return Err(malformed("document is incomplete"));
    }
    Ok(out)
}

/// A parsed `<Delete>` body.
#[derive(Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub keys: Vec<String>,
}

pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, XmlError> {
    let mut quiet = false;
    let mut keys = Vec::new();
    for (path, text) in flatten(body)? {
        match path.as_str() {
            "Delete/Quiet" => {
                quiet = match text.trim() {
                    "true" => true,
                    "false" => false,
                    other => return Err(malformed(format!("Quiet must be true or false, not {other:?}"))),
                }
            }
            "Delete/Object/Key" => keys.push(text),
            "Delete" | "Delete/Object" | "Delete/Object/VersionId" => {}
            other => return Err(malformed(format!("unexpected element {other}"))),
        }
    }
    Ok(DeleteRequest { quiet, keys })
}

/// Parts listed in a `<CompleteMultipartUpload>` body: (part number, ETag as sent).
pub fn parse_complete(body: &[u8]) -> Result<Vec<(u32, String)>, XmlError> {
    let mut parts = Vec::new();
    let mut number: Option<u32> = None;
    let mut etag: Option<String> = None;
    for (path, text) in flatten(body)? {
        match path.as_str() {
            "CompleteMultipartUpload/Part/PartNumber" => {
                number = Some(
                    text.trim()
                        .parse()
                        .map_err(|_| malformed(format!("bad PartNumber {text:?}")))?,
                );
            }
            "CompleteMultipartUpload/Part/ETag" => etag = Some(text.trim().to_string()),
            "CompleteMultipartUpload/Part" => match (number.take(), etag.take()) {
                (Some(n), Some(e)) => parts.push((n, e)),
                _ => return Err(malformed("Part needs PartNumber and ETag")),
            },
            "CompleteMultipartUpload" => {}
            other => return Err(malformed(format!("unexpected element {other}"))),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_matches_oss() {
        assert_eq!(url_encode("a/hello world.txt"), "a%2Fhello%20world.txt");
        assert_eq!(url_encode("~-_.*"), "~-_.%2A");
        assert_eq!(url_encode("ü"), "%C3%BC");
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::new("R");
        w.elem("K", "a<b&\"c\u{1}");
        assert_eq!(
            w.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<R><K>a&lt;b&amp;\"c&#x1;</K></R>"
        );
    }

    #[test]
    fn delete_bodies() {
        let d = parse_delete(
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Quiet>true</Quiet><Object><Key>k1</Key></Object>\
              <Object><Key>a&amp;b</Key><VersionId>v</VersionId></Object></Delete>",
        )
        .unwrap();
        assert_eq!(
            d,
            DeleteRequest {
                quiet: true,
                keys: vec!["k1".into(), "a&b".into()]
            }
        );
        assert!(parse_delete(b"<Delete><Object><Key>k1</Key></Object>").is_err());
        assert!(parse_delete(b"<Delete><Bogus/></Delete>").is_err());
        assert!(parse_delete(b"not xml at all").is_err());
        assert!(parse_delete(b"").is_err());
        assert!(parse_delete(b"<Delete></Delete><Delete></Delete>").is_err());
        assert!(parse_delete(b"<!DOCTYPE x [<!ENTITY a \"b\">]><Delete></Delete>").is_err());
        let deep = "<a>".repeat(100);
        assert!(parse_delete(deep.as_bytes()).is_err());
    }

    #[test]
    fn complete_bodies() {
        let p = parse_complete(
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"AB\"</ETag></Part>\
              <Part><PartNumber>2</PartNumber><ETag>CD</ETag></Part></CompleteMultipartUpload>",
        )
        .unwrap();
        assert_eq!(p, vec![(1, "\"AB\"".to_string()), (2, "CD".to_string())]);
        assert!(
            parse_complete(
                b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part></CompleteMultipartUpload>"
            )
            .is_err()
        );
        assert!(
            parse_complete(b"<CompleteMultipartUpload><Part><ETag>a</ETag></Part></CompleteMultipartUpload>").is_err()
        );
    }
}
