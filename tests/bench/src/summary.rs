//! Figures that reproduce on a shared machine: each figure is the median of several runs with
//! its range, and a ratio is computed within each run (numerator and denominator measured side
//! by side) before it is summarised, never as the ratio of two medians from different runs.

use serde_json::Value;

/// Several runs of one figure: the median and the lowest and highest run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    /// `None` when no run gave the figure (runs that did not measure it give `NaN` or nothing
    /// and are left out, so a figure measured twice of three says 2 runs).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            runs: n,
        })
    }

    /// The median, then the range in parentheses: `8,370 (7,074–8,512)`; a single run is just
    /// its figure.
    pub fn show(&self, unit: Unit) -> String {
        if self.runs == 1 {
            return unit.show(self.median);
        }
        format!(
            "{} ({}–{})",
            unit.show(self.median),
            unit.number(self.min),
            unit.show(self.max)
        )
    }
}

/// One figure of every run's report, found by a JSON pointer (`/harvest/resources_per_second`);
/// a run without it gives `NaN`, which [`Spread::of`] leaves out.
pub fn figure(runs: &[Value], pointer: &str) -> Vec<f64> {
    runs.iter()
        .map(|run| {
            run.pointer(pointer)
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        })
        .collect()
}

/// How a figure is written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unit {
    /// A plain number with this many decimals, thousands separated: `8,370`, `2.77`.
    Plain(usize),
    /// A share as a percentage: 0.452 → `45%`.
    Percent,
    /// A factor: 9.71 → `9.7×`.
    Times,
    /// Seconds with two decimals: `6.67 s`.
    Seconds,
    /// US dollars with two decimals: `$15.36`.
    Dollars,
}

impl Unit {
    /// The number alone, as the low end of a range shows it.
    fn number(self, v: f64) -> String {
        match self {
            Unit::Plain(decimals) => thousands(v, decimals),
            Unit::Percent => format!("{:.0}", v * 100.0),
            Unit::Times => format!("{v:.1}"),
            Unit::Seconds => format!("{v:.2}"),
            Unit::Dollars => format!("${v:.2}"),
        }
    }

    /// The number with its unit.
    pub fn show(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{}%", self.number(v)),
            Unit::Times => format!("{}×", self.number(v)),
            Unit::Seconds => format!("{} s", self.number(v)),
            Unit::Plain(_) | Unit::Dollars => self.number(v),
        }
    }
}

/// `v` with `decimals` decimals and a comma between thousands: 18523.4 → `18,523`.
pub fn thousands(v: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, v.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut grouped = String::new();
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if v < 0.0 && text.chars().any(|c| c.is_ascii_digit() && c != '0') {
        "-"
    } else {
        ""
    };
    if fraction.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_run_and_the_range_its_extremes() {
        let s = Spread::of(&[7074.0, 4829.0, 5027.0]).unwrap();
        assert_eq!(
            s,
            Spread {
                median: 5027.0,
                min: 4829.0,
                max: 7074.0,
                runs: 3
            }
        );
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_two_middle_runs() {
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.runs), (2.5, 1.0, 4.0, 4));
    }

    #[test]
    fn runs_that_did_not_measure_the_figure_are_left_out_and_none_at_all_is_none() {
        let s = Spread::of(&[f64::NAN, 2.0, f64::INFINITY, 4.0]).unwrap();
        assert_eq!((s.median, s.runs), (3.0, 2));
        assert_eq!(Spread::of(&[f64::NAN]), None);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn a_figure_is_read_from_every_run_and_a_run_without_it_is_nan() {
        let runs = [
            json!({"harvest": {"per_second": 10.0}}),
            json!({"harvest": {}}),
            json!({"harvest": {"per_second": 30}}),
        ];
        let values = figure(&runs, "/harvest/per_second");
        assert_eq!(values[0], 10.0);
        assert!(values[1].is_nan());
        assert_eq!(values[2], 30.0);
        assert_eq!(Spread::of(&values).unwrap().median, 20.0);
    }

    #[test]
    fn a_spread_shows_its_median_then_its_range() {
        let s = Spread::of(&[8370.4, 7074.0, 18523.0]).unwrap();
        assert_eq!(s.show(Unit::Plain(0)), "8,370 (7,074–18,523)");
        let ratio = Spread::of(&[0.452, 0.32, 0.47]).unwrap();
        assert_eq!(ratio.show(Unit::Percent), "45% (32–47%)");
        let times = Spread::of(&[9.71, 7.64, 10.0]).unwrap();
        assert_eq!(times.show(Unit::Times), "9.7× (7.6–10.0×)");
        let cost = Spread::of(&[15.36, 15.3]).unwrap();
        assert_eq!(cost.show(Unit::Dollars), "$15.33 ($15.30–$15.36)");
        assert_eq!(Spread::of(&[6.671]).unwrap().show(Unit::Seconds), "6.67 s");
    }

    #[test]
    fn thousands_are_separated_and_decimals_kept() {
        assert_eq!(thousands(999.0, 0), "999");
        assert_eq!(thousands(1000.0, 0), "1,000");
        assert_eq!(thousands(1234567.891, 2), "1,234,567.89");
        assert_eq!(thousands(-1234.5, 1), "-1,234.5");
        assert_eq!(thousands(-0.001, 1), "0.0");
    }
}
