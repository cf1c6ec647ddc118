//! Real catalog server software, not our fixtures: pycsw (CSW 2.0.2 over SQLite) and the
//! `oaipmh` package's OAI-PMH server, both from PyPI (`infra/install.sh` puts them in
//! `.local/real-servers-venv`), serving records we wrote (`tests/real-servers/`). Each test
//! harvests one end to end through the pipeline and checks the counters and every mapped
//! field against what the server holds.

mod common;

use common::world;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use trawl::model::{BoundingBox, Record, SourceOptions};
use trawl::ports::ResourceStates;
use trawl::protocols::ProtocolOptions;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A server process; it stops when this is dropped (its standard input closes).
struct RealServer {
    child: Child,
    url: String,
}

impl RealServer {
    fn start(script: &str, args: &[&str]) -> RealServer {
        let root = repo_root();
        let python = root.join(".local/real-servers-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run infra/install.sh (it installs pycsw and oaipmh from PyPI)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/real-servers").join(script))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("http://"),
            "{script} did not start: {line:?}"
        );
        RealServer {
            child,
            url: line.trim().to_string(),
        }
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

fn data_links(record: &Record) -> Vec<(String, Option<String>, Option<String>)> {
    record
        .links
        .iter()
        .filter(|l| l.rel == "data")
        .map(|l| (l.href.clone(), l.protocol.clone(), l.name.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pycsw_is_harvested_whole_with_every_mapped_field() {
    let records = repo_root().join("tests/real-servers/csw-records");
    // Three records a page: the eight take three GetRecords pages at pycsw's own paging.
    let server = RealServer::start(
        "serve_pycsw.py",
        &[records.to_str().unwrap(), "--maxrecords", "3"],
    );
    let w = world("csw", server.url.clone()).await;
    let session = w.harvest("2026-12-01").await;
    assert_eq!(
        session.counters.total,
        8,
        "{:?} {:?} {:?}",
        session.counters,
        session.listing_error,
        session.listing_problems()
    );
    assert_eq!(session.counters.harvested, 8, "{:?}", session.counters);
    assert!(
        session.listing_problems().is_empty(),
        "{:?}",
        session.listing_problems()
    );
    assert_eq!(session.listing.expected_total, Some(8));

    // ISO 19139, as loaded.
    let sst = w.record("trawl-sst-2019").await;
    assert_eq!(
        sst.title.as_deref(),
        Some("Sea surface temperature, Salish Sea, 2019")
    );
    assert_eq!(
        sst.summary.as_deref(),
        Some("Hourly sea surface temperature from moored buoys.")
    );
    assert_eq!(sst.keywords, ["sea surface temperature", "buoys"]);
    assert_eq!(sst.institution.as_deref(), Some("Salish Sea Observatory"));
    assert_eq!(sst.license.as_deref(), Some("CC-BY-4.0"));
    assert_eq!(
        sst.bounding_box,
        Some(BoundingBox {
            west: -125.5,
            south: 47.0,
            east: -122.0,
            north: 50.5
        })
    );
    let time = sst.time_range.clone().unwrap();
    assert_eq!(time.start.as_deref(), Some("2019-01-01T00:00:00Z"));
    assert_eq!(time.end.as_deref(), Some("2019-12-31T23:00:00Z"));
    // The distribution's two online resources, with what the record says of each; the
    // contact's web site is not a data link.
    assert_eq!(
        data_links(&sst),
        [
            (
                "https://data.example.org/erddap/tabledap/sst_2019.html".to_string(),
                Some("WWW:LINK".to_string()),
                Some("ERDDAP data access form".to_string())
            ),
            (
                "https://data.example.org/wms?service=WMS&request=GetCapabilities".to_string(),
                Some("OGC:WMS".to_string()),
                Some("sst_2019".to_string())
            ),
        ]
    );
    assert_eq!(sst.dates.created.as_deref(), Some("2019-05-01"));
    assert_eq!(sst.dates.modified.as_deref(), Some("2025-11-20"));
    assert!(
        sst.identifiers
            .iter()
            .any(|i| i.scheme == "doi" && i.value == "10.5072/trawl-sst-2019"),
        "{:?}",
        sst.identifiers
    );

    // ISO 19115-2: pycsw answers the gmd output schema with the gmi:MI_Metadata it holds.
    let chl = w.record("trawl-chl-modis").await;
    assert_eq!(
        chl.title.as_deref(),
        Some("Chlorophyll-a concentration, MODIS Aqua, monthly")
    );
    assert_eq!(chl.keywords, ["chlorophyll", "ocean colour"]);
    assert_eq!(data_links(&chl).len(), 1);

    // INSPIRE multilingual: the main language's text, the French kept as a translation.
    let eelgrass = w.record("trawl-eelgrass").await;
    assert_eq!(
        eelgrass.title.as_deref(),
        Some("Eelgrass beds, Nova Scotia")
    );
    assert_eq!(eelgrass.keywords, ["eelgrass", "habitat"]);
    assert_eq!(eelgrass.language.as_deref(), Some("eng"));
    let french = eelgrass
        .translations
        .iter()
        .find(|(lang, _)| lang.starts_with("fr"))
        .map(|(_, t)| t.clone())
        .unwrap_or_else(|| panic!("no French translation: {:?}", eelgrass.translations));
    assert_eq!(
        french.title.as_deref(),
        Some("Herbiers de zostère, Nouvelle-Écosse")
    );
    assert_eq!(
        french.summary.as_deref(),
        Some("Herbiers de zostère cartographiés le long de la côte atlantique.")
    );
    assert_eq!(french.keywords, ["zostère", "habitat"]);

    // Dublin Core loaded into pycsw: it answers the gmd schema with an ISO record it builds.
    let plankton = w.record("trawl-dc-plankton").await;
    assert_eq!(
        plankton.title.as_deref(),
        Some("Zooplankton net tows, Line P")
    );
    assert_eq!(plankton.keywords, ["zooplankton", "net tows"]);
    assert_eq!(
        plankton.bounding_box,
        Some(BoundingBox {
            west: -145.0,
            south: 48.5,
            east: -125.0,
            north: 50.0
        })
    );

    // The stations page across pycsw's pages; every one is there.
    for i in 1..=4 {
        let station = w.record(&format!("trawl-station-{i}")).await;
        assert_eq!(
            station.title.as_deref(),
            Some(format!("Tide gauge station {i}").as_str())
        );
    }

    // A second harvest finds every record unchanged.
    let again = w.harvest("2026-12-02").await;
    assert_eq!(again.counters.unchanged, 8, "{:?}", again.counters);
}

/// The records the OAI-PMH server holds: `n` of them, the last one deleted, odd ones in the
/// set `ocean_physics`, even ones in `biology`.
fn oai_records(n: usize) -> Vec<serde_json::Value> {
    (1..=n)
        .map(|i| {
            serde_json::json!({
                "id": format!("oai:trawl.test:{i}"),
                "datestamp": format!("2026-0{}-1{}T08:00:00Z", 1 + i % 9, i % 10),
                "sets": [if i % 2 == 1 { "ocean_physics" } else { "biology" }],
                "deleted": i == n,
                "dc": {
                    "title": [format!("Record {i}")],
                    "creator": ["Trawl Test Lab"],
                    "subject": ["oceans", format!("topic {i}")],
                    "description": [format!("Description of record {i}.")],
                    "date": ["2020-05-01"],
                    "identifier": [format!("https://doi.org/10.5072/trawl.{i}"),
                                   format!("https://repo.example.org/record/{i}")],
                    "language": ["en"],
                    "rights": ["CC-BY-4.0"],
                    "type": ["Dataset"],
                }
            })
        })
        .collect()
}

fn write_records(path: &Path, records: &[serde_json::Value]) {
    std::fs::write(path, serde_json::to_vec_pretty(records).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oaipmh_packages_server_is_harvested_with_paging_deletions_and_sets() {
    let dir = common::temp_dir("oai-real");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("records.json");
    let mut records = oai_records(11);
    write_records(&file, &records);
    // Four headers a page: three pages, resumption tokens as the package makes them.
    let server = RealServer::start("serve_oai.py", &[file.to_str().unwrap(), "--batch", "4"]);
    let w = world("oai-pmh", server.url.clone()).await;

    let first = w.harvest("2026-12-01").await;
    // The deleted header counts toward what the server lists, not toward what is harvested.
    assert_eq!(first.counters.total, 10, "{:?}", first.counters);
    assert_eq!(first.counters.harvested, 10, "{:?}", first.counters);
    assert!(
        first.listing_problems().is_empty(),
        "{:?}",
        first.listing_problems()
    );
    let three = w.record("oai:trawl.test:3").await;
    assert_eq!(three.title.as_deref(), Some("Record 3"));
    assert_eq!(three.summary.as_deref(), Some("Description of record 3."));
    assert_eq!(three.keywords, ["oceans", "topic 3"]);
    assert_eq!(three.institution.as_deref(), Some("Trawl Test Lab"));
    assert_eq!(three.license.as_deref(), Some("CC-BY-4.0"));
    assert_eq!(three.language.as_deref(), Some("en"));
    assert!(
        three
            .links
            .iter()
            .any(|l| l.rel == "landing" && l.href == "https://repo.example.org/record/3"),
        "{:?}",
        three.links
    );
    assert!(
        three
            .identifiers
            .iter()
            .any(|i| i.scheme == "doi" && i.value == "10.5072/trawl.3"),
        "{:?}",
        three.identifiers
    );

    // The repository deletes record 5 (it keeps deletions: `persistent`).
    records[4]["deleted"] = true.into();
    records[4]["datestamp"] = "2026-11-30T08:00:00Z".into();
    write_records(&file, &records);
    let second = w.harvest("2026-12-02").await;
    assert_eq!(second.counters.unchanged, 9, "{:?}", second.counters);
    let five = w
        .store
        .get_resource("src", "oai:trawl.test:5")
        .await
        .unwrap()
        .unwrap();
    assert!(!five.is_live(), "deleted on the server's word");
    let stale = w.stale_report(&second).await;
    assert_eq!(stale.deleted_upstream, ["oai:trawl.test:5"]);

    // One set only.
    let biology = world("oai-pmh", server.url.clone()).await;
    biology
        .set_options(SourceOptions {
            protocol: ProtocolOptions(
                serde_json::json!({"set": "biology"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            ..SourceOptions::default()
        })
        .await;
    let set = biology.harvest("2026-12-03").await;
    // 2, 4, 6, 8 and 10 are in it; 10 is live, so five records.
    assert_eq!(set.counters.harvested, 5, "{:?}", set.counters);
    assert!(biology
        .store
        .get_resource("src", "oai:trawl.test:3")
        .await
        .unwrap()
        .is_none());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pycsws_own_oai_endpoint_breaks_on_its_second_page_and_the_listing_is_reported_incomplete()
{
    let records = repo_root().join("tests/real-servers/csw-records");
    let server = RealServer::start(
        "serve_pycsw.py",
        &[records.to_str().unwrap(), "--maxrecords", "3"],
    );
    // The endpoint as pycsw documents it: the CSW URL with `mode=oaipmh` (the query kept).
    let w = world("oai-pmh", format!("{}?mode=oaipmh", server.url)).await;
    let session = w.harvest("2026-12-01").await;
    // pycsw 2.6.2 wraps ListIdentifiers headers in `record`s and repeats a page's first
    // record in each (read, and the repeats noted), then refuses its own resumption token
    // sent alone, as OAI-PMH requires it be sent ("Missing metadataPrefix parameter"): the
    // listing stops there, incomplete, and so deletes nothing; what page 1 listed is
    // harvested.
    let problems = session.listing_problems();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("page 1:") && p.contains("twice")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("page 2:") && p.contains("metadataPrefix")),
        "{problems:?}"
    );
    assert!(session.counters.harvested > 0, "{:?}", session.counters);
    assert!(w.stale_report(&session).await.skipped.is_some());
}
