//! Small readers several protocols share.

use crate::http::Response;
use crate::model::Reason;

/// An answer's JSON without the UTF-8 byte-order mark some servers put before it (Windows
/// tooling, IIS-hosted portals): JSON parsers refuse it, and in UTF-8 it means nothing.
pub fn json_body(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body)
}

/// A remote id placed as one URL path segment: percent-encoded outside the unreserved
/// characters, so it can never add a segment or a query. `None` for ids that no encoding keeps
/// one segment: empty, `.` and `..` (URL parsers resolve dot segments, escaped or not, so
/// `info/../index.json` would fetch the server's index).
pub fn path_segment(id: &str) -> Option<String> {
    if id.is_empty() || id.bytes().all(|b| b == b'.') {
        return None;
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Some(out)
}

/// A request URL on the source's server: `base_url` with `path` appended to its path, and its
/// query merged with the adapter's `params`. A base URL may carry a query its server needs
/// (`…/csw?service=CSW`, pycsw's `…/csw?mode=oaipmh`, an ArcGIS portal's `?q=` scope): its
/// parameters are kept, as written and first, except those the adapter sets itself, which the
/// adapter's value replaces (names compared without case, as OGC servers read them), so a
/// request always says what the adapter means. Values of `params` are percent-encoded here.
pub fn endpoint(base_url: &str, path: &str, params: &[(&str, &str)]) -> String {
    let base = base_url.split('#').next().unwrap_or_default();
    let (root, query) = base.split_once('?').unwrap_or((base, ""));
    let mut url = root.trim_end_matches('/').to_string();
    if !path.is_empty() {
        url.push('/');
        url.push_str(path.trim_start_matches('/'));
    }
    let overridden = |pair: &str| {
        let raw = pair.split('=').next().unwrap_or_default();
        let name: String = url::form_urlencoded::parse(raw.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
            .unwrap_or_default();
        params.iter().any(|(p, _)| p.eq_ignore_ascii_case(&name))
    };
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && !overridden(pair))
        .map(str::to_string)
        .collect();
    pairs.extend(params.iter().map(|(name, value)| {
        format!(
            "{name}={}",
            url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
        )
    }));
    if !pairs.is_empty() {
        url.push('?');
        url.push_str(&pairs.join("&"));
    }
    url
}

/// A 2xx answer as it is; any other as a reason. Its detail is the server's own error message
/// when `message` can read one from the body, else the body's first 200 characters. A 404 is
/// NOT_FOUND; any other status keeps its code (and `Retry-After`, see `status_reason`).
pub fn expect_success(
    response: Response,
    message: impl FnOnce(&[u8]) -> Option<String>,
) -> Result<Response, Reason> {
    if (200..300).contains(&response.status) {
        return Ok(response);
    }
    let detail = message(&response.body).unwrap_or_else(|| {
        String::from_utf8_lossy(&response.body)
            .chars()
            .take(200)
            .collect()
    });
    if response.status == 404 {
        return Err(Reason {
            http_status: Some(404),
            ..Reason::not_found(detail)
        });
    }
    Err(response.status_reason(detail))
}

/// Text of an HTML fragment (ArcGIS descriptions, GeoNode abstracts): tags dropped, the
/// common entities decoded, whitespace collapsed; `None` when nothing is left.
pub fn plain_text(html: &str) -> Option<String> {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let decoded = out
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let text = decoded.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_segment_never_leaves_its_segment() {
        assert_eq!(path_segment("ds_0001").as_deref(), Some("ds_0001"));
        assert_eq!(
            path_segment("a/../b?c#d").as_deref(),
            Some("a%2F..%2Fb%3Fc%23d")
        );
        for id in ["", ".", "..", "..."] {
            assert_eq!(path_segment(id), None, "{id:?}");
        }
        // What the URL parser makes of it: the segment stays where it was put.
        for id in ["..%2F", "a b", "%2e%2e", "x/..", "\\.."] {
            let url = format!(
                "https://h/erddap/info/{}/index.json",
                path_segment(id).unwrap()
            );
            let parsed = url::Url::parse(&url).unwrap();
            assert_eq!(
                parsed.path_segments().unwrap().count(),
                4,
                "{id:?} → {parsed}"
            );
            assert!(
                parsed.path().starts_with("/erddap/info/"),
                "{id:?} → {parsed}"
            );
        }
    }

    #[test]
    fn an_endpoint_keeps_the_base_urls_query_and_the_adapters_parameters_win() {
        assert_eq!(
            endpoint("https://h/csw", "", &[("service", "CSW"), ("id", "a b&c")]),
            "https://h/csw?service=CSW&id=a+b%26c"
        );
        // pycsw's OAI-PMH endpoint and a CSW endpoint that wants its service named.
        assert_eq!(
            endpoint("https://h/csw?mode=oaipmh", "", &[("verb", "Identify")]),
            "https://h/csw?mode=oaipmh&verb=Identify"
        );
        assert_eq!(
            endpoint(
                "https://h/geonetwork/srv/eng/csw?SERVICE=WMS&lang=fre",
                "",
                &[("service", "CSW"), ("request", "GetRecords")]
            ),
            "https://h/geonetwork/srv/eng/csw?lang=fre&service=CSW&request=GetRecords"
        );
        // A path goes under the base's path, before its query.
        assert_eq!(
            endpoint(
                "https://h/portal/?q=orgid%3Aabc&x=1",
                "sharing/rest/search",
                &[("q", "z")]
            ),
            "https://h/portal/sharing/rest/search?x=1&q=z"
        );
        assert_eq!(
            endpoint("https://h/", "data.json", &[]),
            "https://h/data.json"
        );
    }

    #[test]
    fn html_fragments_become_plain_text() {
        assert_eq!(
            plain_text("<div><p>Sea &amp; ice</p><br/>extent&nbsp;data</div>").as_deref(),
            Some("Sea & ice extent data")
        );
        assert_eq!(plain_text("<p> </p>"), None);
        assert_eq!(plain_text("plain").as_deref(), Some("plain"));
    }
}
