//! Scene → SVG. Text is drawn as glyph outlines of the bundled font (one `<path>` per string,
//! in user units, so even minimal SVG renderers without `<use>` or font support show it), so
//! the file looks the same everywhere and matches the PNG; every text keeps its string in an
//! `aria-label` for search and accessibility.

use std::fmt::Write;

use super::font::OutlineSink;
use super::scene::{Prim, Rgba, Scene, Stroke};

/// Writes a path's `d` attribute.
struct PathData {
    d: String,
}

/// A coordinate with at most two decimals, without trailing zeros.
fn num(v: f32) -> String {
    fixed(v, 2)
}

fn fixed(v: f32, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" || s.is_empty() {
        "0".into()
    } else {
        s.to_string()
    }
}

impl OutlineSink for PathData {
    fn move_to(&mut self, x: f32, y: f32) {
        let _ = write!(self.d, "M{} {}", num(x), num(y));
    }
    fn line_to(&mut self, x: f32, y: f32) {
        let _ = write!(self.d, "L{} {}", num(x), num(y));
    }
    fn quad_to(&mut self, cx: f32, cy: f32, x: f32, y: f32) {
        let _ = write!(self.d, "Q{} {} {} {}", num(cx), num(cy), num(x), num(y));
    }
    fn close(&mut self) {
        self.d.push('Z');
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn fill_attrs(fill: Option<Rgba>) -> String {
    match fill {
        None => " fill=\"none\"".into(),
        Some(c) if c.a < 1.0 => format!(" fill=\"{}\" fill-opacity=\"{}\"", c.css(), num(c.a)),
        Some(c) => format!(" fill=\"{}\"", c.css()),
    }
}

fn stroke_attrs(stroke: Option<&Stroke>) -> String {
    let Some(s) = stroke else {
        return " stroke=\"none\"".into();
    };
    let mut out = format!(
        " stroke=\"{}\" stroke-width=\"{}\"",
        s.color.css(),
        num(s.width)
    );
    if s.color.a < 1.0 {
        let _ = write!(out, " stroke-opacity=\"{}\"", num(s.color.a));
    }
    if let Some([on, off]) = s.dash {
        let _ = write!(out, " stroke-dasharray=\"{} {}\"", num(on), num(off));
    }
    if s.round {
        out.push_str(" stroke-linecap=\"round\" stroke-linejoin=\"round\"");
    }
    out
}

fn points_attr(points: &[(f32, f32)]) -> String {
    points
        .iter()
        .map(|&(x, y)| format!("{},{}", num(x), num(y)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn write_svg(scene: &Scene) -> String {
    let mut body = String::new();

    for prim in &scene.prims {
        match prim {
            Prim::Rect {
                x,
                y,
                w,
                h,
                fill,
                stroke,
            } => {
                let crisp = if stroke.is_none() {
                    " shape-rendering=\"crispEdges\""
                } else {
                    ""
                };
                let _ = writeln!(
                    body,
                    "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"{}{}{crisp}/>",
                    num(*x),
                    num(*y),
                    num(*w),
                    num(*h),
                    fill_attrs(*fill),
                    stroke_attrs(stroke.as_ref())
                );
            }
            Prim::Polyline { points, stroke } => {
                let _ = writeln!(
                    body,
                    "<polyline points=\"{}\" fill=\"none\"{}/>",
                    points_attr(points),
                    stroke_attrs(Some(stroke))
                );
            }
            Prim::Polygon {
                points,
                fill,
                stroke,
            } => {
                let _ = writeln!(
                    body,
                    "<polygon points=\"{}\"{}{}/>",
                    points_attr(points),
                    fill_attrs(*fill),
                    stroke_attrs(stroke.as_ref())
                );
            }
            Prim::Circle {
                cx,
                cy,
                r,
                fill,
                stroke,
            } => {
                let _ = writeln!(
                    body,
                    "<circle cx=\"{}\" cy=\"{}\" r=\"{}\"{}{}/>",
                    num(*cx),
                    num(*cy),
                    num(*r),
                    fill_attrs(*fill),
                    stroke_attrs(stroke.as_ref())
                );
            }
            Prim::Text(t) => {
                let mut path = PathData { d: String::new() };
                for g in scene.place_glyphs(t) {
                    scene.face(g.bold).outline(g.glyph, &g.transform, &mut path);
                }
                if !path.d.is_empty() {
                    let _ = writeln!(
                        body,
                        "<path aria-label=\"{}\"{} d=\"{}\"/>",
                        escape(&t.text),
                        fill_attrs(Some(t.color)),
                        path.d
                    );
                }
            }
        }
    }

    let (w, h) = (num(scene.width), num(scene.height));
    let mut out = String::with_capacity(body.len() + 512);
    let _ = writeln!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\">"
    );
    let _ = writeln!(
        out,
        "<!-- NeuronXA Explorer. Text is outlined from DejaVu Sans (Bitstream Vera licence). -->"
    );
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\"{} stroke=\"none\"/>",
        fill_attrs(Some(scene.background))
    );
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(12.346), "12.35");
        assert_eq!(num(-3.0), "-3");
        assert_eq!(fixed(-4.4e-8, 6), "0");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
