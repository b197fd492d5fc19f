//! A small TrueType reader: just enough of `cmap`, `hmtx`, `kern`, `loca` and `glyf` to lay out
//! one line of text and get its glyph outlines. Both the PNG and the SVG backend draw text from
//! these outlines (rasterised for PNG, as `<path>` for SVG), so a plot's text looks the same in
//! both and never depends on the fonts installed where it is viewed.
//!
//! Sizes are CSS-like: a font of size `s` px has an em of `s` px. The advance of a string is the
//! sum of the glyph advances plus the `kern` table pairs (no shaping: the plots' text is Latin,
//! Greek and symbols).

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

#[derive(Debug, Clone, Copy)]
enum Cmap {
    /// Segment mapping to delta values (BMP).
    Format4(usize),
    /// Segmented coverage (full Unicode).
    Format12(usize),
}

/// One parsed TrueType face (glyf outlines only).
pub(crate) struct Face {
    data: &'static [u8],
    units_per_em: f32,
    descender: f32,
    cap_height: f32,
    num_glyphs: u16,
    num_h_metrics: u16,
    long_loca: bool,
    hmtx: usize,
    loca: usize,
    glyf: usize,
    glyf_len: usize,
    cmap: Cmap,
    /// Offset and pair count of a horizontal format-0 `kern` subtable.
    kern: Option<(usize, usize)>,
}

fn u8_at(d: &[u8], off: usize) -> Option<u8> {
    d.get(off).copied()
}

fn u16_at(d: &[u8], off: usize) -> Option<u16> {
    let b = d.get(off..off.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn i16_at(d: &[u8], off: usize) -> Option<i16> {
    u16_at(d, off).map(|v| v as i16)
}

fn u32_at(d: &[u8], off: usize) -> Option<u32> {
    let b = d.get(off..off.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn f2dot14_at(d: &[u8], off: usize) -> Option<f32> {
    i16_at(d, off).map(|v| f32::from(v) / 16384.0)
}

/// Offset and length of a table.
fn table(d: &[u8], tag: &[u8; 4]) -> Option<(usize, usize)> {
    let count = usize::from(u16_at(d, 4)?);
    (0..count).find_map(|i| {
        let rec = 12 + 16 * i;
        (d.get(rec..rec + 4)? == tag).then_some(())?;
        let off = u32_at(d, rec + 8)? as usize;
        let len = u32_at(d, rec + 12)? as usize;
        (off.checked_add(len)? <= d.len()).then_some((off, len))
    })
}

const MAX_COMPONENT_DEPTH: u32 = 8;

impl Face {
    pub fn parse(data: &'static [u8]) -> Option<Face> {
        let (head, _) = table(data, b"head")?;
        let (hhea, _) = table(data, b"hhea")?;
        let (maxp, _) = table(data, b"maxp")?;
        let (hmtx, _) = table(data, b"hmtx")?;
        let (loca, _) = table(data, b"loca")?;
        let (glyf, glyf_len) = table(data, b"glyf")?;
        let (cmap_off, _) = table(data, b"cmap")?;

        let units_per_em = f32::from(u16_at(data, head + 18)?);
        let long_loca = i16_at(data, head + 50)? != 0;
        let ascender = f32::from(i16_at(data, hhea + 4)?);
        let descender = f32::from(i16_at(data, hhea + 6)?);
        let num_h_metrics = u16_at(data, hhea + 34)?;
        let num_glyphs = u16_at(data, maxp + 4)?;
        if units_per_em <= 0.0 || ascender - descender <= 0.0 || num_h_metrics == 0 {
            return None;
        }

        // cmap: prefer a full-Unicode format 12 subtable, else a BMP format 4 one.
        let mut format4 = None;
        let mut format12 = None;
        for i in 0..usize::from(u16_at(data, cmap_off + 2)?) {
            let rec = cmap_off + 4 + 8 * i;
            let platform = u16_at(data, rec)?;
            let encoding = u16_at(data, rec + 2)?;
            let sub = cmap_off + u32_at(data, rec + 4)? as usize;
            let unicode = platform == 0 || (platform == 3 && (encoding == 1 || encoding == 10));
            if !unicode {
                continue;
            }
            match u16_at(data, sub)? {
                4 => format4 = format4.or(Some(sub)),
                12 => format12 = format12.or(Some(sub)),
                _ => {}
            }
        }
        let cmap = match (format12, format4) {
            (Some(off), _) => Cmap::Format12(off),
            (None, Some(off)) => Cmap::Format4(off),
            (None, None) => return None,
        };

        let kern = table(data, b"kern").and_then(|(off, _)| {
            // Version 0 (OpenType) kern table: the first horizontal format-0 subtable.
            if u16_at(data, off)? != 0 {
                return None;
            }
            let mut sub = off + 4;
            for _ in 0..u16_at(data, off + 2)? {
                let length = usize::from(u16_at(data, sub + 2)?);
                let coverage = u16_at(data, sub + 4)?;
                let horizontal = coverage & 0x1 != 0 && coverage & 0x6 == 0;
                if horizontal && coverage >> 8 == 0 {
                    return Some((sub + 14, usize::from(u16_at(data, sub + 6)?)));
                }
                sub += length.max(6);
            }
            None
        });

        let mut face = Face {
            data,
            units_per_em,
            descender,
            cap_height: 0.0,
            num_glyphs,
            num_h_metrics,
            long_loca,
            hmtx,
            loca,
            glyf,
            glyf_len,
            cmap,
            kern,
        };
        let h = face.glyph_index('H');
        face.cap_height = face
            .glyph_range(h)
            .and_then(|r| i16_at(data, r.start + 8))
            .map_or(0.7 * (ascender - descender), f32::from);
        Some(face)
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
        let code = u32::from(c);
        let found = match self.cmap {
            Cmap::Format4(off) => self.cmap4(off, code),
            Cmap::Format12(off) => self.cmap12(off, code),
        };
        found.filter(|&g| g < self.num_glyphs).unwrap_or(0)
    }

    fn cmap4(&self, off: usize, code: u32) -> Option<u16> {
        let d = self.data;
        let code = u16::try_from(code).ok()?;
        let seg_x2 = usize::from(u16_at(d, off + 6)?);
        let ends = off + 14;
        let starts = ends + seg_x2 + 2;
        let deltas = starts + seg_x2;
        let range_offsets = deltas + seg_x2;
        // Binary search for the first segment whose end is >= code.
        let (mut lo, mut hi) = (0usize, seg_x2 / 2);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if u16_at(d, ends + 2 * mid)? < code {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let seg = lo;
        if seg >= seg_x2 / 2 {
            return None;
        }
        let start = u16_at(d, starts + 2 * seg)?;
        if start > code {
            return None;
        }
        let delta = u16_at(d, deltas + 2 * seg)?;
        let range_offset = u16_at(d, range_offsets + 2 * seg)?;
        if range_offset == 0 {
            return Some(code.wrapping_add(delta));
        }
        let addr =
            range_offsets + 2 * seg + usize::from(range_offset) + 2 * usize::from(code - start);
        let glyph = u16_at(d, addr)?;
        (glyph != 0).then(|| glyph.wrapping_add(delta))
    }

    fn cmap12(&self, off: usize, code: u32) -> Option<u16> {
        let d = self.data;
        let groups = u32_at(d, off + 12)? as usize;
        let (mut lo, mut hi) = (0usize, groups);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let rec = off + 16 + 12 * mid;
            let start = u32_at(d, rec)?;
            let end = u32_at(d, rec + 4)?;
            if code < start {
                hi = mid;
            } else if code > end {
                lo = mid + 1;
            } else {
                let glyph = u32_at(d, rec + 8)? + (code - start);
                return u16::try_from(glyph).ok();
            }
        }
        None
    }

    /// Advance width in font units.
    pub fn advance(&self, glyph: u16) -> f32 {
        let index = usize::from(glyph.min(self.num_h_metrics - 1));
        u16_at(self.data, self.hmtx + 4 * index).map_or(0.0, f32::from)
    }

    /// Kerning between two glyphs in font units (0 when the font has no pair).
    pub fn kern(&self, left: u16, right: u16) -> f32 {
        let Some((pairs, count)) = self.kern else {
            return 0.0;
        };
        let key = (u32::from(left) << 16) | u32::from(right);
        let (mut lo, mut hi) = (0usize, count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let rec = pairs + 6 * mid;
            let Some(found) = u32_at(self.data, rec) else {
                return 0.0;
            };
            match found.cmp(&key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return i16_at(self.data, rec + 4).map_or(0.0, f32::from);
                }
            }
        }
        0.0
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

    fn glyph_range(&self, glyph: u16) -> Option<std::ops::Range<usize>> {
        let g = usize::from(glyph);
        let (start, end) = if self.long_loca {
            (
                u32_at(self.data, self.loca + 4 * g)? as usize,
                u32_at(self.data, self.loca + 4 * g + 4)? as usize,
            )
        } else {
            (
                2 * usize::from(u16_at(self.data, self.loca + 2 * g)?),
                2 * usize::from(u16_at(self.data, self.loca + 2 * g + 2)?),
            )
        };
        (start < end && end <= self.glyf_len).then(|| self.glyf + start..self.glyf + end)
    }

    /// Sends the outline of a glyph through `transform` (font units, y up) to `sink`.
    pub fn outline(&self, glyph: u16, transform: &Affine, sink: &mut impl OutlineSink) {
        self.outline_depth(glyph, transform, sink, 0);
    }

    fn outline_depth(
        &self,
        glyph: u16,
        transform: &Affine,
        sink: &mut impl OutlineSink,
        depth: u32,
    ) -> Option<()> {
        let range = self.glyph_range(glyph)?;
        let d = self.data.get(range)?;
        let contours = i16_at(d, 0)?;
        if contours >= 0 {
            self.simple_outline(d, contours as usize, transform, sink)
        } else if depth < MAX_COMPONENT_DEPTH {
            self.composite_outline(d, transform, sink, depth)
        } else {
            None
        }
    }

    fn simple_outline(
        &self,
        d: &[u8],
        contours: usize,
        transform: &Affine,
        sink: &mut impl OutlineSink,
    ) -> Option<()> {
        if contours == 0 {
            return Some(());
        }
        let mut ends = Vec::with_capacity(contours);
        for i in 0..contours {
            ends.push(usize::from(u16_at(d, 10 + 2 * i)?));
        }
        let points = ends.last()? + 1;
        let instructions = usize::from(u16_at(d, 10 + 2 * contours)?);
        let mut off = 12 + 2 * contours + instructions;

        let mut flags = Vec::with_capacity(points);
        while flags.len() < points {
            let flag = u8_at(d, off)?;
            off += 1;
            flags.push(flag);
            if flag & 0x08 != 0 {
                let repeat = u8_at(d, off)?;
                off += 1;
                for _ in 0..repeat {
                    flags.push(flag);
                }
            }
        }
        flags.truncate(points);

        let mut read_coords = |short: u8, same_or_positive: u8| -> Option<Vec<f32>> {
            let mut value = 0i32;
            let mut out = Vec::with_capacity(points);
            for &flag in &flags {
                if flag & short != 0 {
                    let delta = i32::from(u8_at(d, off)?);
                    off += 1;
                    value += if flag & same_or_positive != 0 {
                        delta
                    } else {
                        -delta
                    };
                } else if flag & same_or_positive == 0 {
                    value += i32::from(i16_at(d, off)?);
                    off += 2;
                }
                out.push(value as f32);
            }
            Some(out)
        };
        let xs = read_coords(0x02, 0x10)?;
        let ys = read_coords(0x04, 0x20)?;

        let mut start = 0;
        for &end in &ends {
            if end < start || end >= points {
                return None;
            }
            let contour: Vec<(f32, f32, bool)> = (start..=end)
                .map(|i| {
                    let (x, y) = transform.apply(xs[i], ys[i]);
                    (x, y, flags[i] & 0x01 != 0)
                })
                .collect();
            emit_contour(&contour, sink);
            start = end + 1;
        }
        Some(())
    }

    fn composite_outline(
        &self,
        d: &[u8],
        transform: &Affine,
        sink: &mut impl OutlineSink,
        depth: u32,
    ) -> Option<()> {
        const ARGS_ARE_WORDS: u16 = 0x0001;
        const ARGS_ARE_XY: u16 = 0x0002;
        const HAVE_SCALE: u16 = 0x0008;
        const MORE_COMPONENTS: u16 = 0x0020;
        const HAVE_XY_SCALE: u16 = 0x0040;
        const HAVE_2X2: u16 = 0x0080;

        let mut off = 10;
        loop {
            let flags = u16_at(d, off)?;
            let glyph = u16_at(d, off + 2)?;
            off += 4;
            let (dx, dy) = if flags & ARGS_ARE_WORDS != 0 {
                let v = (f32::from(i16_at(d, off)?), f32::from(i16_at(d, off + 2)?));
                off += 4;
                v
            } else {
                let v = (
                    f32::from(u8_at(d, off)? as i8),
                    f32::from(u8_at(d, off + 1)? as i8),
                );
                off += 2;
                v
            };
            // Point-matched placement is rare in text fonts: such a component is placed at 0.
            let (dx, dy) = if flags & ARGS_ARE_XY != 0 {
                (dx, dy)
            } else {
                (0.0, 0.0)
            };
            let (mut a, mut b, mut c, mut dd) = (1.0, 0.0, 0.0, 1.0);
            if flags & HAVE_SCALE != 0 {
                a = f2dot14_at(d, off)?;
                dd = a;
                off += 2;
            } else if flags & HAVE_XY_SCALE != 0 {
                a = f2dot14_at(d, off)?;
                dd = f2dot14_at(d, off + 2)?;
                off += 4;
            } else if flags & HAVE_2X2 != 0 {
                a = f2dot14_at(d, off)?;
                b = f2dot14_at(d, off + 2)?;
                c = f2dot14_at(d, off + 4)?;
                dd = f2dot14_at(d, off + 6)?;
                off += 8;
            }
            let component = Affine {
                a,
                b,
                c,
                d: dd,
                e: dx,
                f: dy,
            };
            self.outline_depth(glyph, &transform.then_after(&component), sink, depth + 1);
            if flags & MORE_COMPONENTS == 0 {
                return Some(());
            }
        }
    }
}

/// Turns one TrueType contour (on- and off-curve points) into moves, lines and quadratics.
fn emit_contour(points: &[(f32, f32, bool)], sink: &mut impl OutlineSink) {
    let n = points.len();
    if n == 0 {
        return;
    }
    let mid = |p: (f32, f32, bool), q: (f32, f32, bool)| ((p.0 + q.0) / 2.0, (p.1 + q.1) / 2.0);
    let (start, begin) = match points.iter().position(|p| p.2) {
        Some(i) => ((points[i].0, points[i].1), i + 1),
        None => (mid(points[n - 1], points[0]), 0),
    };
    sink.move_to(start.0, start.1);
    let mut control: Option<(f32, f32)> = None;
    for k in 0..n {
        let p = points[(begin + k) % n];
        if p.2 {
            match control.take() {
                Some(c) => sink.quad_to(c.0, c.1, p.0, p.1),
                None => sink.line_to(p.0, p.1),
            }
        } else {
            if let Some(c) = control {
                sink.quad_to(c.0, c.1, (c.0 + p.0) / 2.0, (c.1 + p.1) / 2.0);
            }
            control = Some((p.0, p.1));
        }
    }
    if let Some(c) = control {
        sink.quad_to(c.0, c.1, start.0, start.1);
    }
    sink.close();
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
