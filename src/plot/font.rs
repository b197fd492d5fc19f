//! The bundled fonts, read with `skrifa`: just enough to lay out one line of text and get its
//! glyph outlines. Both the PNG and the SVG backend draw text from these outlines (rasterised for
//! PNG, as `<path>` for SVG), so a plot's text looks the same in both and never depends on the
//! fonts installed where it is viewed.
//!
//! Sizes are CSS-like: a font of size `s` px has an em of `s` px. The advance of a string is the
//! sum of the glyph advances plus the legacy `kern` table pairs (no shaping: the plots' text is
//! Latin, Greek and symbols).

use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::outline::{DrawSettings, OutlinePen};
use skrifa::raw::TableProvider;
use skrifa::raw::tables::kern::{Subtable0, SubtableKind};
use skrifa::{FontRef, GlyphId, MetadataProvider, OutlineGlyphCollection};
use std::sync::OnceLock;

static REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// The two faces every plot uses.
pub(crate) struct Fonts {
    pub regular: Face,
    pub bold: Face,
}

static FONTS: OnceLock<Result<Fonts, String>> = OnceLock::new();

/// The bundled fonts, parsed once per process.
pub(crate) fn fonts() -> Result<&'static Fonts, String> {
    FONTS
        .get_or_init(|| {
            let regular = Face::parse(REGULAR_TTF).ok_or("the bundled regular font is invalid")?;
            let bold = Face::parse(BOLD_TTF).ok_or("the bundled bold font is invalid")?;
            Ok(Fonts { regular, bold })
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Fonts {
    pub fn face(&self, bold: bool) -> &Face {
        if bold { &self.bold } else { &self.regular }
    }
}

/// Receives a glyph outline, in the coordinates the caller's transform produces.
pub(crate) trait OutlineSink {
    fn move_to(&mut self, x: f32, y: f32);
    fn line_to(&mut self, x: f32, y: f32);
    fn quad_to(&mut self, cx: f32, cy: f32, x: f32, y: f32);
    fn close(&mut self);
}

/// An affine map `x' = a·x + c·y + e`, `y' = b·x + d·y + f`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Affine {
    pub a: f32,
    pub b: f32,
    pub c: f32,
    pub d: f32,
    pub e: f32,
    pub f: f32,
}

impl Affine {
    #[cfg(test)]
    pub const IDENTITY: Affine = Affine {
        a: 1.0,
        b: 0.0,
        c: 0.0,
        d: 1.0,
        e: 0.0,
        f: 0.0,
    };

    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (
            self.a * x + self.c * y + self.e,
            self.b * x + self.d * y + self.f,
        )
    }

    /// `self ∘ inner`: first `inner`, then `self`.
    pub fn then_after(&self, inner: &Affine) -> Affine {
        Affine {
            a: self.a * inner.a + self.c * inner.b,
            b: self.b * inner.a + self.d * inner.b,
            c: self.a * inner.c + self.c * inner.d,
            d: self.b * inner.c + self.d * inner.d,
            e: self.a * inner.e + self.c * inner.f + self.e,
            f: self.b * inner.e + self.d * inner.f + self.f,
        }
    }
}

/// One parsed face of the bundled fonts.
pub(crate) struct Face {
    units_per_em: f32,
    descender: f32,
    cap_height: f32,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    outlines: OutlineGlyphCollection<'static>,
    /// The first horizontal format-0 subtable of the legacy `kern` table.
    kern: Option<Subtable0<'static>>,
}

impl Face {
    pub fn parse(data: &'static [u8]) -> Option<Face> {
        let font = FontRef::new(data).ok()?;
        let font_metrics = font.metrics(Size::unscaled(), LocationRef::default());
        let units_per_em = f32::from(font_metrics.units_per_em);
        if units_per_em <= 0.0 || font_metrics.ascent - font_metrics.descent <= 0.0 {
            return None;
        }
        let metrics = font.glyph_metrics(Size::unscaled(), LocationRef::default());
        let charmap = font.charmap();
        // The top of 'H' (its glyph bounds), as the fonts' OS/2 tables may lack a cap height.
        let cap_height = charmap
            .map('H')
            .and_then(|h| metrics.bounds(h))
            .map_or(0.7 * (font_metrics.ascent - font_metrics.descent), |b| {
                b.y_max
            });
        let kern = font.kern().ok().and_then(|kern| {
            kern.subtables().flatten().find_map(|sub| {
                if !sub.is_horizontal() || sub.is_cross_stream() || sub.is_variable() {
                    return None;
                }
                match sub.kind().ok()? {
                    SubtableKind::Format0(pairs) => Some(pairs),
                    _ => None,
                }
            })
        });
        Some(Face {
            units_per_em,
            descender: font_metrics.descent,
            cap_height,
            charmap,
            metrics,
            outlines: font.outline_glyphs(),
            kern,
        })
    }

    /// Pixels per font unit at a font size (px per em).
    pub fn scale(&self, size: f32) -> f32 {
        size / self.units_per_em
    }

    /// Height of a capital letter, in font units.
    pub fn cap_height(&self) -> f32 {
        self.cap_height
    }

    /// Lowest point below the baseline (negative), in font units.
    pub fn descender(&self) -> f32 {
        self.descender
    }

    pub fn glyph_index(&self, c: char) -> u16 {
        self.charmap
            .map(c)
            .filter(|g| g.to_u32() < self.metrics.glyph_count())
            .and_then(|g| u16::try_from(g.to_u32()).ok())
            .unwrap_or(0)
    }

    /// Advance width in font units.
    pub fn advance(&self, glyph: u16) -> f32 {
        self.metrics
            .advance_width(GlyphId::from(glyph))
            .unwrap_or(0.0)
    }

    /// Kerning between two glyphs in font units (0 when the font has no pair).
    pub fn kern(&self, left: u16, right: u16) -> f32 {
        self.kern
            .as_ref()
            .and_then(|k| k.kerning(GlyphId::from(left), GlyphId::from(right)))
            .map_or(0.0, |v| v as f32)
    }

    /// The glyphs of a line of text with their pen positions, and the total advance, in font
    /// units.
    pub fn layout(&self, text: &str) -> (Vec<(u16, f32)>, f32) {
        let mut pen = 0.0f32;
        let mut prev: Option<u16> = None;
        let mut glyphs = Vec::with_capacity(text.len());
        for c in text.chars() {
            let glyph = self.glyph_index(c);
            if let Some(p) = prev {
                pen += self.kern(p, glyph);
            }
            glyphs.push((glyph, pen));
            pen += self.advance(glyph);
            prev = Some(glyph);
        }
        (glyphs, pen)
    }

    /// Width of a line of text in pixels at a font size.
    pub fn text_width(&self, text: &str, size: f32) -> f32 {
        self.layout(text).1 * self.scale(size)
    }

    /// Sends the outline of a glyph through `transform` (font units, y up) to `sink`. A glyph
    /// that is missing or cannot be read draws nothing.
    pub fn outline(&self, glyph: u16, transform: &Affine, sink: &mut impl OutlineSink) {
        let Some(outline) = self.outlines.get(GlyphId::from(glyph)) else {
            return;
        };
        let settings = DrawSettings::unhinted(Size::unscaled(), LocationRef::default());
        let mut pen = Pen {
            transform,
            sink,
            last: (0.0, 0.0),
        };
        // A broken glyph leaves a partial outline; text drawing is best effort.
        let _ = outline.draw(settings, &mut pen);
    }
}

/// Adapts an [`OutlineSink`] to skrifa's pen, mapping every point through a transform.
struct Pen<'a, S> {
    transform: &'a Affine,
    sink: &'a mut S,
    /// The current point, in font units.
    last: (f32, f32),
}

impl<S: OutlineSink> OutlinePen for Pen<'_, S> {
    fn move_to(&mut self, x: f32, y: f32) {
        self.last = (x, y);
        let (x, y) = self.transform.apply(x, y);
        self.sink.move_to(x, y);
    }

    fn line_to(&mut self, x: f32, y: f32) {
        self.last = (x, y);
        let (x, y) = self.transform.apply(x, y);
        self.sink.line_to(x, y);
    }

    fn quad_to(&mut self, cx: f32, cy: f32, x: f32, y: f32) {
        self.last = (x, y);
        let (cx, cy) = self.transform.apply(cx, cy);
        let (x, y) = self.transform.apply(x, y);
        self.sink.quad_to(cx, cy, x, y);
    }

    /// The bundled fonts are TrueType (quadratic only); a cubic is approximated by one quadratic.
    fn curve_to(&mut self, cx0: f32, cy0: f32, cx1: f32, cy1: f32, x: f32, y: f32) {
        let (qx, qy) = (
            (3.0 * (cx0 + cx1) - self.last.0 - x) / 4.0,
            (3.0 * (cy0 + cy1) - self.last.1 - y) / 4.0,
        );
        self.quad_to(qx, qy, x, y);
    }

    fn close(&mut self) {
        self.sink.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Count {
        moves: usize,
        segments: usize,
        closes: usize,
        min_y: f32,
        max_y: f32,
    }

    impl OutlineSink for Count {
        fn move_to(&mut self, _x: f32, y: f32) {
            self.moves += 1;
            self.min_y = self.min_y.min(y);
            self.max_y = self.max_y.max(y);
        }
        fn line_to(&mut self, _x: f32, y: f32) {
            self.segments += 1;
            self.min_y = self.min_y.min(y);
            self.max_y = self.max_y.max(y);
        }
        fn quad_to(&mut self, _cx: f32, _cy: f32, _x: f32, y: f32) {
            self.segments += 1;
            self.min_y = self.min_y.min(y);
            self.max_y = self.max_y.max(y);
        }
        fn close(&mut self) {
            self.closes += 1;
        }
    }

    #[test]
    fn parses_the_bundled_fonts() {
        let fonts = fonts().unwrap();
        for face in [&fonts.regular, &fonts.bold] {
            let h = face.glyph_index('H');
            assert_ne!(h, 0);
            assert!(face.advance(h) > 1000.0);
            assert!(face.cap_height() > 1300.0 && face.cap_height() < 1600.0);
            // 'o' has two contours (outside and hole), 'i' two (stem and dot).
            for (c, contours) in [('o', 2), ('i', 2), ('H', 1), ('ρ', 2)] {
                let mut count = Count::default();
                face.outline(face.glyph_index(c), &Affine::IDENTITY, &mut count);
                assert_eq!(count.moves, contours, "{c}");
                assert_eq!(count.closes, contours, "{c}");
                assert!(count.segments > 3, "{c}");
            }
            // 'å' is a composite (a + ring above): two components, taller than 'a'.
            let mut ring = Count::default();
            face.outline(face.glyph_index('å'), &Affine::IDENTITY, &mut ring);
            let mut plain = Count::default();
            face.outline(face.glyph_index('a'), &Affine::IDENTITY, &mut plain);
            assert!(ring.moves > plain.moves);
            assert!(ring.max_y > plain.max_y + 200.0);
        }
    }

    #[test]
    fn kerning_and_unknown_characters() {
        let face = &fonts().unwrap().regular;
        let a = face.glyph_index('A');
        let v = face.glyph_index('V');
        assert!(face.kern(a, v) < 0.0, "DejaVu kerns A-V");
        assert_eq!(face.kern(face.glyph_index('x'), face.glyph_index('x')), 0.0);
        assert_eq!(face.glyph_index('\u{10FFFF}'), 0);
        let (_, av) = face.layout("AV");
        assert!(av < face.advance(a) + face.advance(v));
    }
}
