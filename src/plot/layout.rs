//! Building blocks shared by the views: title block, numeric axes, colour bar, legend, markers.
//! All sizes are logical pixels at scale 1.

use super::scene::{HAlign, Prim, Rgba, Scene, Stroke, Text, VAlign};
use super::style::{Colors, Marker, SeriesStyle, sequential};
use super::{Palette, PlotError, PlotSpec};

pub(crate) const MARGIN: f32 = 24.0;
pub(crate) const TITLE: f32 = 24.0;
pub(crate) const SUBTITLE: f32 = 16.0;
pub(crate) const LABEL: f32 = 18.0;
pub(crate) const TICK: f32 = 16.0;
pub(crate) const LEGEND: f32 = 16.0;
pub(crate) const TICK_LEN: f32 = 6.0;
pub(crate) const GAP: f32 = 8.0;
/// Smallest text drawn at all (cell values in very dense matrices).
pub(crate) const MIN_TEXT: f32 = 9.0;

pub(crate) struct Figure {
    pub scene: Scene,
    pub colors: Colors,
    pub palette: Palette,
    /// The scores the colour map spans: 0–1, or the values shown when stretched.
    pub range: (f64, f64),
}

/// A rectangle in logical pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Frame {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Frame {
    pub fn width(&self) -> f32 {
        self.x1 - self.x0
    }
    pub fn height(&self) -> f32 {
        self.y1 - self.y0
    }
}

/// A frame with linear data ranges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Axes {
    pub frame: Frame,
    pub x: (f64, f64),
    pub y: (f64, f64),
}

impl Axes {
    pub fn px(&self, x: f64) -> f32 {
        let (a, b) = self.x;
        self.frame.x0 + ((x - a) / (b - a)) as f32 * self.frame.width()
    }
    pub fn py(&self, y: f64) -> f32 {
        let (a, b) = self.y;
        self.frame.y1 - ((y - a) / (b - a)) as f32 * self.frame.height()
    }
}

impl Figure {
    pub fn new(spec: &PlotSpec) -> Result<Self, PlotError> {
        let colors = super::style::colors(spec.theme);
        Ok(Self {
            scene: Scene::new(spec.width as f32, spec.height as f32, colors.background)?,
            colors,
            palette: spec.palette,
            range: (0.0, 1.0),
        })
    }

    /// Spans the colour map over `values` (their finite minimum to maximum), when they differ.
    pub fn stretch_colors(&mut self, values: impl Iterator<Item = f64>) {
        let (lo, hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if lo.is_finite() && hi > lo {
            self.range = (lo, hi);
        }
    }

    /// The colour of score `v` on the colour map.
    pub fn shade(&self, v: f64) -> Rgba {
        let (lo, hi) = self.range;
        sequential(self.palette, (v - lo) / (hi - lo))
    }

    /// The colour bar's ticks: tenths of 0–1, or nice steps of a stretched range.
    fn colorbar_ticks(&self) -> Vec<(f64, String)> {
        if self.range == (0.0, 1.0) {
            return (0..=5)
                .map(|i| {
                    let v = i as f64 / 5.0;
                    (v, format!("{v:.1}"))
                })
                .collect();
        }
        let (lo, hi) = self.range;
        let (ticks, step) = nice_ticks(lo, hi, 5);
        ticks
            .into_iter()
            .map(|v| (v, tick_label(v, step)))
            .collect()
    }

    pub fn width(&self) -> f32 {
        self.scene.width
    }

    pub fn height(&self) -> f32 {
        self.scene.height
    }

    pub fn text_width(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.scene.text_width(text, size, bold)
    }

    /// Height a line of text occupies (capitals + descenders).
    pub fn text_height(&self, size: f32) -> f32 {
        self.scene.cap_height(size) + self.scene.descent(size)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn text(
        &mut self,
        text: &str,
        x: f32,
        y: f32,
        size: f32,
        color: Rgba,
        h: HAlign,
        v: VAlign,
        angle: f32,
    ) {
        self.scene.text(Text {
            text: text.to_string(),
            x,
            y,
            size,
            bold: false,
            color,
            h,
            v,
            angle,
        });
    }

    /// The largest size ≤ `size` (and ≥ `min`) at which `text` fits in `width`.
    pub fn fit(&self, text: &str, size: f32, min: f32, bold: bool, width: f32) -> f32 {
        let w = self.text_width(text, size, bold);
        if w <= width || w <= 0.0 {
            size
        } else {
            (size * width / w).max(min)
        }
    }

    /// Centred title (and optional subtitle); returns the y where the content may start.
    pub fn header(&mut self, title: &str, subtitle: Option<&str>) -> f32 {
        let avail = self.width() - 2.0 * MARGIN;
        let size = self.fit(title, TITLE, 14.0, true, avail);
        let mut y = MARGIN;
        self.scene.text(Text {
            text: title.to_string(),
            x: self.width() / 2.0,
            y,
            size,
            bold: true,
            color: self.colors.text,
            h: HAlign::Center,
            v: VAlign::Top,
            angle: 0.0,
        });
        y += self.text_height(size) + 6.0;
        if let Some(sub) = subtitle.filter(|s| !s.is_empty()) {
            let size = self.fit(sub, SUBTITLE, 11.0, false, avail);
            y += 4.0;
            let color = self.colors.muted;
            self.text(
                sub,
                self.width() / 2.0,
                y,
                size,
                color,
                HAlign::Center,
                VAlign::Top,
                0.0,
            );
            y += self.text_height(size) + 4.0;
        }
        y + 14.0
    }

    /// Horizontal line helper.
    pub fn rule(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, color: Rgba, width: f32) {
        self.scene.line(x0, y0, x1, y1, Stroke::solid(color, width));
    }

    /// Grid, left and bottom axes with outward ticks and labels, axis titles.
    pub fn numeric_axes(
        &mut self,
        axes: &Axes,
        x_ticks: &[(f64, String)],
        y_ticks: &[(f64, String)],
        x_title: &str,
        y_title: &str,
    ) {
        let f = axes.frame;
        let (grid, axis, text) = (self.colors.grid, self.colors.axis, self.colors.text);
        for (v, _) in y_ticks {
            let y = axes.py(*v);
            self.rule(f.x0, y, f.x1, y, grid, 1.0);
        }
        for (v, _) in x_ticks {
            let x = axes.px(*v);
            self.rule(x, f.y0, x, f.y1, grid, 1.0);
        }
        self.rule(f.x0, f.y1, f.x1, f.y1, axis, 1.25);
        self.rule(f.x0, f.y0, f.x0, f.y1, axis, 1.25);
        let mut widest = 0.0f32;
        for (v, label) in y_ticks {
            let y = axes.py(*v);
            self.rule(f.x0 - TICK_LEN, y, f.x0, y, axis, 1.25);
            let x = f.x0 - TICK_LEN - GAP;
            self.text(label, x, y, TICK, text, HAlign::Right, VAlign::Middle, 0.0);
            widest = widest.max(self.text_width(label, TICK, false));
        }
        for (v, label) in x_ticks {
            let x = axes.px(*v);
            self.rule(x, f.y1, x, f.y1 + TICK_LEN, axis, 1.25);
            let y = f.y1 + TICK_LEN + GAP;
            self.text(label, x, y, TICK, text, HAlign::Center, VAlign::Top, 0.0);
        }
        let x_title_y = f.y1 + TICK_LEN + GAP + self.text_height(TICK) + 12.0;
        let cx = (f.x0 + f.x1) / 2.0;
        let size = self.fit(x_title, LABEL, 11.0, false, f.width());
        self.text(
            x_title,
            cx,
            x_title_y,
            size,
            text,
            HAlign::Center,
            VAlign::Top,
            0.0,
        );
        let y_title_x = f.x0 - TICK_LEN - GAP - widest - 14.0;
        let cy = (f.y0 + f.y1) / 2.0;
        let size = self.fit(y_title, LABEL, 11.0, false, f.height() + 40.0);
        self.text(
            y_title,
            y_title_x,
            cy,
            size,
            text,
            HAlign::Center,
            VAlign::Bottom,
            -90.0,
        );
    }

    /// Space left of a frame that [`Self::numeric_axes`] needs for y tick labels and title.
    pub fn y_axis_space(&self, y_ticks: &[(f64, String)]) -> f32 {
        let widest = y_ticks
            .iter()
            .map(|(_, l)| self.text_width(l, TICK, false))
            .fold(0.0, f32::max);
        TICK_LEN + GAP + widest + 14.0 + self.text_height(LABEL)
    }

    /// Space below a frame for x tick labels and title.
    pub fn x_axis_space(&self) -> f32 {
        TICK_LEN + GAP + self.text_height(TICK) + 12.0 + self.text_height(LABEL)
    }

    /// Width a colour bar with its ticks and label takes.
    pub fn colorbar_width(&self) -> f32 {
        COLORBAR_BAR + TICK_LEN + GAP + self.colorbar_label_width() + 16.0 + self.text_height(LABEL)
    }

    fn colorbar_label_width(&self) -> f32 {
        self.colorbar_ticks()
            .iter()
            .map(|(_, label)| self.text_width(label, TICK, false))
            .fold(0.0, f32::max)
    }

    /// A vertical colour bar for the scores of [`Figure::range`] at `x`, spanning `y0..y1`.
    pub fn colorbar(&mut self, x: f32, y0: f32, y1: f32, title: &str) {
        let steps = 256;
        let h = (y1 - y0) / steps as f32;
        for i in 0..steps {
            let t = (i as f64 + 0.5) / steps as f64;
            let color = sequential(self.palette, t);
            let top = y1 - (i + 1) as f32 * h;
            self.scene.rect_fill(x, top, COLORBAR_BAR, h, color);
        }
        let (axis, text) = (self.colors.axis, self.colors.text);
        self.scene.push(Prim::Rect {
            x,
            y: y0,
            w: COLORBAR_BAR,
            h: y1 - y0,
            fill: None,
            stroke: Some(Stroke::solid(axis, 1.0)),
        });
        let right = x + COLORBAR_BAR;
        let (lo, hi) = self.range;
        for (v, label) in self.colorbar_ticks() {
            let y = y1 - (y1 - y0) * ((v - lo) / (hi - lo)) as f32;
            self.rule(right, y, right + TICK_LEN, y, axis, 1.25);
            let lx = right + TICK_LEN + GAP;
            self.text(&label, lx, y, TICK, text, HAlign::Left, VAlign::Middle, 0.0);
        }
        let tx = right + TICK_LEN + GAP + self.colorbar_label_width() + 16.0;
        let size = self.fit(title, LABEL, 12.0, false, y1 - y0);
        self.text(
            title,
            tx,
            (y0 + y1) / 2.0,
            size,
            text,
            HAlign::Center,
            VAlign::Top,
            -90.0,
        );
    }

    /// A marker centred at (x, y), `r` ≈ its radius.
    pub fn marker(&mut self, kind: Marker, x: f32, y: f32, r: f32, color: Rgba) {
        let edge = Some(Stroke::solid(self.colors.background, 1.0));
        let poly = |pts: &[(f32, f32)]| {
            pts.iter()
                .map(|&(dx, dy)| (x + dx * r, y + dy * r))
                .collect()
        };
        let prim = match kind {
            Marker::Circle => Prim::Circle {
                cx: x,
                cy: y,
                r,
                fill: Some(color),
                stroke: edge,
            },
            Marker::Square => Prim::Polygon {
                points: poly(&[(-0.85, -0.85), (0.85, -0.85), (0.85, 0.85), (-0.85, 0.85)]),
                fill: Some(color),
                stroke: edge,
            },
            Marker::TriangleUp => Prim::Polygon {
                points: poly(&[(0.0, -1.2), (1.05, 0.65), (-1.05, 0.65)]),
                fill: Some(color),
                stroke: edge,
            },
            Marker::TriangleDown => Prim::Polygon {
                points: poly(&[(0.0, 1.2), (1.05, -0.65), (-1.05, -0.65)]),
                fill: Some(color),
                stroke: edge,
            },
            Marker::Diamond => Prim::Polygon {
                points: poly(&[(0.0, -1.25), (1.0, 0.0), (0.0, 1.25), (-1.0, 0.0)]),
                fill: Some(color),
                stroke: edge,
            },
        };
        self.scene.push(prim);
    }

    /// Size of a legend box for these labels, in `columns` columns, text `size` px.
    pub fn legend_size(&self, labels: &[String], columns: usize, size: f32) -> (f32, f32) {
        let columns = columns.max(1);
        let widest = labels
            .iter()
            .map(|l| self.text_width(l, size, false))
            .fold(0.0, f32::max);
        let rows = labels.len().div_ceil(columns);
        let m = LegendMetrics::new(size);
        let w = 2.0 * m.pad
            + columns as f32 * (m.sample + GAP + widest)
            + (columns - 1) as f32 * m.column_gap;
        let h = 2.0 * m.pad + rows as f32 * m.row - (m.row - self.text_height(size));
        (w, h)
    }

    /// A legend box with its top-left corner at (x, y); entries fill columns top to bottom.
    pub fn legend(
        &mut self,
        x: f32,
        y: f32,
        entries: &[(String, SeriesStyle, bool)],
        columns: usize,
        size: f32,
    ) {
        let labels: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
        let (w, h) = self.legend_size(&labels, columns, size);
        self.scene.push(Prim::Rect {
            x,
            y,
            w,
            h,
            fill: Some(self.colors.panel),
            stroke: Some(Stroke::solid(self.colors.panel_border, 1.0)),
        });
        let m = LegendMetrics::new(size);
        let columns = columns.max(1);
        let rows = entries.len().div_ceil(columns).max(1);
        let widest = labels
            .iter()
            .map(|l| self.text_width(l, size, false))
            .fold(0.0, f32::max);
        let col_w = m.sample + GAP + widest + m.column_gap;
        let text = self.colors.text;
        let (line_w, marker_r) = (size * 0.14, size * 0.28);
        for (i, (label, style, with_marker)) in entries.iter().enumerate() {
            let (col, row) = (i / rows, i % rows);
            let ex = x + m.pad + col as f32 * col_w;
            let cy = y + m.pad + self.text_height(size) / 2.0 + row as f32 * m.row;
            let mut stroke = Stroke::round(style.color, line_w);
            if let Some([on, off]) = style.dash {
                stroke = stroke.dashed(on, off);
            }
            self.scene.line(ex, cy, ex + m.sample, cy, stroke);
            if *with_marker {
                self.marker(style.marker, ex + m.sample / 2.0, cy, marker_r, style.color);
            }
            let tx = ex + m.sample + GAP;
            self.text(label, tx, cy, size, text, HAlign::Left, VAlign::Middle, 0.0);
        }
    }
}

/// Spacing of a legend, proportional to its text size.
struct LegendMetrics {
    pad: f32,
    sample: f32,
    row: f32,
    column_gap: f32,
}

impl LegendMetrics {
    fn new(size: f32) -> Self {
        Self {
            pad: 0.75 * size,
            sample: 2.25 * size,
            row: 1.625 * size,
            column_gap: 1.1 * size,
        }
    }
}

pub(crate) const COLORBAR_BAR: f32 = 22.0;

/// "Nice" tick values covering [min, max], at most about `max_count` of them.
pub(crate) fn nice_ticks(min: f64, max: f64, max_count: usize) -> (Vec<f64>, f64) {
    if !(min.is_finite() && max.is_finite()) || max <= min {
        return (vec![if min.is_finite() { min } else { 0.0 }], 1.0);
    }
    let max_count = max_count.max(2) as f64;
    let raw = (max - min) / max_count;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| (max - min) / s <= max_count)
        .unwrap_or(10.0 * magnitude);
    let first = (min / step - 1e-9).ceil() as i64;
    let last = (max / step + 1e-9).floor() as i64;
    let ticks = (first..=last).map(|k| k as f64 * step).collect();
    (ticks, step)
}

/// A tick label with as many decimals as the step needs.
pub(crate) fn tick_label(v: f64, step: f64) -> String {
    let mut decimals = 0usize;
    while decimals < 6
        && ((step * 10f64.powi(decimals as i32)).round() - step * 10f64.powi(decimals as i32)).abs()
            > 1e-6
    {
        decimals += 1;
    }
    minus(&format!("{v:.decimals$}"))
}

/// A formatted number for display: no "-0", and a real minus sign (U+2212).
pub(crate) fn minus(s: &str) -> String {
    match s.strip_prefix('-') {
        Some(rest) if rest.chars().all(|c| c == '0' || c == '.') => rest.to_string(),
        Some(rest) => format!("\u{2212}{rest}"),
        None => s.to_string(),
    }
}

/// Integer ticks (layers) with a step from 1, 2, 5, 10, 20, … such that labels `label_w` wide
/// fit in `unit` pixels per integer.
pub(crate) fn integer_step(count: usize, unit: f32, label_w: f32) -> usize {
    let mut candidates = Vec::new();
    let mut magnitude = 1usize;
    while magnitude <= count.max(1) * 10 {
        for m in [1, 2, 5] {
            candidates.push(m * magnitude);
        }
        magnitude *= 10;
    }
    candidates
        .into_iter()
        .find(|&s| s as f32 * unit >= label_w + 12.0)
        .unwrap_or(count.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        let (t, s) = nice_ticks(0.0, 1.0, 6);
        assert_eq!(s, 0.2);
        assert_eq!(t.len(), 6);
        assert_eq!(tick_label(t[1], s), "0.2");
        let (t, s) = nice_ticks(0.43, 0.97, 6);
        assert_eq!(s, 0.1);
        assert_eq!(tick_label(t[0], s), "0.5");
        let (_, s) = nice_ticks(0.0, 3.2, 8);
        assert_eq!(s, 0.5);
        assert_eq!(tick_label(-0.0, 0.25), "0.00");
        assert_eq!(tick_label(1.25, 0.25), "1.25");
        assert_eq!(tick_label(10.0, 5.0), "10");
        assert_eq!(tick_label(-0.5, 0.5), "\u{2212}0.5");
    }

    #[test]
    fn integer_steps_thin_dense_axes() {
        assert_eq!(integer_step(6, 200.0, 10.0), 1);
        assert_eq!(integer_step(32, 20.0, 18.0), 2);
        assert_eq!(integer_step(80, 10.0, 18.0), 5);
        assert_eq!(integer_step(80, 2.0, 18.0), 20);
    }
}
