//! Time and space as catalogs write them in text: ISO 8601 intervals (DCAT-US `temporal`,
//! CKAN's `temporal` extra) and extents given as a box, GeoJSON, WKT or a place name (DCAT-US
//! `spatial`, CKAN's `spatial`/`spatial_bbox`). DCAT and CKAN read them the same way.

use crate::model::{BoundingBox, TimeRange};
use chrono::{Datelike, Days, Months, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

/// A time range from any ISO 8601 interval: `start/end`, `start/duration`, `duration/end`,
/// repeating `R[n]/…`, or one date standing for its own period (`1993`). Dates keep the
/// precision they were given in; an end (or start) computed from a duration is the ISO 8601
/// sum, at the date's precision or the duration's finest unit if that is finer
/// (`2010/P1Y` → 2010 to 2011, `2010/P6M` → 2010 to 2010-07). An unbounded repetition has no
/// end; `..` or an empty side is open. `None` when neither side is a date.
pub fn iso_interval(text: &str) -> Option<TimeRange> {
    let text = text.trim();
    let mut parts: Vec<&str> = text.split('/').map(str::trim).collect();
    let mut repeats = None;
    if parts.len() == 3 {
        let count = parts[0].strip_prefix(['R', 'r'])?;
        repeats = Some(if count.is_empty() {
            None
        } else {
            Some(count.parse::<u32>().ok()?)
        });
        parts.remove(0);
    }
    let (start, end) = match parts.as_slice() {
        [one] => {
            let date = IsoDate::parse(one)?;
            return Some(TimeRange {
                start: Some(date.format()),
                end: Some(date.format()),
            });
        }
        [start, end] => (Side::parse(start)?, Side::parse(end)?),
        _ => return None,
    };
    let (start, end) = match (start, end) {
        (Side::Date(s), Side::Date(e)) => match repeats {
            None => (Some(s.format()), Some(e.format())),
            Some(n) => {
                let span = Duration::between(&s, &e)?;
                (Some(s.format()), span_end(&s, &span, n))
            }
        },
        (Side::Date(s), Side::Duration(d)) => match repeats {
            None => (Some(s.format()), Some(s.add(&d, 1)?.format())),
            Some(n) => (Some(s.format()), span_end(&s, &d, n)),
        },
        (Side::Duration(d), Side::Date(e)) => {
            let times = match repeats {
                None => 1,
                Some(Some(n)) => n.max(1),
                Some(None) => return Some(end_only(e)),
            };
            (Some(e.add(&d, -(times as i64))?.format()), Some(e.format()))
        }
        (Side::Date(s), Side::Open) => (Some(s.format()), None),
        (Side::Open, Side::Date(e)) => (None, Some(e.format())),
        _ => return None,
    };
    Some(TimeRange { start, end })
}

fn end_only(end: IsoDate) -> TimeRange {
    TimeRange {
        start: None,
        end: Some(end.format()),
    }
}

/// The end of `n` repetitions of `span` from `start` (`None` repetitions: unbounded).
fn span_end(start: &IsoDate, span: &Duration, n: Option<u32>) -> Option<String> {
    let n = n?.max(1);
    Some(start.add(span, n as i64)?.format())
}

enum Side {
    Date(IsoDate),
    Duration(Duration),
    Open,
}

impl Side {
    fn parse(text: &str) -> Option<Side> {
        if text.is_empty() || text == ".." {
            Some(Side::Open)
        } else if text.starts_with(['P', 'p']) {
            Duration::parse(text).map(Side::Duration)
        } else {
            IsoDate::parse(text).map(Side::Date)
        }
    }
}

/// How much of a date is given: each step adds a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Precision {
    Year,
    Month,
    Day,
    Minute,
    Second,
}

/// An ISO 8601 date or date-time of any precision, its zone kept as written.
#[derive(Clone, Debug)]
struct IsoDate {
    at: NaiveDateTime,
    precision: Precision,
    /// Whether the seconds had a fraction (kept to the microsecond).
    fraction: bool,
    /// `Z`, `+02:00`, … as given; empty for local time.
    zone: String,
}

impl IsoDate {
    fn parse(text: &str) -> Option<IsoDate> {
        let (date, time) = match text.find(['T', 't', ' ']) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let fields: Vec<&str> = date.split('-').collect();
        let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
        let (year, month, day, mut precision) = match fields.as_slice() {
            [y] if digits(y, 4) => (y.parse().ok()?, 1, 1, Precision::Year),
            [y] if digits(y, 8) => (
                y[..4].parse().ok()?,
                y[4..6].parse().ok()?,
                y[6..].parse().ok()?,
                Precision::Day,
            ),
            [y, m] if digits(y, 4) && digits(m, 2) => {
                (y.parse().ok()?, m.parse().ok()?, 1, Precision::Month)
            }
            [y, m, d] if digits(y, 4) && digits(m, 2) && digits(d, 2) => (
                y.parse().ok()?,
                m.parse().ok()?,
                d.parse().ok()?,
                Precision::Day,
            ),
            _ => return None,
        };
        let date = NaiveDate::from_ymd_opt(year, month, day)?;
        let (mut clock, mut fraction, mut zone) = (NaiveTime::MIN, false, String::new());
        if let Some(time) = time {
            if precision != Precision::Day {
                return None;
            }
            let split = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
            let (hms, z) = time.split_at(split);
            zone = z.to_string();
            if !(zone.is_empty() || zone.eq_ignore_ascii_case("z") || valid_offset(&zone)) {
                return None;
            }
            let parts: Vec<&str> = hms.split(':').collect();
            let (h, m, s) = match parts.as_slice() {
                [h] if digits(h, 2) => (h.parse().ok()?, 0, "0"),
                [h, m] if digits(h, 2) && digits(m, 2) => (h.parse().ok()?, m.parse().ok()?, "0"),
                [h, m, s] if digits(h, 2) && digits(m, 2) => {
                    precision = Precision::Second;
                    (h.parse().ok()?, m.parse().ok()?, *s)
                }
                _ => return None,
            };
            if precision == Precision::Day {
                precision = Precision::Minute;
            }
            let s = s.replace(',', ".");
            let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
            if !digits(whole, whole.len().max(1)) || (whole.len() != 2 && whole != "0") {
                return None;
            }
            if !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            fraction = !frac.is_empty();
            let micros: u32 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
            clock = NaiveTime::from_hms_micro_opt(h, m, whole.parse().ok()?, micros)?;
        }
        Some(IsoDate {
            at: date.and_time(clock),
            precision,
            fraction,
            zone,
        })
    }

    /// `self` plus `times` × `d` (minus, when negative), at the precision the sum needs.
    fn add(&self, d: &Duration, times: i64) -> Option<IsoDate> {
        let months = (d.years * 12 + d.months) as i64 * times;
        let days = (d.weeks * 7 + d.days) as i64 * times;
        let micros = ((d.hours * 3600 + d.minutes * 60) as f64 + d.seconds) * 1e6;
        let micros = (micros.round() as i64).checked_mul(times)?;
        let mut at = self.at;
        at = if months >= 0 {
            at.checked_add_months(Months::new(u32::try_from(months).ok()?))?
        } else {
            at.checked_sub_months(Months::new(u32::try_from(-months).ok()?))?
        };
        at = if days >= 0 {
            at.checked_add_days(Days::new(days as u64))?
        } else {
            at.checked_sub_days(Days::new(days.unsigned_abs()))?
        };
        at = at.checked_add_signed(chrono::Duration::microseconds(micros))?;
        let precision = self.precision.max(d.precision());
        Some(IsoDate {
            at,
            precision,
            fraction: self.fraction || d.seconds.fract() != 0.0,
            zone: self.zone.clone(),
        })
    }

    fn format(&self) -> String {
        let text = match self.precision {
            Precision::Year => self.at.format("%Y").to_string(),
            Precision::Month => self.at.format("%Y-%m").to_string(),
            Precision::Day => self.at.format("%Y-%m-%d").to_string(),
            Precision::Minute => self.at.format("%Y-%m-%dT%H:%M").to_string(),
            Precision::Second if self.fraction => {
                self.at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            }
            Precision::Second => self.at.format("%Y-%m-%dT%H:%M:%S").to_string(),
        };
        format!("{text}{}", self.zone)
    }
}

/// `+hh`, `+hhmm`, `+hh:mm` (or `-`).
fn valid_offset(zone: &str) -> bool {
    let rest = &zone[1..];
    let digits = rest.replace(':', "");
    (zone.starts_with('+') || zone.starts_with('-'))
        && matches!(digits.len(), 2 | 4)
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// An ISO 8601 duration (`P1Y2M10DT2H30M`, `P2W`); only seconds may carry a fraction.
#[derive(Clone, Debug, Default, PartialEq)]
struct Duration {
    years: u32,
    months: u32,
    weeks: u32,
    days: u32,
    hours: u32,
    minutes: u32,
    seconds: f64,
}

impl Duration {
    fn parse(text: &str) -> Option<Duration> {
        let body = text.strip_prefix(['P', 'p'])?;
        let (date, time) = match body.find(['T', 't']) {
            Some(i) => (&body[..i], Some(&body[i + 1..])),
            None => (body, None),
        };
        let mut d = Duration::default();
        let mut any = false;
        let mut number = String::new();
        for c in date.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let n: u32 = number.parse().ok()?;
            number.clear();
            match c.to_ascii_uppercase() {
                'Y' => d.years = n,
                'M' => d.months = n,
                'W' => d.weeks = n,
                'D' => d.days = n,
                _ => return None,
            }
            any = true;
        }
        if !number.is_empty() {
            return None;
        }
        if let Some(time) = time {
            for c in time.chars() {
                if c.is_ascii_digit() || c == '.' || c == ',' {
                    number.push(if c == ',' { '.' } else { c });
                    continue;
                }
                let unit = c.to_ascii_uppercase();
                if unit == 'S' {
                    d.seconds = number.parse().ok().filter(|s: &f64| s.is_finite())?;
                } else {
                    let n: u32 = number.parse().ok()?;
                    match unit {
                        'H' => d.hours = n,
                        'M' => d.minutes = n,
                        _ => return None,
                    }
                }
                number.clear();
                any = true;
            }
            if !number.is_empty() {
                return None;
            }
        }
        any.then_some(d)
    }

    /// The span from one date to another, in the unit of the finer one's precision.
    fn between(start: &IsoDate, end: &IsoDate) -> Option<Duration> {
        let span = end.at.signed_duration_since(start.at);
        if span < chrono::Duration::zero() {
            return None;
        }
        Some(match start.precision.max(end.precision) {
            Precision::Year => Duration {
                years: u32::try_from(end.at.year() - start.at.year()).ok()?,
                ..Duration::default()
            },
            Precision::Month => {
                let months = |d: &IsoDate| d.at.year() * 12 + d.at.month0() as i32;
                Duration {
                    months: u32::try_from(months(end) - months(start)).ok()?,
                    ..Duration::default()
                }
            }
            Precision::Day => Duration {
                days: u32::try_from(span.num_days()).ok()?,
                ..Duration::default()
            },
            Precision::Minute | Precision::Second => Duration {
                seconds: span.num_microseconds()? as f64 / 1e6,
                ..Duration::default()
            },
        })
    }

    fn precision(&self) -> Precision {
        if self.seconds != 0.0 {
            Precision::Second
        } else if self.hours != 0 || self.minutes != 0 {
            Precision::Minute
        } else if self.weeks != 0 || self.days != 0 {
            Precision::Day
        } else if self.months != 0 {
            Precision::Month
        } else {
            Precision::Year
        }
    }
}

/// Where a dataset is, as a catalog's spatial field says it.
#[derive(Clone, Debug, PartialEq)]
pub enum Spatial {
    Box(BoundingBox),
    /// A place name or gazetteer URI, kept as written.
    Place(String),
}

/// A spatial field's text: `W,S,E,N`, GeoJSON, or WKT (`POLYGON`, `MULTIPOLYGON`, `POINT`, …,
/// `ENVELOPE(minX, maxX, maxY, minY)`, `BBOX(minX, minY, maxX, maxY)`, with an optional EWKT
/// `SRID=4326;` or GeoSPARQL CRS IRI before it) gives a box; any other text is a place.
/// `None` for empty text, and for a geometry that is not in degrees (or is out of their range):
/// coordinates are not a place name.
pub fn spatial(text: &str) -> Option<Spatial> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.starts_with('{') {
        let value: Value = serde_json::from_str(text).ok()?;
        return spatial_value(&value);
    }
    if let Some(b) = comma_box(text) {
        return degrees(b).map(Spatial::Box);
    }
    if let Some(b) = wkt(text) {
        return b.and_then(degrees).map(Spatial::Box);
    }
    let looks_numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | ',' | '-' | '+' | ' ' | 'e' | 'E'));
    (!looks_numeric).then(|| Spatial::Place(text.to_string()))
}

/// A spatial field already parsed as JSON: a GeoJSON object (geometry, feature or collection),
/// or a string read as [`spatial`].
pub fn spatial_value(value: &Value) -> Option<Spatial> {
    match value {
        Value::String(s) => spatial(s),
        Value::Object(_) => geojson_extent(value).and_then(degrees).map(Spatial::Box),
        _ => None,
    }
}

/// The box around every coordinate of a GeoJSON geometry, feature or feature collection.
pub fn geojson_extent(value: &Value) -> Option<BoundingBox> {
    let mut bbox = None;
    fn positions(v: &Value, bbox: &mut Option<BoundingBox>) {
        let Some(items) = v.as_array() else { return };
        match (
            items.first().and_then(Value::as_f64),
            items.get(1).and_then(Value::as_f64),
        ) {
            (Some(x), Some(y)) => extend(bbox, x, y),
            _ => items.iter().for_each(|i| positions(i, bbox)),
        }
    }
    fn walk(v: &Value, bbox: &mut Option<BoundingBox>) {
        if let Some(c) = v.get("coordinates") {
            positions(c, bbox);
        }
        if let Some(g) = v.get("geometry") {
            walk(g, bbox);
        }
        for key in ["geometries", "features"] {
            for item in v.get(key).and_then(Value::as_array).into_iter().flatten() {
                walk(item, bbox);
            }
        }
    }
    walk(value, &mut bbox);
    bbox.filter(finite)
}

fn extend(bbox: &mut Option<BoundingBox>, x: f64, y: f64) {
    let b = bbox.get_or_insert(BoundingBox {
        west: x,
        south: y,
        east: x,
        north: y,
    });
    b.west = b.west.min(x);
    b.east = b.east.max(x);
    b.south = b.south.min(y);
    b.north = b.north.max(y);
}

fn finite(b: &BoundingBox) -> bool {
    [b.west, b.south, b.east, b.north]
        .iter()
        .all(|v| v.is_finite())
}

/// A box that can be in degrees: latitudes within ±90 and south of north, longitudes
/// within ±360 (some catalogs run 0–360).
fn degrees(b: BoundingBox) -> Option<BoundingBox> {
    let ok = finite(&b)
        && (-90.0..=90.0).contains(&b.south)
        && (-90.0..=90.0).contains(&b.north)
        && b.south <= b.north
        && (-360.0..=360.0).contains(&b.west)
        && (-360.0..=360.0).contains(&b.east);
    ok.then_some(b)
}

/// `W,S,E,N`: four numbers and nothing else.
fn comma_box(text: &str) -> Option<BoundingBox> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    if parts.len() != 4 {
        return None;
    }
    let n: Vec<f64> = parts.iter().filter_map(|p| p.parse().ok()).collect();
    (n.len() == 4).then(|| BoundingBox {
        west: n[0],
        south: n[1],
        east: n[2],
        north: n[3],
    })
}

/// `Some(box)` for WKT in degrees, `Some(None)` for WKT in another CRS or without
/// coordinates, `None` for text that is not WKT.
fn wkt(text: &str) -> Option<Option<BoundingBox>> {
    let mut text = text.trim();
    let mut lat_first = false;
    if let Some(rest) = text.strip_prefix('<') {
        let (iri, after) = rest.split_once('>')?;
        let iri = iri.trim_end_matches('/');
        if iri.ends_with("EPSG/0/4326") {
            // GeoSPARQL follows the CRS's own axis order: EPSG:4326 is latitude first.
            lat_first = true;
        } else if !iri.ends_with("OGC/1.3/CRS84") {
            return Some(None);
        }
        text = after.trim();
    }
    let upper = text.to_ascii_uppercase();
    if let Some(rest) = upper.strip_prefix("SRID=") {
        let (srid, _) = rest.split_once(';')?;
        if srid.trim() != "4326" {
            return Some(None);
        }
        text = text[text.find(';')? + 1..].trim();
    }
    let open = text.find('(')?;
    let keyword = text[..open].trim().to_ascii_uppercase();
    let keyword = keyword
        .trim_end_matches(" ZM")
        .trim_end_matches(" Z")
        .trim_end_matches(" M");
    let numbers = || -> Vec<f64> {
        text[open..]
            .split(|c: char| c == '(' || c == ')' || c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse().ok())
            .collect()
    };
    match keyword {
        "ENVELOPE" => {
            let n = numbers();
            (n.len() == 4).then_some(Some(BoundingBox {
                west: n[0],
                east: n[1],
                north: n[2],
                south: n[3],
            }))
        }
        "BBOX" => {
            let n = numbers();
            (n.len() == 4).then_some(Some(BoundingBox {
                west: n[0],
                south: n[1],
                east: n[2],
                north: n[3],
            }))
        }
        "POINT" | "MULTIPOINT" | "LINESTRING" | "MULTILINESTRING" | "POLYGON" | "MULTIPOLYGON"
        | "GEOMETRYCOLLECTION" => {
            let mut bbox = None;
            for position in text[open..].split(',') {
                let n: Vec<f64> = position
                    .split(|c: char| c == '(' || c == ')' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .filter_map(|s| s.parse().ok())
                    .collect();
                if n.len() >= 2 {
                    let (x, y) = if lat_first {
                        (n[1], n[0])
                    } else {
                        (n[0], n[1])
                    };
                    extend(&mut bbox, x, y);
                }
            }
            Some(bbox)
        }
        _ => None,
    }
}

/// Web Mercator (EPSG:3857 and its aliases) metres to degrees: the inverse spherical Mercator
/// projection on the WGS 84 semi-major axis.
pub fn inverse_mercator(x: f64, y: f64) -> (f64, f64) {
    const RADIUS: f64 = 6_378_137.0;
    let lon = (x / RADIUS).to_degrees();
    let lat = (2.0 * (y / RADIUS).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
    (lon, lat)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> Option<(Option<String>, Option<String>)> {
        iso_interval(text).map(|t| (t.start, t.end))
    }

    fn both(start: &str, end: &str) -> Option<(Option<String>, Option<String>)> {
        Some((Some(start.into()), Some(end.into())))
    }

    #[test]
    fn durations_add_at_the_precision_of_the_date_or_the_duration() {
        assert_eq!(range("2010/P1Y"), both("2010", "2011"));
        assert_eq!(range("2010-01/P3M"), both("2010-01", "2010-04"));
        assert_eq!(range("2010-01-31/P1M"), both("2010-01-31", "2010-02-28"));
        assert_eq!(range("2010-01-01/P1W"), both("2010-01-01", "2010-01-08"));
        assert_eq!(
            range("2010-01-01T23:30Z/PT45M"),
            both("2010-01-01T23:30Z", "2010-01-02T00:15Z")
        );
        assert_eq!(
            range("2010-01-01T00:00:00+05:00/P1Y2M10DT2H30M"),
            both("2010-01-01T00:00:00+05:00", "2011-03-11T02:30:00+05:00")
        );
        assert_eq!(
            range("2010-01-01T00:00:00Z/PT0.5S"),
            both("2010-01-01T00:00:00Z", "2010-01-01T00:00:00.500000Z")
        );
        assert_eq!(range("2010/PT1H"), both("2010", "2010-01-01T01:00"));
        assert_eq!(range("P1Y/2011"), both("2010", "2011"));
        assert_eq!(range("P1D/2000-03-01"), both("2000-02-29", "2000-03-01"));
    }

    #[test]
    fn repetitions_span_their_count_or_stay_open() {
        assert_eq!(
            range("R/2008-07-01/P1D"),
            Some((Some("2008-07-01".into()), None))
        );
        assert_eq!(range("R5/2008-07-01/P1D"), both("2008-07-01", "2008-07-06"));
        assert_eq!(
            range("R2/2008-07-01/2008-07-03"),
            both("2008-07-01", "2008-07-05")
        );
        assert_eq!(range("R3/P1Y/2020"), both("2017", "2020"));
        assert_eq!(range("R/P1Y/2020"), Some((None, Some("2020".into()))));
    }

    #[test]
    fn open_ends_single_dates_and_junk() {
        assert_eq!(range("2010-05/.."), Some((Some("2010-05".into()), None)));
        assert_eq!(range("/2010"), Some((None, Some("2010".into()))));
        assert_eq!(range("1993"), both("1993", "1993"));
        assert_eq!(range("19930115"), both("1993-01-15", "1993-01-15"));
        assert_eq!(
            range("2001-01-01 10:00:00/2001-02-01"),
            both("2001-01-01T10:00:00", "2001-02-01")
        );
        for junk in [
            "",
            "Summer 2010",
            "2010/soon",
            "P1Y/P2Y",
            "2010-13-01/2011",
            "R/x/P1D",
            "2010/P1.5Y",
        ] {
            assert_eq!(range(junk), None, "{junk}");
        }
    }

    #[test]
    fn spatial_text_of_every_form() {
        let b = |w, s, e, n| {
            Some(Spatial::Box(BoundingBox {
                west: w,
                south: s,
                east: e,
                north: n,
            }))
        };
        assert_eq!(spatial("-10, -5, 10, 5"), b(-10.0, -5.0, 10.0, 5.0));
        assert_eq!(spatial("POINT (3 4)"), b(3.0, 4.0, 3.0, 4.0));
        assert_eq!(
            spatial("MULTIPOLYGON (((0 0, 1 1, 0 0)), ((5 -2, 3 4, 5 -2)))"),
            b(0.0, -2.0, 5.0, 4.0)
        );
        assert_eq!(spatial("SRID=4326;POINT(3 4)"), b(3.0, 4.0, 3.0, 4.0));
        assert_eq!(
            spatial("<http://www.opengis.net/def/crs/EPSG/0/4326> POINT(4 3)"),
            b(3.0, 4.0, 3.0, 4.0)
        );
        assert_eq!(
            spatial("<http://www.opengis.net/def/crs/OGC/1.3/CRS84> POLYGON((3 4, 5 6, 3 4))"),
            b(3.0, 4.0, 5.0, 6.0)
        );
        assert_eq!(
            spatial(
                r#"{"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}]}"#
            ),
            b(1.0, 2.0, 1.0, 2.0)
        );
        assert_eq!(
            spatial(
                r#"{"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 1]]], [[[5, -2], [3, 4]]]]}"#
            ),
            b(0.0, -2.0, 5.0, 4.0)
        );
        assert_eq!(spatial(r#"{"type": "Polygon"}"#), None);
        assert_eq!(spatial("SRID=3857;POINT(300000 400000)"), None);
        assert_eq!(spatial("0,100,1,101"), None, "latitudes past the pole");
        assert_eq!(spatial("1,2,3"), None);
        assert_eq!(
            spatial("http://sws.geonames.org/6252001/"),
            Some(Spatial::Place("http://sws.geonames.org/6252001/".into()))
        );
        assert_eq!(spatial("  "), None);
    }

    #[test]
    fn web_mercator_inverts_exactly() {
        let (lon, lat) = inverse_mercator(0.0, 0.0);
        assert_eq!((lon, lat), (0.0, 0.0));
        let (lon, lat) = inverse_mercator(20_037_508.342_789_244, 20_037_508.342_789_244);
        assert!((lon - 180.0).abs() < 1e-9 && (lat - 85.051_128_779_806_6).abs() < 1e-9);
        // Halifax, through the forward projection and back.
        let (x, y) = (-7_086_079.0_f64, 5_552_155.0_f64);
        let (lon, lat) = inverse_mercator(x, y);
        let back_y = (std::f64::consts::FRAC_PI_4 + lat.to_radians() / 2.0)
            .tan()
            .ln()
            * 6_378_137.0;
        assert!((lon.to_radians() * 6_378_137.0 - x).abs() < 1e-6 && (back_y - y).abs() < 1e-6);
    }
}
