//! A spinner that moves a dozen times a second instead of asking for every frame.
//!
//! egui's own spinner requests a repaint each frame it is shown. During a run that is the whole
//! run: where the window is drawn in software (no GPU, remote X, Xvfb) a two-core machine then
//! gives one core to redrawing and the extraction runs at half speed.

use std::time::Duration;

use egui::emath::lerp;
use egui::{Response, Role, Sense, Shape, Stroke, Ui, WidgetInfo, vec2};

/// How often the spinner moves.
const STEP: Duration = Duration::from_millis(80);

/// The same arc as [`egui::Spinner`], at the style's interaction size.
pub fn spinner(ui: &mut Ui) -> Response {
    let size = ui.style().spacing.interact_size.y;
    let (rect, response) = ui.allocate_exact_size(vec2(size, size), Sense::hover());
    response.widget_info(|| WidgetInfo::new(Role::ProgressIndicator));
    if ui.is_rect_visible(rect) {
        let color = ui.visuals().strong_text_color();
        let radius = rect.height().min(rect.width()) * 0.5 - 2.0;
        let n_points = (radius.round() as u32).clamp(8, 128);
        let time = ui.input(|i| i.time);
        let start = time * std::f64::consts::TAU;
        let end = start + 240f64.to_radians() * time.sin();
        let points = (0..n_points)
            .map(|i| {
                let angle = lerp(start..=end, f64::from(i) / f64::from(n_points));
                let (sin, cos) = angle.sin_cos();
                rect.center() + radius * vec2(cos as f32, sin as f32)
            })
            .collect();
        ui.painter()
            .add(Shape::line(points, Stroke::new(3.0, color)));
        ui.ctx().request_repaint_after(STEP);
    }
    response
}
