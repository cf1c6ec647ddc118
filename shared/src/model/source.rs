//! Sources: the remote catalogs operators register, validated when written.

use super::schedule::Schedule;
pub use crate::protocols::Protocol;
use crate::protocols::ProtocolOptions;
use serde::{Deserialize, Serialize};

/// Which of a source's resources to harvest (patterns are exact ids or globs with `*`), and
/// how resources that disappear upstream are removed; beside them, the options of the
/// source's protocol, which only the protocol reads (unknown names are refused there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceOptions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A resource is deleted once missing from this many consecutive complete listings.
    #[serde(default = "default_stale_after")]
    pub stale_after_listings: u32,
    /// A listing missing more than this share (percent) of the known resources deletes
    /// nothing: a catalog does not lose half its datasets overnight, a broken server does.
    #[serde(default = "default_max_shrink")]
    pub max_shrink_percent: u32,
    /// What deleting a stale resource does to its record and raw response.
    #[serde(default)]
    pub on_stale: StaleAction,
    /// Where the raw responses are kept: one object each, in one object per harvester
    /// batch, or not at all.
    #[serde(default, skip_serializing_if = "RawStorage::is_default")]
    pub raw: RawStorage,
    /// Politeness: at most this many requests to the source at once, across all harvesters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Politeness: at most this many requests to the source per second, across all harvesters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// List only what changed since the last session with a complete listing (CKAN
    /// `metadata_modified`, OAI-PMH `from`), where the protocol allows. An incremental listing
    /// proves nothing about deletions, so stale resources are only found by full listings.
    #[serde(default, skip_serializing_if = "is_false")]
    pub incremental: bool,
    /// With `incremental`: list everything again once the last full listing is this old.
    #[serde(default = "default_full_listing_days")]
    pub full_listing_every_days: u32,
    /// A listing stops (incomplete: nothing is deleted on its account) after this many
    /// pages, so a server that keeps handing out pages cannot hold a session forever.
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// … and after this many resources.
    #[serde(default = "default_max_resources")]
    pub max_resources: u64,
    /// Alert when no session has succeeded for this many days (default: the deployment's
    /// `AlertAfterDays`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_after_days: Option<u32>,
    /// Alert when this many sessions in a row failed (default: the deployment's
    /// `AlertFailuresInARow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_failures_in_a_row: Option<u32>,
    /// Options of the source's protocol (OAI-PMH `set`, CKAN `fq`, …), written beside these.
    #[serde(flatten)]
    pub protocol: ProtocolOptions,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_full_listing_days() -> u32 {
    7
}

fn default_max_pages() -> u32 {
    20_000
}

fn default_max_resources() -> u64 {
    5_000_000
}

impl Default for SourceOptions {
    fn default() -> SourceOptions {
        SourceOptions {
            include: Vec::new(),
            exclude: Vec::new(),
            stale_after_listings: default_stale_after(),
            max_shrink_percent: default_max_shrink(),
            on_stale: StaleAction::default(),
            raw: RawStorage::default(),
            max_in_flight: None,
            requests_per_second: None,
            incremental: false,
            full_listing_every_days: default_full_listing_days(),
            max_pages: default_max_pages(),
            max_resources: default_max_resources(),
            alert_after_days: None,
            alert_failures_in_a_row: None,
            protocol: ProtocolOptions::default(),
        }
    }
}

fn default_stale_after() -> u32 {
    2
}

fn default_max_shrink() -> u32 {
    50
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleAction {
    /// Moved under `deleted/{source}/…`: out of the catalog, still recoverable.
    #[default]
    Move,
    /// Removed for good.
    Remove,
    /// Kept pending for an operator: the resource stays in the catalog, marked held, until
    /// `trawl deletions approve` moves it aside (as `move` would) or `restore` discards the
    /// deletion.
    Hold,
}

/// How a source's raw responses are stored (`options.raw`). The record is one object per
/// resource whatever this says: it is what downstream users read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStorage {
    /// `raw/{source}/{id}.{ext}`, one object per resource, replaced when it changes.
    #[default]
    Resource,
    /// The raw responses of one harvester batch in one object; each resource's state names
    /// the object, an offset and a length, which a ranged GET reads back. One PUT per batch
    /// instead of one per changed resource.
    Batch,
    /// Not kept: the record alone.
    None,
}

impl RawStorage {
    fn is_default(&self) -> bool {
        *self == RawStorage::default()
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            RawStorage::Resource => "resource",
            RawStorage::Batch => "batch",
            RawStorage::None => "none",
        }
    }
}

impl SourceOptions {
    /// Include lists restrict (empty = everything); exclude lists win over include lists.
    pub fn selects(&self, resource_id: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, resource_id)))
            && !self.exclude.iter().any(|p| glob_match(p, resource_id))
    }
}

/// A registered source, as stored and as carried (snapshotted) in work messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub protocol: Protocol,
    pub base_url: String,
    /// Normalized spelling (see [`Schedule`]).
    pub schedule: String,
    pub enabled: bool,
    /// Marks a source on a private/loopback network (fixtures, the demo) as intended.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub options: SourceOptions,
}

/// What an operator writes; [`SourceSpec::validate`] turns it into a [`Source`].
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    pub id: String,
    pub protocol: String,
    pub base_url: String,
    pub schedule: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub options: SourceOptions,
}

fn yes() -> bool {
    true
}

/// A config problem, naming the field so the operator can fix it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid source: {field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl SourceSpec {
    /// Parses operator JSON, reporting unknown or mistyped fields by name.
    pub fn from_json(text: &str) -> Result<Source, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let spec: SourceSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let message = e.inner().to_string();
            ConfigError::new(&field_of_serde_error(&path, &message), message)
        })?;
        spec.validate()
    }

    pub fn validate(self) -> Result<Source, ConfigError> {
        if !valid_source_id(&self.id) {
            return Err(ConfigError::new(
                "id",
                format!(
                    "{:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter or digit",
                    self.id
                ),
            ));
        }
        let protocol = Protocol::parse(&self.protocol).ok_or_else(|| {
            ConfigError::new(
                "protocol",
                format!(
                    "unknown protocol {:?}; supported: {}",
                    self.protocol,
                    Protocol::names()
                ),
            )
        })?;
        // Every message below repeats the URL without its user info: an error is printed,
        // logged and shown, and a password in the URL must not travel with it.
        let shown_url = without_userinfo(&self.base_url);
        let url = url::Url::parse(self.base_url.trim())
            .map_err(|e| ConfigError::new("base_url", format!("{shown_url:?}: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ConfigError::new(
                "base_url",
                format!(
                    "{shown_url:?} must not carry a user name or password: the URL is shown by the status API and copied into every record's links"
                ),
            ));
        }
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(ConfigError::new(
                "base_url",
                format!("{shown_url:?} must be an http(s) URL with a host"),
            ));
        }
        if url.fragment().is_some() {
            return Err(ConfigError::new(
                "base_url",
                "must not carry a fragment (#…): servers never see it",
            ));
        }
        if url.query().is_some() {
            if let Some(why) = protocol.refuses_base_url_query() {
                return Err(ConfigError::new(
                    "base_url",
                    format!("must not carry a query for {protocol}: {why}"),
                ));
            }
            // A query is copied into every request and record link like the rest of the URL,
            // so the credentials a user name would carry must not hide in it either.
            if let Some((name, _)) = url
                .query_pairs()
                .find(|(name, _)| is_credential_parameter(name))
            {
                return Err(ConfigError::new(
                    "base_url",
                    format!(
                        "must not carry credentials: its query parameter {name:?} looks like one (the URL is shown by the status API and copied into every record's links)"
                    ),
                ));
            }
        }
        let schedule = Schedule::parse(&self.schedule)
            .map_err(|e| ConfigError::new("schedule", e.to_string()))?;
        if self.options.stale_after_listings == 0 {
            return Err(ConfigError::new(
                "options.stale_after_listings",
                "must be at least 1 (listings a resource must be missing from before it is deleted)",
            ));
        }
        for (field, limit) in [
            ("options.max_in_flight", self.options.max_in_flight),
            (
                "options.requests_per_second",
                self.options.requests_per_second,
            ),
        ] {
            if limit == Some(0) {
                return Err(ConfigError::new(
                    field,
                    "must be at least 1 (leave it out for no limit)",
                ));
            }
        }
        for (field, value) in [
            ("options.alert_after_days", self.options.alert_after_days),
            (
                "options.alert_failures_in_a_row",
                self.options.alert_failures_in_a_row,
            ),
        ] {
            if value == Some(0) {
                return Err(ConfigError::new(
                    field,
                    "must be at least 1 (leave it out for the deployment's default)",
                ));
            }
        }
        if self.options.max_pages == 0 || self.options.max_resources == 0 {
            let field = match self.options.max_pages {
                0 => "options.max_pages",
                _ => "options.max_resources",
            };
            return Err(ConfigError::new(field, "must be at least 1"));
        }
        if self.options.max_shrink_percent > 100 {
            return Err(ConfigError::new(
                "options.max_shrink_percent",
                format!(
                    "{} is not a percentage (0-100)",
                    self.options.max_shrink_percent
                ),
            ));
        }
        for (field, patterns) in [
            ("options.include", &self.options.include),
            ("options.exclude", &self.options.exclude),
        ] {
            if let Some(p) = patterns.iter().find(|p| p.trim().is_empty()) {
                return Err(ConfigError::new(field, format!("empty pattern {p:?}")));
            }
        }
        let source = Source {
            id: self.id,
            protocol,
            base_url: url.as_str().trim_end_matches('/').to_string(),
            schedule: schedule.to_string(),
            enabled: self.enabled,
            internal: self.internal,
            options: self.options,
        };
        // The protocol checks its own options.
        crate::protocols::open(&(&source).into())?;
        Ok(source)
    }
}

impl Source {
    pub fn schedule(&self) -> Schedule {
        // Stored schedules were normalized when written; a bad one means the item was edited
        // by hand, and such a source never fires rather than failing every tick.
        Schedule::parse(&self.schedule).unwrap_or(Schedule::Rate { minutes: u32::MAX })
    }
}

/// Query parameter names servers take credentials in (API keys, tokens, passwords).
fn is_credential_parameter(name: &str) -> bool {
    const NAMES: [&str; 12] = [
        "password",
        "passwd",
        "pwd",
        "token",
        "access_token",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
    ];
    let name = name.to_ascii_lowercase();
    NAMES.contains(&name.as_str())
}

pub fn valid_source_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

/// The field a serde error is about: its path, which names the field itself, an unknown one
/// included ("colour", "options.on_stale"). A missing field is reported at its parent, the
/// top (".") for a source's own fields, and the message names it between backticks
/// ("missing field `base_url`").
fn field_of_serde_error(path: &str, message: &str) -> String {
    match path {
        "." => message
            .split('`')
            .nth(1)
            .filter(|_| message.starts_with("missing field"))
            .unwrap_or("source")
            .to_string(),
        field => field.to_string(),
    }
}

/// `text` with whatever precedes an `@` in its authority (a user name, a password) replaced
/// by `…`, so an error about a URL can quote it; parsed or not, since a URL that fails to
/// parse may still hold a password.
fn without_userinfo(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..]
        .find(['/', '?', '#'])
        .map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}…{}", &text[..start], &text[start + at..]),
        None => text.to_string(),
    }
}

/// Sources given together (a file of them) must each have their own id: two sources with one
/// id would share one state, each session counting over the other's.
pub fn refuse_duplicate_ids(sources: &[Source]) -> Result<(), ConfigError> {
    for (later, source) in sources.iter().enumerate() {
        if let Some(first) = sources[..later].iter().position(|s| s.id == source.id) {
            return Err(ConfigError::new(
                "id",
                format!(
                    "{:?} is the id of sources #{} and #{}; each source needs its own",
                    source.id,
                    first + 1,
                    later + 1
                ),
            ));
        }
    }
    Ok(())
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SourceSpec {
        SourceSpec {
            id: "cioos-pacific".into(),
            protocol: "erddap".into(),
            base_url: "https://data.cioospacific.ca/erddap/".into(),
            schedule: "cron(0 3 * * ? *)".into(),
            enabled: true,
            internal: false,
            options: SourceOptions::default(),
        }
    }

    #[test]
    fn a_valid_source_is_normalized() {
        let s = spec().validate().unwrap();
        assert_eq!(s.base_url, "https://data.cioospacific.ca/erddap");
        assert_eq!(s.schedule, "cron(0 3 * * *)");
        assert_eq!(s.protocol, Protocol::Erddap);
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(SourceSpec, &str)> = vec![
            (
                SourceSpec {
                    protocol: "gopher".into(),
                    ..spec()
                },
                "protocol",
            ),
            (
                SourceSpec {
                    base_url: "not a url".into(),
                    ..spec()
                },
                "base_url",
            ),
            (
                SourceSpec {
                    base_url: "ftp://x.org/erddap".into(),
                    ..spec()
                },
                "base_url",
            ),
            (
                SourceSpec {
                    base_url: "https://x.org/erddap?x=1".into(),
                    ..spec()
                },
                "base_url",
            ),
            (
                SourceSpec {
                    schedule: "sometimes".into(),
                    ..spec()
                },
                "schedule",
            ),
            (
                SourceSpec {
                    id: "Bad Id".into(),
                    ..spec()
                },
                "id",
            ),
            (
                SourceSpec {
                    options: SourceOptions {
                        include: vec![" ".into()],
                        ..SourceOptions::default()
                    },
                    ..spec()
                },
                "options.include",
            ),
            (
                SourceSpec {
                    options: SourceOptions {
                        stale_after_listings: 0,
                        ..SourceOptions::default()
                    },
                    ..spec()
                },
                "options.stale_after_listings",
            ),
            (
                SourceSpec {
                    options: SourceOptions {
                        max_shrink_percent: 120,
                        ..SourceOptions::default()
                    },
                    ..spec()
                },
                "options.max_shrink_percent",
            ),
            (
                SourceSpec {
                    options: SourceOptions {
                        alert_after_days: Some(0),
                        ..SourceOptions::default()
                    },
                    ..spec()
                },
                "options.alert_after_days",
            ),
            (
                SourceSpec {
                    options: SourceOptions {
                        alert_failures_in_a_row: Some(0),
                        ..SourceOptions::default()
                    },
                    ..spec()
                },
                "options.alert_failures_in_a_row",
            ),
        ];
        for (spec, field) in cases {
            let e = spec.clone().validate().unwrap_err();
            assert_eq!(e.field, field, "{spec:?} -> {e}");
        }
    }

    #[test]
    fn json_with_unknown_or_mistyped_fields_is_rejected_by_name() {
        let e = SourceSpec::from_json(
            r#"{"id":"a","protocol":"erddap","base_url":"http://h/erddap","schedule":"rate(1 hour)","colour":"red"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "colour", "{e}");
        assert!(e.message.contains("colour"), "{e}");
        let e =
            SourceSpec::from_json(r#"{"id":"a","protocol":"erddap","schedule":"rate(1 hour)"}"#)
                .unwrap_err();
        assert_eq!(e.field, "base_url", "{e}");
        let e = SourceSpec::from_json(
            r#"{"id":"a","protocol":"erddap","base_url":"http://h/erddap","schedule":"rate(1 hour)","enabled":"yes"}"#,
        )
        .unwrap_err();
        assert!(e.message.contains("invalid type"), "{e}");
        let e = SourceSpec::from_json(
            r#"{"id":"a","protocol":"erddap","base_url":"http://h/erddap","schedule":"rate(1 hour)","options":{"on_stale":"shred"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "options.on_stale", "{e}");
        let s = SourceSpec::from_json(
            r#"{"id":"a","protocol":"erddap","base_url":"http://h/erddap","schedule":"rate(1 hour)","options":{"on_stale":"remove"}}"#,
        )
        .unwrap();
        assert_eq!(s.options.on_stale, StaleAction::Remove);
        let held = SourceSpec::from_json(
            r#"{"id":"a","protocol":"erddap","base_url":"http://h/erddap","schedule":"rate(1 hour)","options":{"on_stale":"hold"}}"#,
        )
        .unwrap();
        assert_eq!(held.options.on_stale, StaleAction::Hold);
        assert_eq!(s.options.stale_after_listings, 2, "defaults fill the rest");
    }

    #[test]
    fn a_base_url_with_credentials_is_refused_without_repeating_them() {
        for base_url in [
            "https://harvester:s3cr3t@data.example.org/erddap",
            "https://s3cr3t@data.example.org/erddap",
            "https://harvester:s3cr3t@data.example.org",
            "ftp://harvester:s3cr3t@data.example.org/erddap",
            "https://harvester:s3cr3t@not a host/erddap",
            "harvester:s3cr3t@data.example.org/erddap",
        ] {
            let e = SourceSpec {
                base_url: base_url.into(),
                ..spec()
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.field, "base_url", "{base_url}: {e}");
            assert!(!e.to_string().contains("s3cr3t"), "{base_url}: {e}");
        }
        let e = SourceSpec {
            base_url: "https://harvester:s3cr3t@data.example.org/erddap".into(),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert!(e.message.contains("user name or password"), "{e}");
        assert!(
            e.message.contains("https://…@data.example.org/erddap"),
            "{e}"
        );
    }

    #[test]
    fn a_base_url_may_carry_a_query_where_the_protocol_merges_it() {
        for (protocol, base_url) in [
            ("csw", "https://host/geonetwork/srv/eng/csw?service=CSW"),
            ("oai-pmh", "https://host/pycsw/csw?mode=oaipmh"),
            ("arcgis", "https://www.arcgis.com?q=orgid:abc123"),
            ("dcat", "https://host/data.json?format=dcat-us"),
        ] {
            let s = SourceSpec {
                protocol: protocol.into(),
                base_url: base_url.into(),
                ..spec()
            }
            .validate()
            .unwrap_or_else(|e| panic!("{protocol} {base_url}: {e}"));
            assert!(s.base_url.contains('?'), "{}", s.base_url);
        }
        for protocol in ["erddap", "ckan", "geonode"] {
            let e = SourceSpec {
                protocol: protocol.into(),
                base_url: "https://host/x?a=1".into(),
                ..spec()
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.field, "base_url", "{protocol}: {e}");
            assert!(e.message.contains("without a query"), "{protocol}: {e}");
        }
        let e = SourceSpec {
            protocol: "csw".into(),
            base_url: "https://host/csw#top".into(),
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert!(e.message.contains("fragment"), "{e}");
    }

    #[test]
    fn credentials_in_a_base_url_query_are_refused_without_repeating_them() {
        for base_url in [
            "https://host/csw?service=CSW&token=s3cr3t",
            "https://www.arcgis.com?q=orgid:abc&Api_Key=s3cr3t",
            "https://host/oai?password=s3cr3t",
        ] {
            let protocol = if base_url.contains("arcgis") {
                "arcgis"
            } else {
                "csw"
            };
            let e = SourceSpec {
                protocol: protocol.into(),
                base_url: base_url.into(),
                ..spec()
            }
            .validate()
            .unwrap_err();
            assert_eq!(e.field, "base_url", "{base_url}: {e}");
            assert!(e.message.contains("credentials"), "{base_url}: {e}");
            assert!(!e.to_string().contains("s3cr3t"), "{base_url}: {e}");
        }
    }

    #[test]
    fn two_sources_with_one_id_are_refused_naming_the_id() {
        let one = spec().validate().unwrap();
        let other = SourceSpec {
            id: "other".into(),
            ..spec()
        }
        .validate()
        .unwrap();
        assert_eq!(refuse_duplicate_ids(&[one.clone(), other.clone()]), Ok(()));
        let e = refuse_duplicate_ids(&[one.clone(), other, one]).unwrap_err();
        assert_eq!(e.field, "id");
        assert!(
            e.message.contains("\"cioos-pacific\"") && e.message.contains("#1 and #3"),
            "{e}"
        );
    }

    #[test]
    fn include_and_exclude_globs_select_resources() {
        let o = SourceOptions {
            include: vec!["ds_*".into(), "special".into()],
            exclude: vec!["ds_*_test".into()],
            ..SourceOptions::default()
        };
        assert!(o.selects("ds_0001"));
        assert!(o.selects("special"));
        assert!(!o.selects("other"));
        assert!(!o.selects("ds_0001_test"));
        assert!(SourceOptions::default().selects("anything"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxc"));
    }
}
