//! A plot as a flat list of primitives in logical pixels (1 px = 1/96 in at scale 1), drawn
//! in order. The views build a [`Scene`]; `svg.rs` writes it as SVG and `png.rs` rasterises it,
//! so both files come from the same geometry and the same glyph outlines.

use super::PlotError;
use super::font::{Affine, Face, Fonts, fonts};

/// An sRGB colour with opacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rgba {
    pub r: u8,
    pub g: u8,
    pub b: u8,
    pub a: f32,
}

impl Rgba {
    pub const fn hex(rgb: u32) -> Self {
        Self {
            r: (rgb >> 16) as u8,
            g: (rgb >> 8) as u8,
            b: rgb as u8,
            a: 1.0,
        }
    }

    pub const fn alpha(self, a: f32) -> Self {
        Self { a, ..self }
    }

    /// `#rrggbb` (opacity separately).
    pub fn css(self) -> String {
        format!("#{:02x}{:02x}{:02x}", self.r, self.g, self.b)
    }

    /// WCAG relative luminance.
    pub fn luminance(self) -> f64 {
        let lin = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(self.r) + 0.7152 * lin(self.g) + 0.0722 * lin(self.b)
    }

    /// WCAG contrast ratio between two opaque colours.
    pub fn contrast(self, other: Rgba) -> f64 {
        let (a, b) = (self.luminance(), other.luminance());
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// Linear interpolation in sRGB.
    pub fn mix(self, other: Rgba, t: f32) -> Rgba {
        let t = t.clamp(0.0, 1.0);
        let m = |a: u8, b: u8| (f32::from(a) + (f32::from(b) - f32::from(a)) * t).round() as u8;
        Rgba {
            r: m(self.r, other.r),
            g: m(self.g, other.g),
            b: m(self.b, other.b),
            a: self.a + (other.a - self.a) * t,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stroke {
    pub color: Rgba,
    pub width: f32,
    /// On and off lengths of a dash pattern.
    pub dash: Option<[f32; 2]>,
    /// Round joins and caps (data lines) instead of butt ends (axes, ticks).
    pub round: bool,
}

impl Stroke {
    pub fn solid(color: Rgba, width: f32) -> Self {
        Self {
            color,
            width,
            dash: None,
            round: false,
        }
    }

    pub fn round(color: Rgba, width: f32) -> Self {
        Self {
            round: true,
            ..Self::solid(color, width)
        }
    }

    pub fn dashed(self, on: f32, off: f32) -> Self {
        Self {
            dash: Some([on, off]),
            ..self
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HAlign {
    Left,
    Center,
    Right,
}

/// Which part of the text sits on the anchor's y.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VAlign {
    /// Top of the capitals.
    Top,
    /// Middle of the capitals (what looks centred next to a tick).
    Middle,
    /// Bottom of the descenders.
    Bottom,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text {
    pub text: String,
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub bold: bool,
    pub color: Rgba,
    pub h: HAlign,
    pub v: VAlign,
    /// Degrees, clockwise on screen (−90: reads bottom to top).
    pub angle: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Prim {
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Rgba>,
        stroke: Option<Stroke>,
    },
    Polyline {
        points: Vec<(f32, f32)>,
        stroke: Stroke,
    },
    Polygon {
        points: Vec<(f32, f32)>,
        fill: Option<Rgba>,
        stroke: Option<Stroke>,
    },
    Circle {
        cx: f32,
        cy: f32,
        r: f32,
        fill: Option<Rgba>,
        stroke: Option<Stroke>,
    },
    Text(Text),
}

/// One glyph of a laid-out text: which face, which glyph, and the map from font units to
/// logical pixels.
pub(crate) struct PlacedGlyph {
    pub bold: bool,
    pub glyph: u16,
    pub transform: Affine,
}

pub(crate) struct Scene {
    pub width: f32,
    pub height: f32,
    pub background: Rgba,
    pub prims: Vec<Prim>,
    fonts: &'static Fonts,
}

impl Scene {
    pub fn new(width: f32, height: f32, background: Rgba) -> Result<Self, PlotError> {
        Ok(Self {
            width,
            height,
            background,
            prims: Vec::new(),
            fonts: fonts().map_err(PlotError::Font)?,
        })
    }

    pub fn face(&self, bold: bool) -> &'static Face {
        self.fonts.face(bold)
    }

    pub fn text_width(&self, text: &str, size: f32, bold: bool) -> f32 {
        self.face(bold).text_width(text, size)
    }

    /// Height of capitals at a size.
    pub fn cap_height(&self, size: f32) -> f32 {
        let face = self.face(false);
        face.cap_height() * face.scale(size)
    }

    /// Depth of descenders below the baseline at a size (positive).
    pub fn descent(&self, size: f32) -> f32 {
        let face = self.face(false);
        -face.descender() * face.scale(size)
    }

    pub fn push(&mut self, prim: Prim) {
        self.prims.push(prim);
    }

    pub fn text(&mut self, text: Text) {
        if !text.text.is_empty() {
            self.prims.push(Prim::Text(text));
        }
    }

    pub fn rect_fill(&mut self, x: f32, y: f32, w: f32, h: f32, fill: Rgba) {
        self.prims.push(Prim::Rect {
            x,
            y,
            w,
            h,
            fill: Some(fill),
            stroke: None,
        });
    }

    pub fn line(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, stroke: Stroke) {
        self.prims.push(Prim::Polyline {
            points: vec![(x0, y0), (x1, y1)],
            stroke,
        });
    }

    /// The glyphs of a text primitive, placed.
    pub fn place_glyphs(&self, t: &Text) -> Vec<PlacedGlyph> {
        let face = self.face(t.bold);
        let s = face.scale(t.size);
        let (glyphs, advance) = face.layout(&t.text);
        let width = advance * s;
        let dx = match t.h {
            HAlign::Left => 0.0,
            HAlign::Center => -width / 2.0,
            HAlign::Right => -width,
        };
        let dy = match t.v {
            VAlign::Top => face.cap_height() * s,
            VAlign::Middle => face.cap_height() * s / 2.0,
            VAlign::Bottom => face.descender() * s,
        };
        let (sin, cos) = t.angle.to_radians().sin_cos();
        let place = Affine {
            a: cos,
            b: sin,
            c: -sin,
            d: cos,
            e: t.x,
            f: t.y,
        };
        glyphs
            .into_iter()
            .map(|(glyph, pen)| {
                let local = Affine {
                    a: s,
                    b: 0.0,
                    c: 0.0,
                    d: -s,
                    e: dx + pen * s,
                    f: dy,
                };
                PlacedGlyph {
                    bold: t.bold,
                    glyph,
                    transform: place.then_after(&local),
                }
            })
            .collect()
    }
}
