//! Anti-aliased coverage rasterisation (signed-area accumulation, as in font-rs), used by the PNG
//! backend for text, data lines, markers and polygons. Coordinates are continuous pixels: pixel
//! `(x, y)` covers `[x, x + 1) × [y, y + 1)`.

use super::font::OutlineSink;

/// Closed polygons (as line segments) to fill. Within a group the non-zero rule applies
/// (holes of glyphs, rings); groups are united by taking the larger coverage per pixel, so
/// overlapping pieces of a stroke do not darken each other's anti-aliased edges.
#[derive(Debug, Default, Clone)]
pub(crate) struct Shape {
    groups: Vec<Vec<[f32; 4]>>,
}

impl Shape {
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(Vec::is_empty)
    }

    /// Starts a new group: what follows is united with, not added to, what came before.
    pub fn new_group(&mut self) {
        if self.groups.last().is_none_or(|g| !g.is_empty()) {
            self.groups.push(Vec::new());
        }
    }

    fn line(&mut self, x0: f32, y0: f32, x1: f32, y1: f32) {
        if y0 != y1 && [x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
            if self.groups.is_empty() {
                self.groups.push(Vec::new());
            }
            if let Some(group) = self.groups.last_mut() {
                group.push([x0, y0, x1, y1]);
            }
        }
    }

    /// A closed polygon in the orientation given (the caller decides holes).
    pub fn polygon_raw(&mut self, points: &[(f32, f32)]) {
        let n = points.len();
        for i in 0..n {
            let (a, b) = (points[i], points[(i + 1) % n]);
            self.line(a.0, a.1, b.0, b.1);
        }
    }

    /// A closed polygon in a group of its own, reoriented so that it never cuts a hole.
    pub fn polygon(&mut self, points: &[(f32, f32)]) {
        self.new_group();
        let n = points.len();
        let area: f32 = (0..n)
            .map(|i| {
                let (a, b) = (points[i], points[(i + 1) % n]);
                a.0 * b.1 - b.0 * a.1
            })
            .sum();
        if area < 0.0 {
            let reversed: Vec<_> = points.iter().rev().copied().collect();
            self.polygon_raw(&reversed);
        } else {
            self.polygon_raw(points);
        }
    }

    pub fn circle(&mut self, cx: f32, cy: f32, r: f32) {
        self.polygon(&circle_points(cx, cy, r));
    }

    /// A ring (stroked circle) of line width `width` centred on radius `r`.
    pub fn ring(&mut self, cx: f32, cy: f32, r: f32, width: f32) {
        self.new_group();
        let outer = circle_points(cx, cy, r + width / 2.0);
        let inner: Vec<_> = circle_points(cx, cy, (r - width / 2.0).max(0.0))
            .into_iter()
            .rev()
            .collect();
        self.polygon_raw(&outer);
        self.polygon_raw(&inner);
    }

    /// A polyline stroked with round joins, and round or butt caps.
    pub fn stroke(&mut self, points: &[(f32, f32)], width: f32, round_caps: bool) {
        let hw = width / 2.0;
        for pair in points.windows(2) {
            let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
            let (dx, dy) = (x1 - x0, y1 - y0);
            let len = (dx * dx + dy * dy).sqrt();
            if len < 1e-6 {
                continue;
            }
            let (nx, ny) = (-dy / len * hw, dx / len * hw);
            self.polygon(&[
                (x0 + nx, y0 + ny),
                (x1 + nx, y1 + ny),
                (x1 - nx, y1 - ny),
                (x0 - nx, y0 - ny),
            ]);
        }
        let n = points.len();
        for (i, &(x, y)) in points.iter().enumerate() {
            let end = i == 0 || i + 1 == n;
            if round_caps || n == 1 || (!end && width > 1.5) {
                self.circle(x, y, hw);
            }
        }
    }

    fn bounds(lines: &[[f32; 4]]) -> Option<(f32, f32, f32, f32)> {
        let mut it = lines.iter();
        let first = it.next()?;
        let init = (
            first[0].min(first[2]),
            first[1].min(first[3]),
            first[0].max(first[2]),
            first[1].max(first[3]),
        );
        Some(it.fold(init, |(a, b, c, d), l| {
            (
                a.min(l[0]).min(l[2]),
                b.min(l[1]).min(l[3]),
                c.max(l[0]).max(l[2]),
                d.max(l[1]).max(l[3]),
            )
        }))
    }

    /// Calls `plot(x, y, coverage)` for every pixel of a `width × height` canvas the shape
    /// touches, with coverage in (0, 1].
    pub fn rasterize(&self, width: u32, height: u32, mut plot: impl FnMut(i32, i32, f32)) {
        let clip = |lines: &[[f32; 4]]| -> Option<(i64, i64, usize, usize)> {
            let (min_x, min_y, max_x, max_y) = Self::bounds(lines)?;
            let x0 = (min_x.floor() as i64).clamp(0, i64::from(width));
            let y0 = (min_y.floor() as i64).clamp(0, i64::from(height));
            let x1 = (max_x.ceil() as i64 + 1).clamp(0, i64::from(width));
            let y1 = (max_y.ceil() as i64 + 1).clamp(0, i64::from(height));
            (x1 > x0 && y1 > y0).then_some((x0, y0, (x1 - x0) as usize, (y1 - y0) as usize))
        };
        let all: Vec<[f32; 4]> = self.groups.iter().flatten().copied().collect();
        let Some((x0, y0, w, h)) = clip(&all) else {
            return;
        };
        let mut coverage = vec![0.0f32; w * h];
        for group in &self.groups {
            let Some((gx, gy, gw, gh)) = clip(group) else {
                continue;
            };
            let mut acc = Accumulator::new(gw, gh);
            let (ox, oy) = (gx as f32, gy as f32);
            for l in group {
                acc.clipped_line(l[0] - ox, l[1] - oy, l[2] - ox, l[3] - oy);
            }
            let mut sum = 0.0f32;
            for (i, a) in acc.cells.iter().take(gw * gh).enumerate() {
                sum += a;
                let c = sum.abs().min(1.0);
                let (px, py) = ((i % gw) as i64 + gx - x0, (i / gw) as i64 + gy - y0);
                if let Some(cell) = coverage.get_mut(py as usize * w + px as usize) {
                    *cell = cell.max(c);
                }
            }
        }
        for (i, &c) in coverage.iter().enumerate() {
            if c > 1.0 / 512.0 {
                plot((i % w) as i32 + x0 as i32, (i / w) as i32 + y0 as i32, c);
            }
        }
    }
}

fn circle_points(cx: f32, cy: f32, r: f32) -> Vec<(f32, f32)> {
    let n = (r * 4.0).ceil().clamp(12.0, 128.0) as usize;
    (0..n)
        .map(|i| {
            let t = i as f32 / n as f32 * std::f32::consts::TAU;
            (cx + r * t.cos(), cy + r * t.sin())
        })
        .collect()
}

/// Flattens glyph outlines (already in pixel coordinates) into a [`Shape`].
pub(crate) struct Flattener<'a> {
    pub shape: &'a mut Shape,
    start: (f32, f32),
    current: (f32, f32),
}

impl<'a> Flattener<'a> {
    /// Starts a new group in `shape` for one glyph.
    pub fn new(shape: &'a mut Shape) -> Self {
        shape.new_group();
        Self {
            shape,
            start: (0.0, 0.0),
            current: (0.0, 0.0),
        }
    }
}

impl OutlineSink for Flattener<'_> {
    fn move_to(&mut self, x: f32, y: f32) {
        self.start = (x, y);
        self.current = (x, y);
    }

    fn line_to(&mut self, x: f32, y: f32) {
        self.shape.line(self.current.0, self.current.1, x, y);
        self.current = (x, y);
    }

    fn quad_to(&mut self, cx: f32, cy: f32, x: f32, y: f32) {
        let (x0, y0) = self.current;
        // Chord error of n segments ≈ |p0 − 2c + p2| / (8 n²); keep it under 0.05 px.
        let (ddx, ddy) = (x0 - 2.0 * cx + x, y0 - 2.0 * cy + y);
        let dd = (ddx * ddx + ddy * ddy).sqrt();
        let n = (dd / 0.4).sqrt().ceil().clamp(1.0, 32.0) as usize;
        for i in 1..=n {
            let t = i as f32 / n as f32;
            let mt = 1.0 - t;
            let px = mt * mt * x0 + 2.0 * mt * t * cx + t * t * x;
            let py = mt * mt * y0 + 2.0 * mt * t * cy + t * t * y;
            self.line_to(px, py);
        }
    }

    fn close(&mut self) {
        let (x, y) = self.start;
        if self.current != self.start {
            self.line_to(x, y);
        }
    }
}

struct Accumulator {
    w: usize,
    h: usize,
    cells: Vec<f32>,
}

impl Accumulator {
    fn new(w: usize, h: usize) -> Self {
        Self {
            w,
            h,
            cells: vec![0.0; w * h + w + 4],
        }
    }

    fn add(&mut self, index: i64, value: f32) {
        if let Some(cell) = usize::try_from(index)
            .ok()
            .and_then(|i| self.cells.get_mut(i))
        {
            *cell += value;
        }
    }

    /// Splits a line at the left and right edges; the parts outside become vertical lines on
    /// the edge, which keeps the area to their right correct.
    fn clipped_line(&mut self, x0: f32, y0: f32, x1: f32, y1: f32) {
        let right = self.w as f32;
        let mut cuts = vec![0.0f32, 1.0];
        for edge in [0.0, right] {
            if (x0 - edge) * (x1 - edge) < 0.0 {
                cuts.push((edge - x0) / (x1 - x0));
            }
        }
        cuts.sort_by(f32::total_cmp);
        for pair in cuts.windows(2) {
            let (t0, t1) = (pair[0], pair[1]);
            let at = |t: f32| (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
            let (ax, ay) = at(t0);
            let (bx, by) = at(t1);
            self.line(ax.clamp(0.0, right), ay, bx.clamp(0.0, right), by);
        }
    }

    fn line(&mut self, x0: f32, y0: f32, x1: f32, y1: f32) {
        if y0 == y1 {
            return;
        }
        let (dir, (x0, y0), (x1, y1)) = if y0 < y1 {
            (1.0f32, (x0, y0), (x1, y1))
        } else {
            (-1.0f32, (x1, y1), (x0, y0))
        };
        let dxdy = (x1 - x0) / (y1 - y0);
        let mut x = x0;
        if y0 < 0.0 {
            x -= y0 * dxdy;
        }
        let first = y0.max(0.0) as usize;
        let last = (self.h as f32).min(y1.ceil()).max(0.0) as usize;
        for y in first..last {
            let row = (y * self.w) as i64;
            let dy = ((y + 1) as f32).min(y1) - (y as f32).max(y0);
            let xnext = x + dxdy * dy;
            let d = dy * dir;
            let (xa, xb) = if x < xnext { (x, xnext) } else { (xnext, x) };
            let xa_floor = xa.floor();
            let xa_i = xa_floor as i64;
            let xb_ceil = xb.ceil();
            let xb_i = xb_ceil as i64;
            if xb_i <= xa_i + 1 {
                let xmf = 0.5 * (x + xnext) - xa_floor;
                self.add(row + xa_i, d - d * xmf);
                self.add(row + xa_i + 1, d * xmf);
            } else {
                let s = (xb - xa).recip();
                let xa_f = xa - xa_floor;
                let a0 = 0.5 * s * (1.0 - xa_f) * (1.0 - xa_f);
                let xb_f = xb - xb_ceil + 1.0;
                let am = 0.5 * s * xb_f * xb_f;
                self.add(row + xa_i, d * a0);
                if xb_i == xa_i + 2 {
                    self.add(row + xa_i + 1, d * (1.0 - a0 - am));
                } else {
                    let a1 = s * (1.5 - xa_f);
                    self.add(row + xa_i + 1, d * (a1 - a0));
                    for xi in xa_i + 2..xb_i - 1 {
                        self.add(row + xi, d * s);
                    }
                    let a2 = a1 + (xb_i - xa_i - 3) as f32 * s;
                    self.add(row + xb_i - 1, d * (1.0 - a2 - am));
                }
                self.add(row + xb_i, d * am);
            }
            x = xnext;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(shape: &Shape, w: u32, h: u32) -> f32 {
        let mut sum = 0.0;
        shape.rasterize(w, h, |_, _, c| sum += c);
        sum
    }

    #[test]
    fn a_square_covers_its_area() {
        let mut s = Shape::default();
        s.polygon(&[(2.0, 2.0), (12.0, 2.0), (12.0, 7.0), (2.0, 7.0)]);
        assert!((total(&s, 20, 20) - 50.0).abs() < 1e-3);
        // Same square, half a pixel off the grid: same area, spread over more pixels.
        let mut s = Shape::default();
        s.polygon(&[(2.5, 2.5), (12.5, 2.5), (12.5, 7.5), (2.5, 7.5)]);
        assert!((total(&s, 20, 20) - 50.0).abs() < 1e-3);
    }

    #[test]
    fn clipping_keeps_the_visible_area() {
        let mut s = Shape::default();
        s.polygon(&[(-5.0, 1.0), (5.0, 1.0), (5.0, 3.0), (-5.0, 3.0)]);
        assert!((total(&s, 4, 4) - 8.0).abs() < 1e-3);
        let mut s = Shape::default();
        s.polygon(&[(-3.0, -3.0), (30.0, -3.0), (30.0, 30.0)]);
        let sum = total(&s, 10, 10);
        assert!(sum > 40.0 && sum < 60.0, "{sum}");
    }

    #[test]
    fn overlaps_unite_and_rings_have_holes() {
        let mut s = Shape::default();
        s.circle(10.0, 10.0, 4.0);
        s.circle(10.0, 10.0, 4.0);
        // The circle is a 16-gon at this radius.
        let one = 8.0 * 16.0 * (std::f32::consts::TAU / 16.0).sin();
        assert!((total(&s, 20, 20) - one).abs() < 0.05);
        // A stroke with a join: no darker edge where the pieces overlap.
        let mut s = Shape::default();
        s.stroke(&[(2.0, 10.0), (10.0, 10.0), (18.0, 10.0)], 4.0, false);
        assert!((total(&s, 20, 20) - 64.0).abs() < 0.5);
        let mut r = Shape::default();
        r.ring(10.0, 10.0, 5.0, 2.0);
        let ring = std::f32::consts::PI * (36.0 - 16.0);
        assert!((total(&r, 20, 20) - ring).abs() < 2.0);
    }
}
