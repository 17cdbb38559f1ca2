//! One line chart as an SVG string, drawn with plotters' SVG backend: lines
//! (solid, dashed or dotted) in a run's colour, optional shaded bands and
//! point markers, and vertical markers where a run switched from SFT to GRPO.

use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use crate::error::{Error, Result};

/// Width and height of a chart, in pixels.
pub(crate) const SIZE: (u32, u32) = (460, 260);

/// Colours of runs (and of checkpoints in a budget chart), in order:
/// Tableau 10, readable on white and told apart by most colour-blind readers.
pub(crate) const PALETTE: [(u8, u8, u8); 10] = [
    (78, 121, 167),
    (242, 142, 43),
    (89, 161, 79),
    (225, 87, 89),
    (118, 183, 178),
    (176, 122, 161),
    (237, 201, 72),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
];

/// The `i`-th palette colour as CSS.
pub(crate) fn css_colour(i: usize) -> String {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn colour(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// How a series' line is drawn; a chart's key names what each one means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stroke {
    Solid,
    Dashed,
    Dotted,
}

/// One line (and band) of a chart.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// Palette index.
    pub colour: usize,
    pub stroke: Stroke,
    /// (x, y) in x order; non-finite points are left out.
    pub points: Vec<(f64, f64)>,
    /// (x, low, high): a shaded band behind the line.
    pub band: Vec<(f64, f64, f64)>,
    /// Draw a dot at every point (sparse series such as evaluations).
    pub markers: bool,
}

impl Series {
    pub(crate) fn line(colour: usize, stroke: Stroke, points: Vec<(f64, f64)>) -> Self {
        Series {
            colour,
            stroke,
            points: points
                .into_iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect(),
            band: Vec::new(),
            markers: false,
        }
    }

    pub(crate) fn with_markers(mut self) -> Self {
        self.markers = true;
        self
    }

    pub(crate) fn with_band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = band
            .into_iter()
            .filter(|(x, l, h)| x.is_finite() && l.is_finite() && h.is_finite())
            .collect();
        self
    }
}

/// How the y axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum YAxis {
    /// From the data.
    Linear,
    /// A share: 0 to 1.
    Unit,
    /// Logarithmic, for values spanning orders of magnitude.
    Log,
}

/// A chart: series, axes, and the runs' SFT/GRPO boundaries.
#[derive(Debug, Clone)]
pub(crate) struct Chart {
    pub x_label: String,
    pub y_label: String,
    pub y_axis: YAxis,
    /// Logarithmic x axis in base 2 (thinking budgets).
    pub x_log2: bool,
    pub series: Vec<Series>,
    /// (palette index, x) of each run's last SFT step.
    pub boundaries: Vec<(usize, f64)>,
}

/// Most points drawn per series; longer series are thinned evenly.
const MAX_POINTS: usize = 1200;

impl Chart {
    /// The chart as an `<svg>` element.
    pub(crate) fn svg(&self, title: &str) -> Result<String> {
        let fail = |e: String| Error::Plot {
            plot: title.to_string(),
            message: e,
        };
        let (x, y) = self.bounds();
        let mut out = String::new();
        {
            let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
            root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
            let drawn = match (self.x_log2, self.y_axis) {
                (false, YAxis::Log) => self.draw(&root, x.clone(), y.clone().log_scale(), &y),
                (false, _) => self.draw(&root, x.clone(), y.clone(), &y),
                (true, YAxis::Log) => self.draw(
                    &root,
                    x.clone().log_scale().base(2.0),
                    y.clone().log_scale(),
                    &y,
                ),
                (true, _) => self.draw(&root, x.clone().log_scale().base(2.0), y.clone(), &y),
            };
            drawn.map_err(fail)?;
            root.present().map_err(|e| fail(e.to_string()))?;
        }
        Ok(out)
    }

    /// The x and y ranges that hold every point, band and boundary.
    fn bounds(&self) -> (Range<f64>, Range<f64>) {
        let xs = self
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .map(|p| p.0)
                    .chain(s.band.iter().map(|b| b.0))
            })
            .chain(self.boundaries.iter().map(|b| b.1));
        let ys = self.series.iter().flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.band.iter().flat_map(|b| [b.1, b.2]))
        });
        let (x0, x1) = min_max(xs).unwrap_or((0.0, 1.0));
        // Steps are whole numbers: a span of at least 10 keeps ticks whole.
        let x = match self.x_log2 {
            true => x0 / 1.25..x1 * 1.25,
            false if x1 - x0 >= 10.0 => x0..x1 + (x1 - x0) * 0.02,
            false => {
                let start = (x0 - (10.0 - (x1 - x0)) / 2.0).max(x0.min(0.0)).floor();
                start..start + 10.0
            }
        };
        let positive = |v: &f64| *v > 0.0;
        let y = match self.y_axis {
            YAxis::Unit => -0.02..1.02,
            YAxis::Log => {
                let (lo, hi) = min_max(ys.filter(positive)).unwrap_or((0.1, 1.0));
                lo / 1.5..hi * 1.5
            }
            YAxis::Linear => {
                let (lo, hi) = min_max(ys).unwrap_or((0.0, 1.0));
                let pad = match hi - lo {
                    span if span > 0.0 => span * 0.06,
                    _ => (hi.abs() * 0.1).max(0.5),
                };
                // A series of non-negative numbers keeps 0 in view when close to it.
                let floor = if lo >= 0.0 && lo - pad < 0.0 {
                    0.0
                } else {
                    lo - pad
                };
                floor..hi + pad
            }
        };
        (x, y)
    }

    fn draw<X, Y>(
        &self,
        root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        x: X,
        y: Y,
        y_span: &Range<f64>,
    ) -> std::result::Result<(), String>
    where
        X: AsRangedCoord<Value = f64>,
        Y: AsRangedCoord<Value = f64>,
        X::CoordDescType: ValueFormatter<f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .margin_top(12)
            .margin_right(18)
            .margin_left(6)
            .margin_bottom(6)
            .x_label_area_size(40)
            .y_label_area_size(58)
            .build_cartesian_2d(x, y)
            .map_err(e)?;
        let tick = ("sans-serif", 13).into_font().color(&RGBColor(60, 60, 60));
        let desc = ("sans-serif", 14).into_font().color(&RGBColor(40, 40, 40));
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .y_desc(self.y_label.as_str())
            .x_labels(7)
            .y_labels(6)
            .x_label_formatter(&|v| tick_label(*v))
            .y_label_formatter(&|v| tick_label(*v))
            .label_style(tick)
            .axis_desc_style(desc)
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(RGBColor(244, 244, 244))
            .axis_style(RGBColor(150, 150, 150))
            .draw()
            .map_err(e)?;

        for (i, &(c, bx)) in self.boundaries.iter().enumerate() {
            let grey = RGBColor(120, 120, 120);
            let style = match self.boundaries.len() {
                1 => grey.stroke_width(1),
                _ => colour(c).stroke_width(1),
            };
            chart
                .draw_series(DashedLineSeries::new(
                    [(bx, y_span.start), (bx, y_span.end)],
                    5,
                    4,
                    style,
                ))
                .map_err(e)?;
            if self.boundaries[..i].iter().all(|b| b.1 != bx) {
                let label = ("sans-serif", 12).into_font().color(&grey);
                let at = (bx, y_span.end);
                chart
                    .draw_series(std::iter::once(
                        EmptyElement::at(at) + Text::new(" GRPO →", (2, 2), label),
                    ))
                    .map_err(e)?;
            }
        }
        for s in &self.series {
            let c = colour(s.colour);
            if s.band.len() > 1 {
                let mut outline: Vec<(f64, f64)> = s.band.iter().map(|b| (b.0, b.2)).collect();
                outline.extend(s.band.iter().rev().map(|b| (b.0, b.1)));
                chart
                    .draw_series(std::iter::once(Polygon::new(outline, c.mix(0.16).filled())))
                    .map_err(e)?;
            }
            let points = thin(&s.points);
            let style = c.stroke_width(2);
            match s.stroke {
                Stroke::Solid => {
                    chart
                        .draw_series(LineSeries::new(points.iter().copied(), style))
                        .map_err(e)?;
                }
                Stroke::Dashed => {
                    chart
                        .draw_series(DashedLineSeries::new(points.iter().copied(), 7, 4, style))
                        .map_err(e)?;
                }
                Stroke::Dotted => {
                    chart
                        .draw_series(DashedLineSeries::new(points.iter().copied(), 2, 3, style))
                        .map_err(e)?;
                }
            }
            if s.markers || points.len() == 1 {
                let filled = match s.stroke {
                    Stroke::Solid => c.filled(),
                    _ => WHITE.filled(),
                };
                chart
                    .draw_series(points.iter().map(|&p| {
                        EmptyElement::at(p)
                            + Circle::new((0, 0), 3, c.stroke_width(2))
                            + Circle::new((0, 0), 2, filled)
                    }))
                    .map_err(e)?;
            }
        }
        Ok(())
    }
}

/// Keeps a chart readable and small: at most [`MAX_POINTS`] evenly spaced
/// points, the last always among them.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let stride = points.len().div_ceil(MAX_POINTS);
    let mut kept: Vec<(f64, f64)> = points.iter().step_by(stride).copied().collect();
    if kept.last() != points.last() {
        kept.extend(points.last());
    }
    kept
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// A tick label: short, without trailing zeros; exponents for the very
/// large and the very small.
pub(crate) fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".to_string();
    }
    if !(1e-3..1e5).contains(&a) {
        let text = format!("{v:.1e}");
        return text.replace(".0e", "e");
    }
    let text = format!("{v:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(0.25), "0.25");
        assert_eq!(tick_label(100.0), "100");
        assert_eq!(tick_label(1e-4), "1e-4");
        assert_eq!(tick_label(3e-5), "3e-5");
        assert_eq!(tick_label(250000.0), "2.5e5");
    }

    #[test]
    fn long_series_are_thinned_keeping_the_last_point() {
        let points: Vec<(f64, f64)> = (0..5000).map(|i| (i as f64, 1.0)).collect();
        let kept = thin(&points);
        assert!(kept.len() <= MAX_POINTS + 1);
        assert_eq!(kept.last(), points.last());
        assert_eq!(kept[0], points[0]);
    }
}
