//! Colours: themes, sequential colour maps for the heatmaps, and series styles for the lines.

use super::scene::Rgba;
use super::{Palette, Theme};

/// The fixed colours of a theme.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Colors {
    pub background: Rgba,
    pub text: Rgba,
    /// Secondary text (subtitles, notes).
    pub muted: Rgba,
    pub axis: Rgba,
    pub grid: Rgba,
    pub chance: Rgba,
    /// Background of legends and annotation boxes.
    pub panel: Rgba,
    pub panel_border: Rgba,
    /// Cells without a value.
    pub missing: Rgba,
}

pub(crate) fn colors(theme: Theme) -> Colors {
    match theme {
        Theme::Light => Colors {
            background: Rgba::hex(0xFFFFFF),
            text: Rgba::hex(0x1A1A1A),
            muted: Rgba::hex(0x555555),
            axis: Rgba::hex(0x333333),
            grid: Rgba::hex(0xE3E3E3),
            chance: Rgba::hex(0x808080),
            panel: Rgba::hex(0xFFFFFF).alpha(0.92),
            panel_border: Rgba::hex(0xBBBBBB),
            missing: Rgba::hex(0xD0D0D0),
        },
        Theme::Dark => Colors {
            background: Rgba::hex(0x1C1E22),
            text: Rgba::hex(0xEDEDED),
            muted: Rgba::hex(0xB0B0B0),
            axis: Rgba::hex(0xC8C8C8),
            grid: Rgba::hex(0x3A3E45),
            chance: Rgba::hex(0x9A9A9A),
            panel: Rgba::hex(0x1C1E22).alpha(0.92),
            panel_border: Rgba::hex(0x5A5E66),
            missing: Rgba::hex(0x4A4A4A),
        },
    }
}

// Stops sampled evenly from the published maps (viridis and cividis: CC0 / matplotlib,
// Blues and Greys: ColorBrewer, Apache-2.0).
const VIRIDIS: [u32; 9] = [
    0x440154, 0x472D7B, 0x3B528B, 0x2C728E, 0x21908C, 0x27AD81, 0x5DC863, 0xAADC32, 0xFDE725,
];
const CIVIDIS: [u32; 10] = [
    0x00204D, 0x00336F, 0x39486B, 0x575C6D, 0x707173, 0x8A8779, 0xA69D75, 0xC4B56C, 0xE4CF5B,
    0xFFEA46,
];
const BLUES: [u32; 9] = [
    0xF7FBFF, 0xDEEBF7, 0xC6DBEF, 0x9ECAE1, 0x6BAED6, 0x4292C6, 0x2171B5, 0x08519C, 0x08306B,
];
const GREYS: [u32; 9] = [
    0xFFFFFF, 0xF0F0F0, 0xD9D9D9, 0xBDBDBD, 0x969696, 0x737373, 0x525252, 0x252525, 0x000000,
];

fn interpolate(stops: &[u32], t: f64) -> Rgba {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let last = stops.len().saturating_sub(1);
    let pos = t * last as f64;
    let i = (pos.floor() as usize).min(last.saturating_sub(1));
    let (a, b) = (
        stops.get(i).copied().unwrap_or(0),
        stops.get(i + 1).copied().unwrap_or(0),
    );
    Rgba::hex(a).mix(Rgba::hex(b), (pos - i as f64) as f32)
}

/// The colour of a score in [0, 1] on a heatmap.
pub(crate) fn sequential(palette: Palette, t: f64) -> Rgba {
    match palette {
        // The line palettes draw their heatmaps in viridis.
        Palette::Viridis | Palette::TolMuted | Palette::TolBright | Palette::Projector => {
            interpolate(&VIRIDIS, t)
        }
        Palette::Cividis => interpolate(&CIVIDIS, t),
        // Single-hue light→dark blue: ordered by lightness, readable with any colour vision.
        Palette::ColorBlindSafe => interpolate(&BLUES, t),
        // Greyscale, white→black: the largest lightness range, and prints well.
        Palette::HighContrast => interpolate(&GREYS, t),
    }
}

/// The sRGB colour of `t` in 0..=1 on `palette`'s colour map (the explorer's too).
pub fn map_color(palette: Palette, t: f64) -> [u8; 3] {
    let c = sequential(palette, t);
    [c.r, c.g, c.b]
}

/// Black or white, whichever reads better on `fill`.
pub(crate) fn text_on(fill: Rgba) -> Rgba {
    let (dark, light) = (Rgba::hex(0x111111), Rgba::hex(0xFFFFFF));
    if fill.contrast(dark) >= fill.contrast(light) {
        dark
    } else {
        light
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Square,
    TriangleUp,
    Diamond,
    TriangleDown,
}

const MARKERS: [Marker; 5] = [
    Marker::Circle,
    Marker::Square,
    Marker::TriangleUp,
    Marker::Diamond,
    Marker::TriangleDown,
];

/// How one line of the layers view is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SeriesStyle {
    pub color: Rgba,
    pub marker: Marker,
    pub dash: Option<[f32; 2]>,
}

// Okabe & Ito's seven hues, then two of Paul Tol's (rose, teal) so that the nine languages
// besides the pivot of the default run all differ, then white (black on light backgrounds).
// The yellow is darkened on light backgrounds to stay legible.
const OKABE_ITO_DARK: [[u8; 3]; 10] = [
    [230, 159, 0],
    [86, 180, 233],
    [0, 158, 115],
    [240, 228, 66],
    [0, 114, 178],
    [213, 94, 0],
    [204, 121, 167],
    [204, 102, 119],
    [68, 170, 153],
    [230, 230, 230],
];
const OKABE_ITO_LIGHT: [[u8; 3]; 10] = [
    [230, 159, 0],
    [86, 180, 233],
    [0, 158, 115],
    [181, 165, 0],
    [0, 114, 178],
    [213, 94, 0],
    [204, 121, 167],
    [170, 68, 102],
    [68, 170, 153],
    [0, 0, 0],
];
// Paul Tol's muted and bright schemes.
const TOL_MUTED: [[u8; 3]; 9] = [
    [204, 102, 119],
    [51, 34, 136],
    [221, 204, 119],
    [17, 119, 51],
    [136, 204, 238],
    [136, 34, 85],
    [68, 170, 153],
    [153, 153, 51],
    [170, 68, 153],
];
const TOL_BRIGHT: [[u8; 3]; 7] = [
    [68, 119, 170],
    [238, 102, 119],
    [34, 136, 51],
    [204, 187, 68],
    [102, 204, 238],
    [170, 51, 119],
    [187, 187, 187],
];
// Saturated colours that survive a projector, dark-edged ones on light backgrounds.
const PROJECTOR_DARK: [[u8; 3]; 8] = [
    [255, 176, 0],
    [100, 200, 255],
    [0, 230, 150],
    [255, 100, 200],
    [255, 255, 255],
    [255, 80, 60],
    [180, 140, 255],
    [200, 230, 60],
];
const PROJECTOR_LIGHT: [[u8; 3]; 8] = [
    [0, 68, 136],
    [187, 85, 102],
    [0, 120, 40],
    [221, 120, 0],
    [0, 0, 0],
    [140, 0, 140],
    [0, 150, 170],
    [120, 80, 0],
];

/// Categorical line colours. One table serves the window and the exported plots, so that a
/// language has the same colour on screen and on paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineScheme {
    /// Okabe & Ito (2008): safe for every common colour-vision deficiency.
    OkabeIto,
    TolMuted,
    TolBright,
    /// Saturated colours for projectors (the window's presentation mode).
    Projector,
}

/// The sRGB colours of `scheme`, for a dark or a light background.
pub fn line_colors(scheme: LineScheme, dark: bool) -> &'static [[u8; 3]] {
    match (scheme, dark) {
        (LineScheme::OkabeIto, true) => &OKABE_ITO_DARK,
        (LineScheme::OkabeIto, false) => &OKABE_ITO_LIGHT,
        (LineScheme::TolMuted, _) => &TOL_MUTED,
        (LineScheme::TolBright, _) => &TOL_BRIGHT,
        (LineScheme::Projector, true) => &PROJECTOR_DARK,
        (LineScheme::Projector, false) => &PROJECTOR_LIGHT,
    }
}
// Paul Tol's high-contrast scheme, and lighter versions of the same hues for dark backgrounds.
const TOL_HIGH_CONTRAST: [u32; 3] = [0x004488, 0xBB5566, 0xDDAA33];
const TOL_HIGH_CONTRAST_DARK: [u32; 3] = [0x77AADD, 0xEE8866, 0xEEDD88];
const DASHES: [Option<[f32; 2]>; 4] = [None, Some([9.0, 5.0]), Some([2.5, 4.0]), Some([12.0, 4.0])];

/// Style of series `i` of `n`.
pub(crate) fn series(palette: Palette, theme: Theme, i: usize, n: usize) -> SeriesStyle {
    let marker = MARKERS[i % MARKERS.len()];
    let fg = colors(theme).text;
    match palette {
        Palette::Viridis | Palette::Cividis => {
            // Avoid the end of the map that vanishes into the background.
            let (lo, hi) = match theme {
                Theme::Light => (0.0, 0.85),
                Theme::Dark => (0.2, 1.0),
            };
            let t = if n <= 1 {
                (lo + hi) / 2.0
            } else {
                lo + (hi - lo) * i as f64 / (n - 1) as f64
            };
            SeriesStyle {
                color: sequential(palette, t),
                marker,
                dash: None,
            }
        }
        Palette::ColorBlindSafe | Palette::TolMuted | Palette::TolBright | Palette::Projector => {
            let scheme = match palette {
                Palette::TolMuted => LineScheme::TolMuted,
                Palette::TolBright => LineScheme::TolBright,
                Palette::Projector => LineScheme::Projector,
                _ => LineScheme::OkabeIto,
            };
            let table = line_colors(scheme, theme == Theme::Dark);
            let k = table.len();
            let [r, g, b] = table[i % k];
            SeriesStyle {
                color: Rgba { r, g, b, a: 1.0 },
                marker,
                dash: DASHES[(i / k) % DASHES.len()],
            }
        }
        Palette::HighContrast => {
            let table = match theme {
                Theme::Light => &TOL_HIGH_CONTRAST,
                Theme::Dark => &TOL_HIGH_CONTRAST_DARK,
            };
            let k = table.len() + 1;
            let slot = i % k;
            let color = if slot == 0 {
                fg
            } else {
                table.get(slot - 1).map_or(fg, |&c| Rgba::hex(c))
            };
            SeriesStyle {
                color,
                marker,
                dash: DASHES[(i / k) % DASHES.len()],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_span_their_stops() {
        assert_eq!(sequential(Palette::Viridis, 0.0), Rgba::hex(0x440154));
        assert_eq!(sequential(Palette::Viridis, 1.0), Rgba::hex(0xFDE725));
        assert_eq!(sequential(Palette::Cividis, 2.0), Rgba::hex(0xFFEA46));
        assert_eq!(
            sequential(Palette::HighContrast, f64::NAN),
            Rgba::hex(0xFFFFFF)
        );
        // Lightness grows monotonically along viridis and cividis.
        for p in [Palette::Viridis, Palette::Cividis] {
            let l: Vec<f64> = (0..=20)
                .map(|i| sequential(p, i as f64 / 20.0).luminance())
                .collect();
            assert!(l.windows(2).all(|w| w[1] > w[0]), "{p:?}");
        }
    }

    #[test]
    fn annotation_text_contrasts() {
        assert_eq!(text_on(Rgba::hex(0xFDE725)), Rgba::hex(0x111111));
        assert_eq!(text_on(Rgba::hex(0x440154)), Rgba::hex(0xFFFFFF));
        for i in 0..=10 {
            let fill = sequential(Palette::Viridis, i as f64 / 10.0);
            assert!(text_on(fill).contrast(fill) >= 4.0);
        }
    }

    #[test]
    fn series_are_distinct() {
        for palette in [
            Palette::Viridis,
            Palette::Cividis,
            Palette::ColorBlindSafe,
            Palette::HighContrast,
        ] {
            let styles: Vec<_> = (0..12)
                .map(|i| series(palette, Theme::Light, i, 12))
                .collect();
            for i in 0..12 {
                for j in i + 1..12 {
                    assert_ne!(styles[i], styles[j], "{palette:?} {i} {j}");
                }
            }
        }
    }
}
