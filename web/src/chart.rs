//! Server-rendered SVG charts. Colours come from CSS classes (`s-ok`, `s-fail`, …) so
//! charts follow the light and dark themes; the markup has no inline style (CSP). Every
//! bar or segment carries a `<title>` (hover text, read by screen readers), the chart has
//! an accessible name, and empty data says so instead of drawing an empty box.
//!
//! Hand-written rather than a plotting crate: the crates draw with fixed colours and
//! inline styles, which neither follow the theme nor pass the CSP.

use std::fmt::Write as _;

use crate::format::compact;

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 30.0;

/// Escapes text for SVG/HTML content and attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A finished chart: SVG markup whose dynamic text is escaped (render with `|safe`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Svg(pub String);

impl std::fmt::Display for Svg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One legend entry: a series' name and its colour class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegendItem {
    pub name: String,
    pub class: &'static str,
}

/// One series of a bar chart (stacked on the previous ones).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    /// Colour class: `s-ok`, `s-fail`, `s-run`, `s-info`, `s-pay`, `s-charge`, `s-penalty`.
    pub class: &'static str,
    pub values: Vec<f64>,
}

/// A (stacked) bar chart over categories or time steps.
#[derive(Clone, Debug, PartialEq)]
pub struct BarChart {
    /// The accessible name (what the chart shows).
    pub title: String,
    /// Unit of the values, shown in hover titles and on the y axis (`tasks`, `%`, …).
    pub unit: String,
    /// One label per bar.
    pub labels: Vec<String>,
    /// Longer text per bar for the hover title (e.g. `10:00–11:00 UTC`); else the label.
    pub hover_labels: Vec<String>,
    pub series: Vec<Series>,
    /// Show every n-th label on the x axis (1: all).
    pub label_every: usize,
    /// What an all-zero chart says.
    pub empty: String,
    /// Width of the drawing in SVG units (0: 720). Text keeps its size in these units,
    /// so a chart shown in a narrow column reads better with a smaller width.
    pub width: f64,
}

impl BarChart {
    pub fn legend(&self) -> Vec<LegendItem> {
        self.series
            .iter()
            .map(|s| LegendItem {
                name: s.name.clone(),
                class: s.class,
            })
            .collect()
    }

    fn total(&self, i: usize) -> f64 {
        self.series
            .iter()
            .map(|s| s.values.get(i).copied().unwrap_or(0.0).max(0.0))
            .sum()
    }

    pub fn render(&self) -> Svg {
        let n = self.labels.len();
        let max = (0..n).map(|i| self.total(i)).fold(0.0, f64::max);
        let w = width(self.width);
        let mut out = open(&self.title, w);
        let ticks = nice_ticks(max);
        let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        let plot_h = H - TOP - BOTTOM;
        let plot_w = w - LEFT - RIGHT;
        let y = |v: f64| TOP + plot_h - v / top * plot_h;
        grid(&mut out, &ticks, &y, w, &self.unit);
        if n == 0 || max <= 0.0 {
            let _ = write!(
                out,
                r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + plot_w / 2.0,
                TOP + plot_h / 2.0,
                esc(&self.empty)
            );
        }
        let slot = if n == 0 { plot_w } else { plot_w / n as f64 };
        let bar_w = (slot * 0.78).max(1.0);
        let every = self.label_every.max(1);
        for (i, label) in self.labels.iter().enumerate() {
            let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
            let hover = self.hover_labels.get(i).unwrap_or(label);
            let mut title = esc(hover);
            title.push(':');
            for s in &self.series {
                let v = s.values.get(i).copied().unwrap_or(0.0);
                let _ = write!(title, " {} {}", esc(&compact(v)), esc(&s.name));
                title.push(',');
            }
            title.pop();
            if !self.unit.is_empty() && self.series.len() == 1 {
                let _ = write!(title, " ({})", esc(&self.unit));
            }
            let _ = write!(
                out,
                r#"<g class="col"><title>{title}</title><rect class="hit" x="{:.1}" y="{TOP}" width="{:.1}" height="{plot_h:.1}"/>"#,
                LEFT + slot * i as f64,
                slot
            );
            let mut base = 0.0;
            for s in &self.series {
                let v = s.values.get(i).copied().unwrap_or(0.0).max(0.0);
                if v > 0.0 {
                    let (y0, y1) = (y(base), y(base + v));
                    let _ = write!(
                        out,
                        r#"<rect class="{}" x="{x:.1}" y="{y1:.1}" width="{bar_w:.1}" height="{:.1}"/>"#,
                        s.class,
                        (y0 - y1).max(0.5)
                    );
                }
                base += v;
            }
            out.push_str("</g>");
        }
        let centre = |i: usize| LEFT + slot * (i as f64 + 0.5);
        x_axis(&mut out, &self.labels, every, &centre, w, y(0.0));
        Svg(out)
    }
}

/// A segment of a timeline, as fractions of its width.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub start: f64,
    pub end: f64,
    /// `s-up`, `s-down` or `s-unknown`.
    pub class: &'static str,
    pub title: String,
}

/// A band of coloured segments over time (availability), with labelled ticks.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    pub title: String,
    pub segments: Vec<Segment>,
    /// `(position 0..1, label)`, in order: a line at each position, the label centred on
    /// the span up to the next one (e.g. day boundaries labelled with their day).
    pub ticks: Vec<(f64, String)>,
    /// Width in SVG units (0: 720).
    pub width: f64,
}

impl Timeline {
    pub fn render(&self) -> Svg {
        const TH: f64 = 84.0;
        const BAND_TOP: f64 = 8.0;
        const BAND_H: f64 = 44.0;
        let w = width(self.width);
        let plot_w = w - 2.0 * RIGHT;
        let mut out = format!(
            r#"<svg class="chart timeline" viewBox="0 0 {w} {TH}" role="img" aria-label="{}" preserveAspectRatio="xMidYMid meet"><title>{}</title>"#,
            esc(&self.title),
            esc(&self.title)
        );
        let _ = write!(
            out,
            r#"<rect class="s-unknown" x="{RIGHT}" y="{BAND_TOP}" width="{plot_w:.1}" height="{BAND_H}"/>"#
        );
        for s in &self.segments {
            let (a, b) = (s.start.clamp(0.0, 1.0), s.end.clamp(0.0, 1.0));
            if b <= a {
                continue;
            }
            let _ = write!(
                out,
                r#"<g class="col"><title>{}</title><rect class="{}" x="{:.2}" y="{BAND_TOP}" width="{:.2}" height="{BAND_H}"/></g>"#,
                esc(&s.title),
                s.class,
                RIGHT + a * plot_w,
                ((b - a) * plot_w).max(0.8)
            );
        }
        // A line at each tick; its label centred on the span up to the next tick (or the
        // end), when there is room for it.
        for (i, (pos, label)) in self.ticks.iter().enumerate() {
            let a = pos.clamp(0.0, 1.0);
            let b = self.ticks.get(i + 1).map_or(1.0, |t| t.0.clamp(0.0, 1.0));
            let x = RIGHT + a * plot_w;
            let _ = write!(
                out,
                r#"<line class="axis" x1="{x:.1}" x2="{x:.1}" y1="{BAND_TOP}" y2="{:.1}"/>"#,
                BAND_TOP + BAND_H + 6.0
            );
            if (b - a) * plot_w >= 34.0 {
                let _ = write!(
                    out,
                    r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                    RIGHT + (a + b) / 2.0 * plot_w,
                    BAND_TOP + BAND_H + 20.0,
                    esc(label)
                );
            }
        }
        out.push_str("</svg>");
        Svg(out)
    }
}

/// A line chart of one or more series over the same steps (gaps where a value is
/// missing).
#[derive(Clone, Debug, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub unit: String,
    pub labels: Vec<String>,
    pub hover_labels: Vec<String>,
    /// `(name, class, values)`.
    pub series: Vec<(String, &'static str, Vec<Option<f64>>)>,
    pub label_every: usize,
    /// Fixed top of the y axis (e.g. 100 for percentages); else from the data.
    pub max: Option<f64>,
    pub empty: String,
    /// Width in SVG units (0: 720).
    pub width: f64,
}

impl LineChart {
    pub fn legend(&self) -> Vec<LegendItem> {
        self.series
            .iter()
            .map(|(name, class, _)| LegendItem {
                name: name.clone(),
                class,
            })
            .collect()
    }

    pub fn render(&self) -> Svg {
        let n = self.labels.len();
        let data_max = self
            .series
            .iter()
            .flat_map(|(_, _, v)| v.iter().flatten().copied())
            .fold(0.0, f64::max);
        let ticks = nice_ticks(self.max.unwrap_or(data_max));
        let top = ticks.last().copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
        let plot_h = H - TOP - BOTTOM;
        let w = width(self.width);
        let plot_w = w - LEFT - RIGHT;
        let y = |v: f64| TOP + plot_h - v / top * plot_h;
        let x = |i: usize| {
            if n <= 1 {
                LEFT + plot_w / 2.0
            } else {
                LEFT + plot_w * i as f64 / (n - 1) as f64
            }
        };
        let mut out = open(&self.title, w);
        grid(&mut out, &ticks, &y, w, &self.unit);
        let any = self
            .series
            .iter()
            .any(|(_, _, v)| v.iter().any(Option::is_some));
        if !any {
            let _ = write!(
                out,
                r#"<text class="empty" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + plot_w / 2.0,
                TOP + plot_h / 2.0,
                esc(&self.empty)
            );
        }
        for (name, class, values) in &self.series {
            let mut d = String::new();
            let mut pen_down = false;
            for (i, v) in values.iter().enumerate() {
                match v {
                    Some(v) => {
                        let _ = write!(
                            d,
                            "{}{:.1},{:.1}",
                            if pen_down { " L" } else { " M" },
                            x(i),
                            y(*v)
                        );
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            if !d.is_empty() {
                let _ = write!(
                    out,
                    r#"<path class="line {class}" d="{}"><title>{}</title></path>"#,
                    d.trim(),
                    esc(name)
                );
            }
            for (i, v) in values.iter().enumerate() {
                if let Some(v) = v {
                    let hover = self
                        .hover_labels
                        .get(i)
                        .or(self.labels.get(i))
                        .map_or("", String::as_str);
                    let _ = write!(
                        out,
                        r#"<circle class="dot {class}" cx="{:.1}" cy="{:.1}" r="3"><title>{}: {} {}</title></circle>"#,
                        x(i),
                        y(*v),
                        esc(hover),
                        esc(&compact(*v)),
                        esc(if self.unit.is_empty() {
                            name
                        } else {
                            &self.unit
                        })
                    );
                }
            }
        }
        x_axis(&mut out, &self.labels, self.label_every, &x, w, y(0.0));
        Svg(out)
    }
}

/// Every `every`-th label under its x position, the axis line at `y0`, and the end of
/// the drawing.
fn x_axis(
    out: &mut String,
    labels: &[String],
    every: usize,
    x: &dyn Fn(usize) -> f64,
    w: f64,
    y0: f64,
) {
    for (i, label) in labels.iter().enumerate().step_by(every.max(1)) {
        let _ = write!(
            out,
            r#"<text class="tick" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(i),
            H - BOTTOM + 16.0,
            esc(label)
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{:.1}" y1="{y0:.1}" y2="{y0:.1}"/></svg>"#,
        w - RIGHT
    );
}

/// The horizontal grid lines with their values on the left, and the unit above them.
fn grid(out: &mut String, ticks: &[f64], y: &dyn Fn(f64) -> f64, w: f64, unit: &str) {
    for t in ticks {
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}"/><text class="tick" x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            w - RIGHT,
            y(*t),
            y(*t),
            LEFT - 6.0,
            y(*t) + 4.0,
            esc(&compact(*t))
        );
    }
    let _ = write!(
        out,
        r#"<text class="unit" x="4" y="{:.1}">{}</text>"#,
        TOP - 12.0,
        esc(unit)
    );
}

fn width(w: f64) -> f64 {
    if w > 0.0 {
        w
    } else {
        W
    }
}

fn open(title: &str, w: f64) -> String {
    format!(
        r#"<svg class="chart" viewBox="0 0 {w} {H}" role="img" aria-label="{}" preserveAspectRatio="xMidYMid meet"><title>{}</title>"#,
        esc(title),
        esc(title)
    )
}

/// Round tick values from 0 to at least `max` (about four steps of 1, 2 or 5 × 10ⁿ).
pub fn nice_ticks(max: f64) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0, 1.0];
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Whole numbers only when the data are (tasks are counted, not measured).
    let step = if max >= 1.0 {
        step.max(1.0).round()
    } else {
        step
    };
    let mut ticks = vec![0.0];
    let mut t = 0.0;
    while t < max - 1e-9 {
        t += step;
        ticks.push(t);
    }
    ticks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bars(values: Vec<f64>, failed: Vec<f64>) -> BarChart {
        BarChart {
            title: "Tasks per hour".into(),
            unit: "tasks".into(),
            labels: (0..values.len()).map(|i| format!("{i:02}:00")).collect(),
            hover_labels: vec![],
            series: vec![
                Series {
                    name: "completed".into(),
                    class: "s-ok",
                    values,
                },
                Series {
                    name: "failed".into(),
                    class: "s-fail",
                    values: failed,
                },
            ],
            label_every: 1,
            empty: "No tasks yet".into(),
            width: 0.0,
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(nice_ticks(10.0), vec![0.0, 5.0, 10.0]);
        assert_eq!(nice_ticks(7.0), vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        assert_eq!(nice_ticks(1234.0), vec![0.0, 500.0, 1000.0, 1500.0]);
        assert_eq!(nice_ticks(0.0), vec![0.0, 1.0]);
        assert_eq!(nice_ticks(3.0), vec![0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn stacked_bars_have_one_rect_per_nonzero_value_and_a_hover_title() {
        let svg = bars(vec![3.0, 0.0, 5.0], vec![1.0, 0.0, 0.0]).render().0;
        // 3 hit areas + 3 non-zero bars.
        assert_eq!(svg.matches("<rect").count(), 6);
        assert_eq!(svg.matches(r#"class="s-ok""#).count(), 2);
        assert_eq!(svg.matches(r#"class="s-fail""#).count(), 1);
        assert!(svg.contains("<title>00:00: 3 completed, 1 failed</title>"));
        assert!(svg.contains(r#"aria-label="Tasks per hour""#));
        assert!(!svg.contains("No tasks yet"));
        assert!(!svg.contains("style="), "no inline style (CSP)");
    }

    #[test]
    fn the_tallest_stack_reaches_the_top_tick() {
        let svg = bars(vec![8.0], vec![2.0]).render().0;
        // Ticks 0..10 step 5: the stack of 10 spans the whole plot height.
        let plot_h = H - TOP - BOTTOM;
        assert!(svg.contains(&format!(r#"y="{TOP:.1}""#)), "{svg}");
        assert!(svg.contains(&format!(r#"height="{:.1}""#, plot_h * 0.8)));
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = bars(vec![0.0, 0.0], vec![0.0, 0.0]).render().0;
        assert!(svg.contains(">No tasks yet</text>"));
    }

    #[test]
    fn text_is_escaped() {
        let mut c = bars(vec![1.0], vec![0.0]);
        c.labels = vec!["<b>&".into()];
        let svg = c.render().0;
        assert!(svg.contains("&lt;b&gt;&amp;"));
        assert!(!svg.contains("<b>"));
    }

    #[test]
    fn timeline_segments_are_placed_by_fraction() {
        let t = Timeline {
            title: "Availability".into(),
            segments: vec![Segment {
                start: 0.5,
                end: 0.75,
                class: "s-down",
                title: "down 6 h".into(),
            }],
            ticks: vec![(0.0, "Mon".into())],
            width: 0.0,
        };
        let svg = t.render().0;
        let plot_w = W - 2.0 * RIGHT;
        assert!(svg.contains(&format!(
            r#"<rect class="s-down" x="{:.2}" y="8" width="{:.2}""#,
            RIGHT + 0.5 * plot_w,
            0.25 * plot_w
        )));
        assert!(svg.contains("<title>down 6 h</title>"));
    }

    #[test]
    fn line_charts_break_at_missing_values() {
        let c = LineChart {
            title: "Active nodes".into(),
            unit: "nodes".into(),
            labels: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            hover_labels: vec![],
            series: vec![(
                "active".into(),
                "s-info",
                vec![Some(1.0), Some(2.0), None, Some(4.0)],
            )],
            label_every: 1,
            max: None,
            empty: "none".into(),
            width: 0.0,
        };
        let svg = c.render().0;
        assert_eq!(svg.matches(" M").count() + svg.matches("\"M").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 3);
    }
}
