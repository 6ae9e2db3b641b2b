//! The table as a bar chart: `10-compare --svg FILE`.

use super::{Outcome, Row, Section, Table, World, number};
use std::fmt::Write as _;

impl Table {
    /// A horizontal bar chart, one panel per section, each on its own scale: the bar
    /// is the median, the whisker the spread from min to max.
    pub fn to_svg(&self) -> String {
        const WIDTH: f64 = 820.0;
        const LABEL: f64 = 250.0; // where the bars start
        const BARS: f64 = 440.0; // the panel's width
        const ROW: f64 = 24.0;
        let mut body = String::new();
        let mut y = 58.0;
        for section in Section::ALL {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.section == section).collect();
            if rows.is_empty() {
                continue;
            }
            let units: Vec<&str> = rows.iter().map(|r| r.unit).collect();
            let unit = units.first().copied().unwrap_or("");
            let same_unit = units.iter().all(|u| *u == unit);
            y += 22.0;
            let heading = if same_unit {
                format!("{} ({unit})", section.title())
            } else {
                section.title().to_string()
            };
            let _ = writeln!(
                body,
                r#"<text x="10" y="{y}" class="section">{}</text>"#,
                escape(&heading)
            );
            y += 10.0;
            // The scale leaves room beyond the largest median; a whisker longer than
            // that (one slow run on a busy machine) is cut at the edge, with an arrow.
            // A row twenty times the next (a real kernel's boot among process starts)
            // would flatten the others to nothing: the scale then ends past the
            // next one, and that row's bar is drawn broken, with its number.
            let mut medians: Vec<f64> = rows
                .iter()
                .filter_map(|r| match &r.outcome {
                    Outcome::Measured { summary, .. } => Some(summary.median),
                    _ => None,
                })
                .collect();
            medians.sort_by(|a, b| b.total_cmp(a));
            let scale = match medians[..] {
                [top, next, ..] if top > 20.0 * next => 1.3 * next,
                [top, ..] => 1.3 * top,
                [] => 0.0,
            };
            for row in rows {
                let mid = y + ROW / 2.0;
                let _ = writeln!(
                    body,
                    r#"<text x="{}" y="{}" class="label">{}</text>"#,
                    LABEL - 8.0,
                    mid + 4.0,
                    escape(row.name)
                );
                match &row.outcome {
                    Outcome::Measured { summary, .. } if summary.median > scale && scale > 0.0 => {
                        // Off the scale: a bar to the edge, cut twice, and its number.
                        let cut = LABEL + BARS * 0.8;
                        let _ = writeln!(
                            body,
                            r#"<rect x="{LABEL}" y="{}" width="{BARS}" height="{}" fill="{}"/>"#,
                            y + 4.0,
                            ROW - 8.0,
                            row.world.colour()
                        );
                        let _ = writeln!(
                            body,
                            r##"<path d="M{:.1} {}l6 {}M{:.1} {}l6 {}" stroke="#ffffff" stroke-width="3"/>"##,
                            cut - 6.0,
                            y + 2.0,
                            ROW - 4.0,
                            cut + 2.0,
                            y + 2.0,
                            ROW - 4.0
                        );
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{}" class="value">{} (off this scale)</text>"#,
                            LABEL + BARS + 6.0,
                            mid + 4.0,
                            escape(&number(summary.median))
                        );
                    }
                    Outcome::Measured { summary, .. } if scale > 0.0 => {
                        let x = |v: f64| LABEL + BARS * v / scale;
                        let _ = writeln!(
                            body,
                            r#"<rect x="{LABEL}" y="{}" width="{:.1}" height="{}" fill="{}"/>"#,
                            y + 4.0,
                            (x(summary.median) - LABEL).max(1.0),
                            ROW - 8.0,
                            row.world.colour()
                        );
                        let (x0, x1) = (x(summary.min), x(summary.max).min(LABEL + BARS));
                        let end = if summary.max > scale {
                            // an arrowhead: the run went on past the edge
                            format!(
                                "M{:.1} {}L{x1:.1} {mid}L{:.1} {}",
                                x1 - 5.0,
                                mid - 4.0,
                                x1 - 5.0,
                                mid + 4.0
                            )
                        } else {
                            format!("M{x1:.1} {}V{}", mid - 4.0, mid + 4.0)
                        };
                        let _ = writeln!(
                            body,
                            r#"<path d="M{x0:.1} {mid}H{x1:.1}M{x0:.1} {}V{}{end}" class="whisker"/>"#,
                            mid - 4.0,
                            mid + 4.0,
                        );
                        let shown = if same_unit {
                            number(summary.median)
                        } else {
                            format!("{} {}", number(summary.median), row.unit)
                        };
                        let _ = writeln!(
                            body,
                            r#"<text x="{:.1}" y="{}" class="value">{}</text>"#,
                            x1.max(x(summary.median)) + 6.0,
                            mid + 4.0,
                            escape(&shown)
                        );
                    }
                    Outcome::Measured { .. } => {}
                    Outcome::NotAvailable(_) => {
                        let _ = writeln!(
                            body,
                            r#"<text x="{LABEL}" y="{}" class="value">not available here</text>"#,
                            mid + 4.0
                        );
                    }
                    Outcome::Failed(_) => {
                        let _ = writeln!(
                            body,
                            r#"<text x="{LABEL}" y="{}" class="value">failed</text>"#,
                            mid + 4.0
                        );
                    }
                }
                y += ROW;
            }
        }
        let height = y + 16.0;
        let mut legend = String::new();
        let mut lx = 10.0;
        for (world, name) in [
            (World::Host, "host"),
            (World::Container, "container"),
            (World::Vm, "virtual machine"),
        ] {
            let _ = write!(
                legend,
                r#"<rect x="{lx}" y="40" width="12" height="12" fill="{}"/><text x="{}" y="50" class="value">{name}</text>"#,
                world.colour(),
                lx + 17.0
            );
            lx += 30.0 + 8.0 * name.len() as f64;
        }
        let _ = write!(
            legend,
            r#"<text x="{lx}" y="50" class="value">bar: the median of {} runs; whisker: min to max</text>"#,
            self.runs
        );
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<title>Containers and a VM measured on one machine: start to exit, one operation, memory</title>
<style>
.title {{ font-size: 15px; font-weight: bold; }}
.section {{ font-size: 13px; font-weight: bold; }}
.label {{ text-anchor: end; }}
.value {{ fill: #333; }}
.whisker {{ stroke: #222; stroke-width: 1.2; fill: none; }}
</style>
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" class="title">Both worlds, measured on one machine</text>
<text x="10" y="36" class="value">{}</text>
{legend}
{body}</svg>
"##,
            escape(&self.subtitle())
        )
    }

    /// The machine, and the mistakes made on purpose, if any.
    fn subtitle(&self) -> String {
        let machine = self.machine.describe();
        if self.broken.is_empty() {
            return machine;
        }
        let names: Vec<&str> = self.broken.iter().map(|b| b.mistake.as_str()).collect();
        format!("{machine}; broken on purpose: {}", names.join(", "))
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::super::{Machine, Outcome, Row, Section, Spread, Table, World};

    fn row(key: &'static str, median: f64) -> Row {
        Row {
            section: Section::Start,
            key,
            name: key,
            world: World::Vm,
            unit: "ms",
            how: String::new(),
            outcome: Outcome::Measured {
                samples: vec![median],
                order: vec![0],
                summary: Spread {
                    median,
                    min: median,
                    max: median,
                },
            },
        }
    }

    /// A row twenty times the next is drawn broken, and the others keep a scale on
    /// which they can be read: the largest of them fills most of the panel.
    #[test]
    fn a_row_far_beyond_the_others_is_drawn_broken() {
        let table = Table {
            runs: 1,
            trivial: String::new(),
            machine: Machine::default(),
            rows: vec![row("box", 3.0), row("vm", 2.6), row("kernel", 2400.0)],
            broken: Vec::new(),
        };
        let svg = table.to_svg();
        assert!(svg.contains("2400 (off this scale)"), "{svg}");
        // 3.0 on a scale of 1.3 * 3.0: 440 / 1.3 wide.
        assert!(svg.contains(r#"width="338.5""#), "{svg}");
    }
}
