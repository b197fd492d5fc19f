//! Looks: light/dark, presentation mode, colour-blind-safe palettes, the sequential colour map
//! of heatmaps, and the system fonts that cover CJK, Arabic and Devanagari text.

use std::path::{Path, PathBuf};

use egui::epaint::text::{FontData, FontInsert, FontPriority, InsertFontFamily};
use egui::{Color32, FontFamily, TextStyle};
use serde::{Deserialize, Serialize};

use crate::plot::LineScheme;

/// Categorical colours for languages, runs and methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PaletteChoice {
    /// Okabe & Ito (2008): safe for every common colour-vision deficiency.
    #[default]
    OkabeIto,
    /// Paul Tol's "muted" scheme: nine colour-blind-safe colours.
    TolMuted,
    /// Paul Tol's "bright" scheme.
    TolBright,
    /// Saturated, dark-edged colours for projectors (used by presentation mode).
    HighContrast,
}

impl PaletteChoice {
    pub const ALL: [PaletteChoice; 4] = [
        Self::OkabeIto,
        Self::TolMuted,
        Self::TolBright,
        Self::HighContrast,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::OkabeIto => "Okabe–Ito (colour-blind safe)",
            Self::TolMuted => "Tol muted (colour-blind safe)",
            Self::TolBright => "Tol bright (colour-blind safe)",
            Self::HighContrast => "High contrast",
        }
    }

    fn colors(self, dark: bool) -> &'static [[u8; 3]] {
        crate::plot::line_colors(self.line_scheme(), dark)
    }

    /// The exported plots' palette with the same line colours.
    pub fn line_scheme(self) -> LineScheme {
        match self {
            Self::OkabeIto => LineScheme::OkabeIto,
            Self::TolMuted => LineScheme::TolMuted,
            Self::TolBright => LineScheme::TolBright,
            Self::HighContrast => LineScheme::Projector,
        }
    }
}

/// The sequential map of heatmaps and matrices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ColorMap {
    /// Perceptually uniform, colour-blind safe.
    #[default]
    Viridis,
    /// Optimised for colour-vision deficiency (Nuñez et al. 2018).
    Cividis,
    /// Grey levels: prints in black and white.
    Greys,
}

impl ColorMap {
    pub const ALL: [ColorMap; 3] = [Self::Viridis, Self::Cividis, Self::Greys];

    pub fn label(self) -> &'static str {
        match self {
            Self::Viridis => "viridis",
            Self::Cividis => "cividis",
            Self::Greys => "greys",
        }
    }

    /// The exported plots' palette with this colour map.
    pub fn plot_palette(self) -> crate::plot::Palette {
        match self {
            Self::Viridis => crate::plot::Palette::Viridis,
            Self::Cividis => crate::plot::Palette::Cividis,
            Self::Greys => crate::plot::Palette::HighContrast,
        }
    }

    /// The colour of `t` in 0..=1 (clamped): the exported plots' colour; NaN is drawn grey.
    pub fn color(self, t: f64) -> Color32 {
        if !t.is_finite() {
            return Color32::from_gray(128);
        }
        let [r, g, b] = crate::plot::map_color(self.plot_palette(), t);
        Color32::from_rgb(r, g, b)
    }

    /// Black or white, whichever reads better on `background`.
    pub fn text_on(background: Color32) -> Color32 {
        let l = 0.2126 * background.r() as f32
            + 0.7152 * background.g() as f32
            + 0.0722 * background.b() as f32;
        if l > 140.0 {
            Color32::BLACK
        } else {
            Color32::WHITE
        }
    }
}

/// Everything a view needs to draw in the current look.
#[derive(Debug, Clone, Copy)]
pub struct Look {
    pub dark: bool,
    pub presentation: bool,
    pub palette: PaletteChoice,
    pub color_map: ColorMap,
}

impl Look {
    /// Colour number `i` of the categorical palette (cycling).
    pub fn series(&self, i: usize) -> Color32 {
        let palette = if self.presentation {
            PaletteChoice::HighContrast
        } else {
            self.palette
        };
        let colors = palette.colors(self.dark);
        let [r, g, b] = colors[i % colors.len()];
        Color32::from_rgb(r, g, b)
    }

    /// Whether series `i` needs a dashed line to stay distinct once colours repeat.
    pub fn series_dashed(&self, i: usize) -> bool {
        let palette = if self.presentation {
            PaletteChoice::HighContrast
        } else {
            self.palette
        };
        (i / palette.colors(self.dark).len()) % 2 == 1
    }

    pub fn line_width(&self) -> f32 {
        if self.presentation { 3.5 } else { 1.8 }
    }

    pub fn marker_radius(&self) -> f32 {
        if self.presentation { 7.0 } else { 4.5 }
    }

    pub fn chance_color(&self) -> Color32 {
        if self.dark {
            Color32::from_gray(150)
        } else {
            Color32::from_gray(110)
        }
    }

    /// Plot grid lines: visible, but quieter than the data.
    pub fn grid_color(&self) -> Color32 {
        if self.dark {
            Color32::from_gray(90)
        } else {
            Color32::from_gray(150)
        }
    }

    pub fn error_color(&self) -> Color32 {
        if self.dark {
            Color32::from_rgb(255, 110, 100)
        } else {
            Color32::from_rgb(190, 20, 20)
        }
    }

    pub fn warning_color(&self) -> Color32 {
        if self.dark {
            Color32::from_rgb(240, 190, 80)
        } else {
            Color32::from_rgb(150, 90, 0)
        }
    }

    pub fn ok_color(&self) -> Color32 {
        if self.dark {
            Color32::from_rgb(90, 200, 130)
        } else {
            Color32::from_rgb(0, 120, 60)
        }
    }
}

/// Applies light/dark and the presentation-mode text sizes to every style.
pub fn apply(ctx: &egui::Context, dark: bool, presentation: bool) {
    ctx.set_theme(if dark {
        egui::Theme::Dark
    } else {
        egui::Theme::Light
    });
    let factor = if presentation { 1.4 } else { 1.0 };
    ctx.all_styles_mut(|style| {
        let mut styles = egui::style::default_text_styles();
        for font in styles.values_mut() {
            font.size *= factor;
        }
        if let Some(small) = styles.get_mut(&TextStyle::Small) {
            // egui's 9 pt "small" is hard to read on most screens.
            small.size = 10.5 * factor;
        }
        style.text_styles = styles;
        style.spacing.interact_size.y = 20.0 * factor;
        if presentation {
            style.visuals.widgets.noninteractive.fg_stroke.width = 1.5;
        }
    });
}

/// A system font that covers scripts egui's built-in fonts lack.
#[derive(Debug, Clone)]
pub struct FoundFont {
    pub name: String,
    pub path: PathBuf,
    pub index: u32,
}

/// File-name patterns of fonts worth adding as fallbacks, in order of preference per script.
const WANTED: &[(&str, &[&str])] = &[
    (
        "cjk",
        &[
            "NotoSansCJK-Regular.ttc",
            "NotoSansCJKsc-Regular.otf",
            "NotoSansCJKjp-Regular.otf",
            "NotoSansSC-Regular",
            "NotoSansJP-Regular",
            "SourceHanSans",
            "DroidSansFallbackFull.ttf",
            "DroidSansFallback.ttf",
            "wqy-microhei.ttc",
            "wqy-zenhei.ttc",
            "ipagp.ttf",
            "ipag.ttf",
        ],
    ),
    (
        "arabic",
        &[
            "NotoSansArabic-Regular",
            "NotoNaskhArabic-Regular",
            "NotoSansArabicUI-Regular",
            "DejaVuSans.ttf",
            "FreeSans.ttf",
        ],
    ),
    (
        "devanagari",
        &[
            "NotoSansDevanagari-Regular",
            "NotoSansDevanagariUI-Regular",
            "Lohit-Devanagari.ttf",
            "lohit_hi.ttf",
            "gargi.ttf",
            "FreeSans.ttf",
        ],
    ),
];

/// Looks for fallback fonts in the usual system folders. Never fails; finds nothing on a bare
/// system.
pub fn find_system_fonts() -> Vec<FoundFont> {
    let mut roots: Vec<PathBuf> = vec![
        PathBuf::from("/usr/share/fonts"),
        PathBuf::from("/usr/local/share/fonts"),
        PathBuf::from("/Library/Fonts"),
        PathBuf::from("/System/Library/Fonts"),
        PathBuf::from("C:\\Windows\\Fonts"),
    ];
    if let Some(data) = dirs::data_dir() {
        roots.push(data.join("fonts"));
    }
    if let Some(home) = dirs::home_dir() {
        roots.push(home.join(".fonts"));
        roots.push(home.join("Library/Fonts"));
    }
    let mut files = Vec::new();
    for root in &roots {
        collect_font_files(root, 0, &mut files);
    }
    let mut found: Vec<FoundFont> = Vec::new();
    for (script, patterns) in WANTED {
        let pick = patterns.iter().find_map(|pattern| {
            files
                .iter()
                .find(|p| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().starts_with(pattern))
                        .unwrap_or(false)
                })
                .cloned()
        });
        if let Some(path) = pick
            && !found.iter().any(|f| f.path == path)
        {
            // In the Noto CJK collection face 2 is Simplified Chinese, which also covers
            // Japanese kana; face 0 (Japanese) would draw Chinese with Japanese glyph shapes.
            let index = if path.to_string_lossy().contains("NotoSansCJK-") {
                2
            } else {
                0
            };
            found.push(FoundFont {
                name: format!("system-{script}"),
                path,
                index,
            });
        }
    }
    found
}

fn collect_font_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 5 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_font_files(&path, depth + 1, out);
        } else if path
            .extension()
            .map(|e| {
                let e = e.to_string_lossy().to_ascii_lowercase();
                e == "ttf" || e == "otf" || e == "ttc"
            })
            .unwrap_or(false)
        {
            out.push(path);
        }
    }
}

/// DejaVu Sans (bundled with the plot module): arrows, check marks and other symbols egui's
/// built-in font lacks, plus basic Arabic; the last resort of both families.
pub fn bundled_fallback() -> FontInsert {
    static DEJAVU: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/fonts/DejaVuSans.ttf"
    ));
    FontInsert::new(
        "DejaVuSans-fallback",
        FontData::from_static(DEJAVU),
        vec![
            InsertFontFamily {
                family: FontFamily::Proportional,
                priority: FontPriority::Lowest,
            },
            InsertFontFamily {
                family: FontFamily::Monospace,
                priority: FontPriority::Lowest,
            },
        ],
    )
}

/// Reads the fonts found (off the UI thread) into fallbacks for both font families.
pub fn load_fonts(found: &[FoundFont]) -> Vec<FontInsert> {
    found
        .iter()
        .filter_map(|font| {
            let bytes = std::fs::read(&font.path).ok()?;
            let mut data = FontData::from_owned(bytes);
            data.index = font.index;
            Some(FontInsert::new(
                &font.name,
                data,
                vec![
                    InsertFontFamily {
                        family: FontFamily::Proportional,
                        priority: FontPriority::Lowest,
                    },
                    InsertFontFamily {
                        family: FontFamily::Monospace,
                        priority: FontPriority::Lowest,
                    },
                ],
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn color_map_ends_and_nan() {
        assert_eq!(ColorMap::Viridis.color(0.0), Color32::from_rgb(68, 1, 84));
        assert_eq!(
            ColorMap::Viridis.color(1.0),
            Color32::from_rgb(253, 231, 37)
        );
        assert_eq!(
            ColorMap::Viridis.color(7.0),
            Color32::from_rgb(253, 231, 37)
        );
        assert_eq!(ColorMap::Greys.color(f64::NAN), Color32::from_gray(128));
    }

    #[test]
    fn series_colours_cycle_and_dash_after_a_cycle() {
        let look = Look {
            dark: false,
            presentation: false,
            palette: PaletteChoice::OkabeIto,
            color_map: ColorMap::Viridis,
        };
        assert_eq!(look.series(0), look.series(10));
        assert_ne!(look.series(0), look.series(8));
        assert!(!look.series_dashed(9));
        assert!(look.series_dashed(10));
    }

    #[test]
    fn finding_fonts_never_fails() {
        let _ = load_fonts(&find_system_fonts());
    }
}
