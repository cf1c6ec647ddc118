//! Harvest schedules: `rate(...)`, AWS-style `cron(m h dom mon dow year)` and 5-field Unix cron.
//!
//! Operators paste schedules from both worlds, and the two disagree on day-of-week numbers
//! (AWS: 1 = Sunday, Unix: 0 = Sunday), so every form is parsed into the same minute-level
//! matcher and rendered back in one normalized spelling. All times are UTC.
//!
//! The scheduler function is ticked by one EventBridge schedule (every `TickMinutes`); a source
//! is due on a tick when one of its fire times falls in the window `(tick - TickMinutes, tick]`.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Every `minutes`, aligned on multiples of that period since the Unix epoch.
    Rate {
        minutes: u32,
    },
    Cron(Cron),
}

/// One bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// 0 = Sunday.
    days_of_week: u64,
    dom_restricted: bool,
    dow_restricted: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid schedule {input:?}: {why}")]
pub struct ScheduleError {
    pub input: String,
    pub why: String,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

impl Schedule {
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        let err = |why: &str| ScheduleError {
            input: input.to_string(),
            why: why.to_string(),
        };
        let text = input.trim();
        if let Some(inner) = strip_call(text, "rate") {
            return parse_rate(inner).map_err(|w| err(&w));
        }
        if let Some(inner) = strip_call(text, "cron") {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            return match fields.len() {
                6 => parse_aws_cron(&fields).map(Schedule::Cron).map_err(|w| err(&w)),
                5 => parse_unix_cron(&fields).map(Schedule::Cron).map_err(|w| err(&w)),
                n => Err(err(&format!(
                    "cron(...) needs 6 fields (AWS: minutes hours day-of-month month day-of-week year) or 5, got {n}"
                ))),
            };
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields.len() {
            5 => parse_unix_cron(&fields)
                .map(Schedule::Cron)
                .map_err(|w| err(&w)),
            6 => parse_aws_cron(&fields)
                .map(Schedule::Cron)
                .map_err(|w| err(&w)),
            _ => Err(err(
                "expected rate(N minutes|hours|days), cron(m h dom mon dow year) or a 5-field cron",
            )),
        }
    }

    /// The latest fire time in `(after, until]`, if any. Windows are short (one tick), so
    /// checking minute by minute is cheap and obviously right.
    pub fn fire_time_in(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut t = floor_minute(until);
        let limit = Duration::days(1);
        while t > after && until - t <= limit {
            if self.fires_at(t) {
                return Some(t);
            }
            t -= Duration::minutes(1);
        }
        None
    }

    /// The first fire time strictly after `t`, searching at most a year ahead.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut c = floor_minute(t) + Duration::minutes(1);
        let end = t + Duration::days(366);
        while c <= end {
            if self.fires_at(c) {
                return Some(c);
            }
            c += Duration::minutes(1);
        }
        None
    }

    pub fn fires_at(&self, t: DateTime<Utc>) -> bool {
        if t.second() != 0 || t.nanosecond() != 0 {
            return false;
        }
        match self {
            Schedule::Rate { minutes } => (t.timestamp() / 60) % i64::from(*minutes) == 0,
            Schedule::Cron(c) => c.matches(t),
        }
    }
}

impl fmt::Display for Schedule {
    /// The normalized spelling stored with the source.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Rate { minutes } if *minutes == 1 => write!(f, "rate(1 minute)"),
            Schedule::Rate { minutes } => write!(f, "rate({minutes} minutes)"),
            Schedule::Cron(c) => write!(
                f,
                "cron({} {} {} {} {})",
                render(c.minutes, 0, 59, false),
                render(c.hours, 0, 23, false),
                render(c.days_of_month, 1, 31, !c.dom_restricted),
                render(c.months, 1, 12, false),
                render(c.days_of_week, 0, 6, !c.dow_restricted),
            ),
        }
    }
}

impl Cron {
    fn matches(&self, t: DateTime<Utc>) -> bool {
        let bit = |mask: u64, v: u32| mask & (1u64 << v) != 0;
        if !bit(self.minutes, t.minute())
            || !bit(self.hours, t.hour())
            || !bit(self.months, t.month())
        {
            return false;
        }
        let dom = bit(self.days_of_month, t.day());
        let dow = bit(self.days_of_week, t.weekday().num_days_from_sunday());
        // Vixie cron: when both day fields are restricted, either may match.
        match (self.dom_restricted, self.dow_restricted) {
            (true, true) => dom || dow,
            _ => dom && dow,
        }
    }
}

fn strip_call<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(name)?.trim_start();
    rest.strip_prefix('(')?.strip_suffix(')')
}

fn parse_rate(inner: &str) -> Result<Schedule, String> {
    let mut parts = inner.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("rate needs a value and a unit, e.g. rate(6 hours)".into());
    };
    let n: u32 = n
        .parse()
        .map_err(|_| format!("rate value {n:?} is not a positive whole number"))?;
    if n == 0 {
        return Err("rate value must be at least 1".into());
    }
    let per = match unit {
        "minute" | "minutes" => 1,
        "hour" | "hours" => 60,
        "day" | "days" => 1440,
        other => {
            return Err(format!(
                "rate unit {other:?} must be minutes, hours or days"
            ))
        }
    };
    let minutes = n
        .checked_mul(per)
        .filter(|m| *m <= 366 * 1440)
        .ok_or("rate is longer than a year")?;
    Ok(Schedule::Rate { minutes })
}

fn parse_unix_cron(f: &[&str]) -> Result<Cron, String> {
    let dow = parse_field(f[4], 0, 7, Some(&DAYS), "day-of-week")?;
    // Unix cron allows 7 for Sunday too.
    cron_with_days_of_week(f, (dow & 0x7f) | ((dow >> 7) & 1))
}

fn parse_aws_cron(f: &[&str]) -> Result<Cron, String> {
    if f[5] != "*" {
        return Err(format!(
            "year field {:?} is not supported: use * (harvest schedules repeat every year)",
            f[5]
        ));
    }
    if (f[2] == "?") == (f[4] == "?") {
        return Err("AWS cron needs ? in exactly one of day-of-month and day-of-week".into());
    }
    for (field, name) in [(f[2], "day-of-month"), (f[4], "day-of-week")] {
        if field.contains(['L', 'W', '#']) && field != "?" {
            return Err(format!("{name} {field:?}: L, W and # are not supported"));
        }
    }
    // AWS numbers days 1 (Sunday) to 7 (Saturday): parse in that range, then shift to 0-6.
    let dow = parse_field(f[4], 1, 7, Some(&DAYS_AWS), "day-of-week")? >> 1;
    cron_with_days_of_week(f, dow)
}

/// The fields both dialects share (minutes, hours, day-of-month, month), plus their parsed
/// day-of-week mask (0 = Sunday).
fn cron_with_days_of_week(f: &[&str], days_of_week: u64) -> Result<Cron, String> {
    Ok(Cron {
        minutes: parse_field(f[0], 0, 59, None, "minutes")?,
        hours: parse_field(f[1], 0, 23, None, "hours")?,
        days_of_month: parse_field(f[2], 1, 31, None, "day-of-month")?,
        months: parse_field(f[3], 1, 12, Some(&MONTHS), "month")?,
        days_of_week,
        dom_restricted: !is_any(f[2]),
        dow_restricted: !is_any(f[4]),
    })
}

/// Day names for AWS's 1-based numbering: index 0 is unused.
const DAYS_AWS: [&str; 8] = ["", "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn is_any(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Parses one cron field into a bit mask over `min..=max`. `names[i]` stands for the value
/// `i + (1 if the field starts at 1 and names are 0-based)`.
fn parse_field(
    field: &str,
    min: u32,
    max: u32,
    names: Option<&[&str]>,
    what: &str,
) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        if let Some(names) = names {
            let upper = s.to_ascii_uppercase();
            if let Some(i) = names.iter().position(|n| !n.is_empty() && *n == upper) {
                // Month names are 1-based (JAN = 1); day names map to their index.
                return Ok(if what == "month" {
                    i as u32 + 1
                } else {
                    i as u32
                });
            }
        }
        let v: u32 = s
            .parse()
            .map_err(|_| format!("{what}: {s:?} is not a number or name"))?;
        if v < min || v > max {
            return Err(format!("{what}: {v} is outside {min}-{max}"));
        }
        Ok(v)
    };
    let mut mask = 0u64;
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let s: u32 =
                    s.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("{what}: step in {item:?} must be a positive number")
                    })?;
                (r, s)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (value(a)?, value(b)?);
            if a > b {
                return Err(format!("{what}: range {range:?} runs backwards"));
            }
            (a, b)
        } else if range.is_empty() {
            return Err(format!("{what}: empty item in {field:?}"));
        } else {
            let a = value(range)?;
            // `5/15` means "from 5 to the end, every 15".
            (a, if step > 1 { max } else { a })
        };
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step;
        }
    }
    Ok(mask)
}

/// Renders a mask as `*` or a compact list of values and ranges.
fn render(mask: u64, min: u32, max: u32, any: bool) -> String {
    let full: u64 = (min..=max).fold(0, |m, v| m | (1u64 << v));
    if any || mask == full {
        return "*".into();
    }
    let mut parts = Vec::new();
    let mut v = min;
    while v <= max {
        if mask & (1u64 << v) != 0 {
            let start = v;
            while v < max && mask & (1u64 << (v + 1)) != 0 {
                v += 1;
            }
            parts.push(if v > start + 1 {
                format!("{start}-{v}")
            } else if v == start + 1 {
                format!("{start},{v}")
            } else {
                start.to_string()
            });
        }
        v += 1;
    }
    parts.join(",")
}

fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn aws_and_unix_cron_for_the_same_times_normalize_identically() {
        let aws = Schedule::parse("cron(0 12 ? * MON-FRI *)").unwrap();
        let aws_numeric = Schedule::parse("cron(0 12 ? * 2-6 *)").unwrap();
        let unix = Schedule::parse("0 12 * * 1-5").unwrap();
        assert_eq!(aws, unix);
        assert_eq!(aws_numeric, unix);
        assert_eq!(unix.to_string(), "cron(0 12 * * 1-5)");
        // The normalized form parses back to the same schedule.
        assert_eq!(Schedule::parse(&unix.to_string()).unwrap(), unix);
    }

    #[test]
    fn aws_sunday_is_one_and_unix_sunday_is_zero_or_seven() {
        let aws = Schedule::parse("cron(30 6 ? * 1 *)").unwrap();
        assert_eq!(aws, Schedule::parse("30 6 * * 0").unwrap());
        assert_eq!(aws, Schedule::parse("30 6 * * 7").unwrap());
        // 2026-11-22 is a Sunday.
        assert!(aws.fires_at(at(2026, 11, 22, 6, 30)));
        assert!(!aws.fires_at(at(2026, 11, 23, 6, 30)));
    }

    #[test]
    fn rates_are_normalized_to_minutes_and_aligned_on_the_epoch() {
        let r = Schedule::parse("rate(2 hours)").unwrap();
        assert_eq!(r.to_string(), "rate(120 minutes)");
        assert!(r.fires_at(at(2026, 11, 22, 14, 0)));
        assert!(!r.fires_at(at(2026, 11, 22, 15, 0)));
        assert_eq!(
            Schedule::parse("rate(1 minute)").unwrap().to_string(),
            "rate(1 minute)"
        );
    }

    #[test]
    fn steps_lists_and_ranges() {
        let s = Schedule::parse("*/15 0-3,22 * JAN,JUL *").unwrap();
        assert_eq!(s.to_string(), "cron(0,15,30,45 0-3,22 * 1,7 *)");
        assert!(s.fires_at(at(2026, 7, 4, 22, 45)));
        assert!(!s.fires_at(at(2026, 7, 4, 21, 45)));
        assert!(!s.fires_at(at(2026, 8, 4, 22, 45)));
    }

    #[test]
    fn restricted_day_of_month_and_week_match_either_like_vixie_cron() {
        let s = Schedule::parse("0 0 1 * MON").unwrap();
        assert!(s.fires_at(at(2026, 12, 1, 0, 0))); // a Tuesday, but the 1st
        assert!(s.fires_at(at(2026, 11, 23, 0, 0))); // a Monday
        assert!(!s.fires_at(at(2026, 11, 24, 0, 0)));
    }

    #[test]
    fn due_window_excludes_its_start_and_includes_its_end() {
        let s = Schedule::parse("cron(0 * ? * ? *)").unwrap_err();
        assert!(s.why.contains("exactly one"), "{s}");
        let hourly = Schedule::parse("0 * * * *").unwrap();
        let tick = at(2026, 11, 22, 12, 0);
        assert_eq!(
            hourly.fire_time_in(tick - Duration::minutes(5), tick),
            Some(tick)
        );
        // The next tick's window starts at this tick: the same fire time is not due twice.
        let next = tick + Duration::minutes(5);
        assert_eq!(hourly.fire_time_in(tick, next), None);
        // A late tick still finds the fire time inside its window.
        let late = at(2026, 11, 22, 12, 3);
        assert_eq!(
            hourly.fire_time_in(late - Duration::minutes(5), late),
            Some(tick)
        );
    }

    #[test]
    fn next_fire_time_is_found() {
        let s = Schedule::parse("cron(15 3 1 * ? *)").unwrap();
        assert_eq!(
            s.next_after(at(2026, 11, 22, 0, 0)),
            Some(at(2026, 12, 1, 3, 15))
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        for (input, needle) in [
            ("rate(0 minutes)", "at least 1"),
            ("rate(5 weeks)", "unit"),
            ("cron(0 12 * * ? 2027)", "year"),
            ("cron(0 12 L * ? *)", "not supported"),
            ("61 * * * *", "outside 0-59"),
            ("0 12 * * FUNDAY", "not a number or name"),
            ("5-1 * * * *", "backwards"),
            ("*/0 * * * *", "step"),
            ("every day", "expected"),
        ] {
            let e = Schedule::parse(input).unwrap_err();
            assert!(e.why.contains(needle), "{input}: {e}");
        }
    }
}
