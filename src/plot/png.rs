//! Scene → RGB pixels → PNG. Everything except rectangles and axis-aligned rules is
//! anti-aliased; rectangles and rules are snapped to whole pixels so heatmap cells meet without
//! seams and axes stay crisp.

use image::ImageEncoder;
use image::codecs::png::PngEncoder;

use super::PlotError;
use super::font::Affine;
use super::raster::{Flattener, Shape};
use super::scene::{Prim, Rgba, Scene, Stroke};

/// An RGB image being drawn, `scale` device pixels per logical pixel.
pub(crate) struct Canvas {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
    scale: f32,
}

impl Canvas {
    fn new(width: u32, height: u32, scale: f32, background: Rgba) -> Self {
        let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
        for _ in 0..width as usize * height as usize {
            pixels.extend_from_slice(&[background.r, background.g, background.b]);
        }
        Self {
            width,
            height,
            pixels,
            scale,
        }
    }

    fn blend(&mut self, x: i32, y: i32, color: Rgba, coverage: f32) {
        if x < 0 || y < 0 || x as u32 >= self.width || y as u32 >= self.height {
            return;
        }
        let a = (color.a * coverage).clamp(0.0, 1.0);
        let i = (y as usize * self.width as usize + x as usize) * 3;
        if let Some(px) = self.pixels.get_mut(i..i + 3) {
            for (dst, src) in px.iter_mut().zip([color.r, color.g, color.b]) {
                let d = f32::from(*dst);
                *dst = (d + (f32::from(src) - d) * a).round() as u8;
            }
        }
    }

    /// Fills device pixels `[x0, x1) × [y0, y1)`.
    fn fill_px(&mut self, x0: i32, y0: i32, x1: i32, y1: i32, color: Rgba) {
        let (x0, x1) = (x0.max(0), x1.min(self.width as i32));
        let (y0, y1) = (y0.max(0), y1.min(self.height as i32));
        for y in y0..y1 {
            for x in x0..x1 {
                self.blend(x, y, color, 1.0);
            }
        }
    }

    fn fill_shape(&mut self, shape: &Shape, color: Rgba) {
        let (w, h) = (self.width, self.height);
        let mut hits = Vec::new();
        shape.rasterize(w, h, |x, y, c| hits.push((x, y, c)));
        for (x, y, c) in hits {
            self.blend(x, y, color, c);
        }
    }

    fn d(&self, v: f32) -> f32 {
        v * self.scale
    }

    /// Device line width: at least one pixel.
    fn line_px(&self, width: f32) -> i32 {
        (self.d(width).round() as i32).max(1)
    }

    fn rect(
        &mut self,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Rgba>,
        stroke: Option<&Stroke>,
    ) {
        if let Some(fill) = fill {
            let (x0, x1) = (self.d(x).round() as i32, self.d(x + w).round() as i32);
            let (y0, y1) = (self.d(y).round() as i32, self.d(y + h).round() as i32);
            self.fill_px(x0, y0, x1, y1, fill);
        }
        if let Some(s) = stroke {
            let lw = self.line_px(s.width);
            let half = lw as f32 / 2.0;
            let edge = |v: f32| (v - half).round() as i32;
            let (l, r) = (edge(self.d(x)), edge(self.d(x + w)));
            let (t, b) = (edge(self.d(y)), edge(self.d(y + h)));
            self.fill_px(l, t, r + lw, t + lw, s.color);
            self.fill_px(l, b, r + lw, b + lw, s.color);
            self.fill_px(l, t + lw, l + lw, b, s.color);
            self.fill_px(r, t + lw, r + lw, b, s.color);
        }
    }

    fn polyline(&mut self, points: &[(f32, f32)], stroke: &Stroke, closed: bool) {
        let mut pts: Vec<(f32, f32)> = points
            .iter()
            .map(|&(x, y)| (self.d(x), self.d(y)))
            .collect();
        if closed && let Some(&first) = pts.first() {
            pts.push(first);
        }
        let pieces = match stroke.dash {
            Some([on, off]) if on > 0.0 && off > 0.0 => dashes(&pts, self.d(on), self.d(off)),
            _ => vec![pts],
        };
        for piece in pieces {
            let crisp = !stroke.round
                && piece.len() == 2
                && (piece[0].0 == piece[1].0 || piece[0].1 == piece[1].1);
            if crisp {
                self.rule(piece[0], piece[1], stroke);
            } else {
                let mut shape = Shape::default();
                shape.stroke(&piece, self.d(stroke.width).max(0.75), stroke.round);
                self.fill_shape(&shape, stroke.color);
            }
        }
    }

    /// A horizontal or vertical line, snapped to whole pixels.
    fn rule(&mut self, a: (f32, f32), b: (f32, f32), stroke: &Stroke) {
        let lw = self.line_px(stroke.width);
        let half = lw as f32 / 2.0;
        if a.1 == b.1 {
            let y0 = (a.1 - half).round() as i32;
            let (x0, x1) = (a.0.min(b.0).round() as i32, a.0.max(b.0).round() as i32);
            self.fill_px(x0, y0, x1.max(x0 + 1), y0 + lw, stroke.color);
        } else {
            let x0 = (a.0 - half).round() as i32;
            let (y0, y1) = (a.1.min(b.1).round() as i32, a.1.max(b.1).round() as i32);
            self.fill_px(x0, y0, x0 + lw, y1.max(y0 + 1), stroke.color);
        }
    }
}

/// Splits a polyline into its dashes.
fn dashes(points: &[(f32, f32)], on: f32, off: f32) -> Vec<Vec<(f32, f32)>> {
    let mut out = Vec::new();
    let mut current: Vec<(f32, f32)> = Vec::new();
    let mut drawing = true;
    let mut left = on;
    for pair in points.windows(2) {
        let (mut p, q) = (pair[0], pair[1]);
        let mut len = ((q.0 - p.0).powi(2) + (q.1 - p.1).powi(2)).sqrt();
        if drawing && current.is_empty() {
            current.push(p);
        }
        while len > left {
            let t = left / len;
            let cut = (p.0 + (q.0 - p.0) * t, p.1 + (q.1 - p.1) * t);
            if drawing {
                current.push(cut);
                out.push(std::mem::take(&mut current));
            } else {
                current.push(cut);
            }
            drawing = !drawing;
            len -= left;
            left = if drawing { on } else { off };
            p = cut;
        }
        left -= len;
        if drawing {
            current.push(q);
        } else {
            current.clear();
        }
    }
    if drawing && current.len() > 1 {
        out.push(current);
    }
    out
}

/// Rasterises a scene at `scale` device pixels per logical pixel.
pub(crate) fn rasterize(scene: &Scene, scale: f32) -> Canvas {
    let width = (scene.width * scale).round().max(1.0) as u32;
    let height = (scene.height * scale).round().max(1.0) as u32;
    let mut canvas = Canvas::new(width, height, scale, scene.background);
    let device = Affine {
        a: scale,
        b: 0.0,
        c: 0.0,
        d: scale,
        e: 0.0,
        f: 0.0,
    };
    for prim in &scene.prims {
        match prim {
            Prim::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => canvas.rect(*x, *y, *w, *h, *fill, stroke.as_ref()),
            Prim::Polyline { points, stroke } => canvas.polyline(points, stroke, false),
            Prim::Polygon {
                points,
                fill,
                stroke,
            } => {
                if let Some(fill) = fill {
                    let mut shape = Shape::default();
                    let pts: Vec<_> = points
                        .iter()
                        .map(|&(x, y)| (x * scale, y * scale))
                        .collect();
                    shape.polygon(&pts);
                    canvas.fill_shape(&shape, *fill);
                }
                if let Some(s) = stroke {
                    canvas.polyline(points, s, true);
                }
            }
            Prim::Circle {
                cx,
                cy,
                r,
                fill,
                stroke,
            } => {
                if let Some(fill) = fill {
                    let mut shape = Shape::default();
                    shape.circle(cx * scale, cy * scale, r * scale);
                    canvas.fill_shape(&shape, *fill);
                }
                if let Some(s) = stroke {
                    let mut shape = Shape::default();
                    shape.ring(
                        cx * scale,
                        cy * scale,
                        r * scale,
                        (s.width * scale).max(0.75),
                    );
                    canvas.fill_shape(&shape, s.color);
                }
            }
            Prim::Text(t) => {
                let mut shape = Shape::default();
                for g in scene.place_glyphs(t) {
                    let m = device.then_after(&g.transform);
                    scene
                        .face(g.bold)
                        .outline(g.glyph, &m, &mut Flattener::new(&mut shape));
                }
                if !shape.is_empty() {
                    canvas.fill_shape(&shape, t.color);
                }
            }
        }
    }
    canvas
}

/// Encodes RGB pixels as PNG, with a `pHYs` chunk giving `dpi` so that editors import the
/// image at its intended physical size.
pub(crate) fn encode_png(canvas: &Canvas, dpi: f32) -> Result<Vec<u8>, PlotError> {
    let mut png = Vec::new();
    PngEncoder::new(&mut png)
        .write_image(
            &canvas.pixels,
            canvas.width,
            canvas.height,
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| PlotError::Encode(e.to_string()))?;
    // Signature (8) + IHDR chunk (4 length + 4 type + 13 data + 4 CRC) = 33 bytes.
    const AFTER_IHDR: usize = 33;
    if png.len() < AFTER_IHDR || png.get(12..16) != Some(b"IHDR".as_slice()) {
        return Err(PlotError::Encode("unexpected PNG layout".into()));
    }
    let per_metre = (dpi / 0.0254).round() as u32;
    let mut chunk = Vec::with_capacity(21);
    chunk.extend_from_slice(&9u32.to_be_bytes());
    chunk.extend_from_slice(b"pHYs");
    chunk.extend_from_slice(&per_metre.to_be_bytes());
    chunk.extend_from_slice(&per_metre.to_be_bytes());
    chunk.push(1); // unit: metre
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    png.splice(AFTER_IHDR..AFTER_IHDR, chunk);
    Ok(png)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_reference() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn dashes_alternate() {
        let d = dashes(&[(0.0, 0.0), (10.0, 0.0)], 2.0, 3.0);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0], vec![(0.0, 0.0), (2.0, 0.0)]);
        assert_eq!(d[1], vec![(5.0, 0.0), (7.0, 0.0)]);
        // A dash carries over a corner.
        let d = dashes(&[(0.0, 0.0), (1.0, 0.0), (1.0, 5.0)], 2.0, 1.0);
        assert_eq!(d[0], vec![(0.0, 0.0), (1.0, 0.0), (1.0, 1.0)]);
    }
}
