//! Charts of a simulation, drawn with `plotters` as SVG or PNG.
//!
//! Both charts go into one file, one above the other: the number of nodes down over time in a
//! typical trial, and the histogram of the maximum number down at once over all trials.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, bail, Context};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::Summary;

/// Width and height of the image, in pixels.
const IMAGE_SIZE: (u32, u32) = (1000, 900);

/// Font family under which the embedded DejaVu Sans is registered.
const FONT_FAMILY: &str = "sans-serif";

/// File formats that `--plot` writes, chosen by the file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlotFormat {
    Svg,
    Png,
}

/// Data for the charts: the summary and the steps of the typical trial.
pub struct PlotInput<'a> {
    pub summary: &'a Summary,
    /// Steps `(seconds after publication, nodes down)` of the typical trial.
    pub timeline: &'a [(u64, u32)],
    pub tolerated_down: u32,
    pub title: String,
}

/// Returns the format that the extension of `path` names.
pub fn plot_format(path: &Path) -> anyhow::Result<PlotFormat> {
    let extension = path
        .extension()
        .and_then(|extension| extension.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("svg") => Ok(PlotFormat::Svg),
        Some("png") => Ok(PlotFormat::Png),
        _ => bail!(
            "invalid --plot {}: the file name must end in .svg or .png",
            path.display()
        ),
    }
}

/// Draws both charts into `path` in `format`.
pub fn write_plot(path: &Path, format: PlotFormat, input: &PlotInput) -> anyhow::Result<()> {
    register_font()?;
    let failed = || format!("failed to write the plot {}", path.display());

    match format {
        PlotFormat::Svg => {
            let root = SVGBackend::new(path, IMAGE_SIZE).into_drawing_area();
            draw(&root, input).with_context(failed)?;
            root.present()
                .map_err(|error| anyhow!("{error}"))
                .with_context(failed)?;
        }
        PlotFormat::Png => {
            let root = BitMapBackend::new(path, IMAGE_SIZE).into_drawing_area();
            draw(&root, input).with_context(failed)?;
            root.present()
                .map_err(|error| anyhow!("{error}"))
                .with_context(failed)?;
        }
    }
    Ok(())
}

/// Registers DejaVu Sans, embedded by the `dejavu` crate, so text needs no system font.
fn register_font() -> anyhow::Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result =
            plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| anyhow!("failed to load the embedded DejaVu Sans font"));
    });
    result
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, input: &PlotInput) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|error| anyhow!("{error}"))?;
    let root = root
        .titled(&input.title, (FONT_FAMILY, 22))
        .map_err(|error| anyhow!("{error}"))?;
    let (upper, lower) = root.split_vertically(IMAGE_SIZE.1 / 2 - 20);

    draw_timeline(&upper, input).map_err(|error| anyhow!("{error}"))?;
    draw_histogram(&lower, input).map_err(|error| anyhow!("{error}"))?;
    Ok(())
}

fn draw_timeline<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    input: &PlotInput,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let end_secs = input.timeline.last().map_or(1, |&(time, _)| time.max(1));
    let end_hours = end_secs as f64 / 3_600.0;
    let highest = input
        .timeline
        .iter()
        .map(|&(_, down)| down)
        .max()
        .unwrap_or(0)
        .max(input.tolerated_down)
        + 1;

    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Nodes down over time in trial {}, whose maximum is the median",
                input.summary.typical_trial
            ),
            (FONT_FAMILY, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..end_hours, 0u32..highest)?;
    chart
        .configure_mesh()
        .x_desc("hours after publication")
        .y_desc("nodes down")
        .label_style((FONT_FAMILY, 13))
        .draw()?;

    // Draw each step as a horizontal segment followed by a vertical one.
    let mut points = Vec::with_capacity(input.timeline.len() * 2);
    let mut previous_down = 0;
    for &(time, down) in input.timeline {
        let hours = time as f64 / 3_600.0;
        points.push((hours, previous_down));
        points.push((hours, down));
        previous_down = down;
    }
    chart
        .draw_series(LineSeries::new(points, &BLUE))?
        .label("nodes down")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));

    let tolerance = input.tolerated_down;
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, tolerance), (end_hours, tolerance)],
            RED.stroke_width(2),
        ))?
        .label(format!("tolerated down ({tolerance})"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));

    chart
        .configure_series_labels()
        .label_font((FONT_FAMILY, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn draw_histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    input: &PlotInput,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let summary = input.summary;
    let highest_down = summary.max_down.max.max(input.tolerated_down + 1);
    let share = |trials: u64| trials as f64 / summary.trials as f64;
    let highest_share = summary
        .max_down
        .histogram
        .iter()
        .map(|count| share(count.trials))
        .fold(0.0, f64::max);

    // Segmented axis: the bar of value v spans [v, v + 1) and its label sits at its center.
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("Maximum nodes down at once over {} trials", summary.trials),
            (FONT_FAMILY, 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0u32..highest_down + 1).into_segmented(),
            0.0..highest_share * 1.1,
        )?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("maximum nodes down at once")
        .y_desc("share of trials")
        .label_style((FONT_FAMILY, 13))
        .draw()?;

    let tolerance = input.tolerated_down;
    chart.draw_series(summary.max_down.histogram.iter().map(|count| {
        let color = if count.down > tolerance { RED } else { GREEN };
        Rectangle::new(
            [
                (SegmentValue::Exact(count.down), 0.0),
                (SegmentValue::Exact(count.down + 1), share(count.trials)),
            ],
            color.mix(0.7).filled(),
        )
    }))?;

    // The boundary between the bars of kept (green) and lost (red) quorum.
    let boundary = SegmentValue::Exact(tolerance + 1);
    chart
        .draw_series(LineSeries::new(
            vec![(boundary.clone(), 0.0), (boundary, highest_share * 1.1)],
            BLACK.stroke_width(2),
        ))?
        .label(format!(
            "quorum lost right of this line (more than {tolerance} down)"
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));

    chart
        .configure_series_labels()
        .label_font((FONT_FAMILY, 13))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
