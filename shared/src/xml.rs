//! XML from remote servers (OAI-PMH, CSW, ISO 19139), parsed defensively.
//!
//! A catalog response is untrusted input. A DTD is how the classic XML attacks arrive:
//! entity expansion (the "billion laughs"), external entities that read local files or reach
//! internal hosts (XXE). No catalog protocol needs one, so a document that declares a DTD is
//! refused outright: no entity of it, internal or external, is ever expanded. References to
//! entities other than XML's five predefined ones then fail too. The number of nodes is
//! capped, so a small body cannot become a huge tree (the body itself is capped by the HTTP
//! client while streaming).
//!
//! Elements are matched by local name within the namespace the protocol defines; prefixes are
//! the server's choice and differ between servers (`csw:`, `csw2:`, or none).

use crate::model::Reason;
use std::borrow::Cow;

pub use roxmltree::{Document, Node};

/// Far above any real page (1,000 CSW summary records are ~20,000 nodes).
pub const MAX_NODES: u32 = 2_000_000;

/// Text of a response body: UTF-8 (the default for XML), or ISO-8859-1 when the XML
/// declaration says so (older GeoNetwork and OAI servers); anything else is a clear error.
pub fn decode(body: &[u8]) -> Result<Cow<'_, str>, Reason> {
    match std::str::from_utf8(body) {
        Ok(text) => Ok(Cow::Borrowed(text.strip_prefix('\u{feff}').unwrap_or(text))),
        Err(e) => {
            let head = String::from_utf8_lossy(&body[..body.len().min(200)]);
            let latin1 = declared_encoding(&head).is_some_and(|name| {
                [
                    "iso-8859-1",
                    "iso8859-1",
                    "iso_8859-1",
                    "latin1",
                    "latin-1",
                    "l1",
                ]
                .contains(&name.to_ascii_lowercase().as_str())
            });
            if latin1 {
                // ISO-8859-1 maps each byte to the code point of the same value.
                Ok(Cow::Owned(body.iter().map(|&b| char::from(b)).collect()))
            } else {
                Err(Reason::parse(format!(
                    "the XML is not valid UTF-8 (byte {}) and declares no encoding Trawl reads",
                    e.valid_up_to()
                )))
            }
        }
    }
}

/// The `encoding` of an XML declaration at the start of `head`. XML allows white space
/// around the `=` and either quote (`encoding = 'ISO-8859-1'`).
fn declared_encoding(head: &str) -> Option<&str> {
    let declaration = head.trim_start_matches('\u{feff}').strip_prefix("<?xml")?;
    let declaration = &declaration[..declaration.find("?>")?];
    let after = declaration.split_once("encoding")?.1.trim_start();
    let value = after.strip_prefix('=')?.trim_start();
    let quote = value.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = &value[1..];
    Some(&value[..value.find(quote)?])
}

/// Parses a document with no DTD and a node cap; errors become `PARSE_ERROR` reasons that say
/// what was wrong and where.
pub fn parse(text: &str) -> Result<Document<'_>, Reason> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..roxmltree::ParsingOptions::default()
    };
    Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => Reason::parse(
            "the XML declares a DTD; Trawl refuses DTDs so no entity can expand (XXE, entity bombs)",
        ),
        roxmltree::Error::UnknownEntityReference(name, pos) => Reason::parse(format!(
            "the XML references entity '&{name};' at {pos}, which is not one of XML's predefined entities"
        )),
        roxmltree::Error::NodesLimitReached => {
            Reason::parse(format!("the XML has more than {MAX_NODES} nodes"))
        }
        other => Reason::parse(format!("malformed XML: {other}")),
    })
}

/// The first child element of `node` named `local` (any prefix) in namespace `ns`.
pub fn child<'a, 'i>(node: Node<'a, 'i>, ns: &str, local: &str) -> Option<Node<'a, 'i>> {
    node.children().find(|c| is(*c, ns, local))
}

/// Child elements of `node` named `local` in namespace `ns`, in document order.
pub fn children<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children().filter(move |c| is(*c, ns, local))
}

/// Descendant elements (the node itself included) named `local` in namespace `ns`.
pub fn descendants<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    ns: &'a str,
    local: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.descendants().filter(move |c| is(*c, ns, local))
}

/// Whether `node` is the element `local` in namespace `ns`.
pub fn is(node: Node<'_, '_>, ns: &str, local: &str) -> bool {
    node.is_element() && node.tag_name().name() == local && node.tag_name().namespace() == Some(ns)
}

/// The element's text with surrounding whitespace trimmed; `None` when empty.
pub fn text(node: Node<'_, '_>) -> Option<String> {
    let joined: String = node
        .descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect();
    let trimmed = joined.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReasonCode;

    const OAI: &str = "http://www.openarchives.org/OAI/2.0/";

    #[test]
    fn elements_are_found_by_namespace_whatever_their_prefix() {
        for doc in [
            r#"<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><header><identifier> a:1 </identifier></header></OAI-PMH>"#,
            r#"<o:OAI-PMH xmlns:o="http://www.openarchives.org/OAI/2.0/"><o:header><o:identifier>a:1</o:identifier></o:header></o:OAI-PMH>"#,
        ] {
            let parsed = parse(doc).unwrap();
            let root = parsed.root_element();
            let header = child(root, OAI, "header").unwrap();
            assert_eq!(
                text(child(header, OAI, "identifier").unwrap()).as_deref(),
                Some("a:1")
            );
        }
        let other = parse(r#"<OAI-PMH xmlns="urn:other"><header/></OAI-PMH>"#).unwrap();
        assert!(child(other.root_element(), OAI, "header").is_none());
    }

    #[test]
    fn external_entities_are_never_resolved() {
        let xxe = r#"<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<r>&xxe;</r>"#;
        let e = parse(xxe).unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(e.detail.contains("DTD"), "{e}");
    }

    #[test]
    fn an_entity_bomb_is_refused_before_any_expansion() {
        let mut bomb =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            bomb.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!("&{prev};").repeat(10)
            ));
        }
        bomb.push_str("]>\n<lolz>&lol9;</lolz>");
        let started = std::time::Instant::now();
        let e = parse(&bomb).unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn undeclared_entities_are_a_parse_error_naming_them() {
        let e = parse("<r>caf&eacute;</r>").unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(e.detail.contains("&eacute;"), "{e}");
        // The predefined ones and character references are fine.
        let ok = parse("<r>a &amp; b &#233; &lt;</r>").unwrap();
        assert_eq!(text(ok.root_element()).as_deref(), Some("a & b é <"));
    }

    #[test]
    fn latin1_documents_are_decoded_when_they_say_so_and_refused_otherwise() {
        let declared = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>caf\xe9</r>";
        let text_ = decode(declared).unwrap();
        assert_eq!(
            text(parse(&text_).unwrap().root_element()).as_deref(),
            Some("café")
        );
        let undeclared = b"<?xml version=\"1.0\"?><r>caf\xe9</r>";
        let e = decode(undeclared).unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(e.detail.contains("UTF-8"), "{e}");
        // A byte-order mark is not content.
        assert_eq!(decode(b"\xef\xbb\xbf<r/>").unwrap(), "<r/>");
        // XML allows spaces around '=' and single quotes; names are case-insensitive.
        for declaration in [
            "<?xml version=\"1.0\" encoding = \"ISO-8859-1\"?>",
            "<?xml version='1.0' encoding='latin1' standalone='yes'?>",
            "<?xml version=\"1.0\"\n  encoding=\n'iso-8859-1' ?>",
        ] {
            let mut body = declaration.as_bytes().to_vec();
            body.extend_from_slice(b"<r>caf\xe9</r>");
            let text_ = decode(&body).unwrap_or_else(|e| panic!("{declaration}: {e}"));
            assert!(text_.ends_with("<r>café</r>"), "{declaration}");
        }
        // The word elsewhere than in the declaration is not a declaration.
        let body = b"<?xml version=\"1.0\"?><r encoding=\"ISO-8859-1\">caf\xe9</r>";
        assert!(decode(body).is_err());
    }

    #[test]
    fn truncated_documents_are_a_parse_error() {
        let e = parse("<OAI-PMH><ListIdentifiers><header>").unwrap_err();
        assert_eq!(e.code, ReasonCode::ParseError);
        assert!(e.detail.starts_with("malformed XML"), "{e}");
    }
}
