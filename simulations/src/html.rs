//! The HTML report: one self-contained page (inline CSS and SVG, no script, nothing fetched)
//! for one report or several side by side.

use std::fmt::Write;

use crate::report::{Distribution, Report};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn s(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.0} s"))
}

const COLOURS: [&str; 4] = ["#1f6fb2", "#d9822b", "#2b9348", "#9d4edd"];

/// Horizontal bars: p90 of each report against a target line.
fn target_chart(reports: &[&Report], i: usize) -> String {
    let t = &reports[0].targets[i];
    let max = reports
        .iter()
        .filter_map(|r| r.targets[i].distribution.p90_s)
        .fold(t.target_s * 1.25, f64::max);
    let (w, bar_h) = (420.0, 18.0);
    let h = 10.0 + bar_h * 1.4 * reports.len() as f64 + 14.0;
    let mut out = format!(
        r#"<svg width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(&t.measure)
    );
    for (k, r) in reports.iter().enumerate() {
        let y = 8.0 + k as f64 * bar_h * 1.4;
        let p90 = r.targets[i].distribution.p90_s.unwrap_or(0.0);
        let bw = p90 / max * (w - 80.0);
        let _ = write!(
            out,
            r#"<rect x="0" y="{y}" width="{bw:.1}" height="{bar_h}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            COLOURS[k % 4],
            bw + 4.0,
            y + 13.0,
            s(r.targets[i].distribution.p90_s)
        );
    }
    let tx = t.target_s / max * (w - 80.0);
    let _ = write!(
        out,
        r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="0" y2="{:.1}" stroke="#c0392b" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#c0392b">target {:.0} s</text></svg>"##,
        h - 12.0,
        tx + 2.0,
        h - 2.0,
        t.target_s
    );
    out
}

/// A histogram of 30-second bins, one series per report.
fn histogram(series: &[(&str, &Distribution)]) -> String {
    let bins = 40;
    let max = series
        .iter()
        .flat_map(|(_, d)| d.histogram_30s.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let (w, h) = (640.0, 160.0);
    let bw = w / bins as f64 / series.len().max(1) as f64;
    let mut out = format!(
        r#"<svg width="{w}" height="{}" role="img" aria-label="histogram">"#,
        h + 20.0
    );
    for (k, (_, d)) in series.iter().enumerate() {
        for (b, n) in d.histogram_30s.iter().enumerate() {
            let bh = *n as f64 / max * h;
            let x = b as f64 * w / bins as f64 + k as f64 * bw;
            let _ = write!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="{}"/>"#,
                h - bh,
                bw * 0.9,
                COLOURS[k % 4]
            );
        }
    }
    for m in (0..=20).step_by(2) {
        let x = (m * 2) as f64 * w / bins as f64;
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{:.1}" font-size="10">{m}m</text>"#,
            h + 14.0
        );
    }
    out.push_str("</svg>");
    out
}

/// Number of districts without cover over time, one line per report.
fn coverage_chart(reports: &[&Report]) -> String {
    let max_min = reports
        .iter()
        .filter_map(|r| r.coverage.last())
        .map(|c| c.minute)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_n = reports
        .iter()
        .flat_map(|r| {
            r.coverage
                .iter()
                .map(|c| c.without_engine.len().max(c.without_ambulance.len()))
        })
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let (w, h) = (640.0, 140.0);
    let mut out = format!(
        r#"<svg width="{w}" height="{}" role="img" aria-label="coverage gaps">"#,
        h + 20.0
    );
    for (k, r) in reports.iter().enumerate() {
        for (dash, pick) in [("", 0), ("4 3", 1)] {
            let pts: Vec<String> = r
                .coverage
                .iter()
                .map(|c| {
                    let n = if pick == 0 {
                        c.without_engine.len()
                    } else {
                        c.without_ambulance.len()
                    };
                    format!(
                        "{:.1},{:.1}",
                        c.minute as f64 / max_min * w,
                        h - n as f64 / max_n * (h - 10.0)
                    )
                })
                .collect();
            let _ = write!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.5" stroke-dasharray="{dash}" points="{}"/>"#,
                COLOURS[k % 4],
                pts.join(" ")
            );
        }
    }
    let _ = write!(
        out,
        r#"<text x="0" y="{:.1}" font-size="10">0 h</text><text x="{:.1}" y="{:.1}" font-size="10">{:.1} h</text><text x="2" y="10" font-size="10">{max_n:.0} districts</text></svg>"#,
        h + 14.0,
        w - 40.0,
        h + 14.0,
        max_min / 60.0
    );
    out
}

fn measures_table(
    title: &str,
    reports: &[&Report],
    pick: impl Fn(&Report) -> Vec<(String, crate::report::Measures)>,
) -> String {
    let mut out = format!("<h3>{}</h3><table><tr><th>group</th>", esc(title));
    for r in reports {
        let _ = write!(out, r#"<th colspan="4">{}</th>"#, esc(&r.title));
    }
    out.push_str("</tr><tr><th></th>");
    for _ in reports {
        out.push_str(
            "<th>n</th><th>call proc. p90</th><th>turnout p90</th><th>travel p90 / total p90</th>",
        );
    }
    out.push_str("</tr>");
    let mut keys: Vec<String> = reports
        .iter()
        .flat_map(|r| pick(r).into_iter().map(|(k, _)| k))
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let _ = write!(out, "<tr><td>{}</td>", esc(&key));
        for r in reports {
            match pick(r).into_iter().find(|(k, _)| *k == key) {
                Some((_, m)) => {
                    let _ = write!(
                        out,
                        "<td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td>",
                        m.turnout.count.max(m.call_processing.count),
                        s(m.call_processing.p90_s),
                        s(m.turnout.p90_s),
                        s(m.travel.p90_s),
                        s(m.total.p90_s)
                    );
                }
                None => out.push_str("<td colspan=\"4\">–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    out
}

/// One page for one report, or several compared side by side.
pub fn page(reports: &[&Report]) -> String {
    let title = reports
        .iter()
        .map(|r| r.title.as_str())
        .collect::<Vec<_>>()
        .join(" vs ");
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}}
th{{background:#f2f2f2}}td:first-child{{text-align:left}}.ok{{color:#2b7a0b}}.miss{{color:#b00020;font-weight:bold}}
.legend span{{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}}
</style></head><body><h1>Drill report: {}</h1>"#,
        esc(&title),
        esc(&title)
    );
    out.push_str(r#"<p class="legend">"#);
    for (k, r) in reports.iter().enumerate() {
        let _ = write!(
            out,
            r#"<span style="background:{}"></span>{} — {} incidents, {} closed, {} never reached, {} events{}"#,
            COLOURS[k % 4],
            esc(&r.title),
            r.incidents,
            r.closed,
            r.never_reached,
            r.events,
            r.log_sha256.as_ref().map_or(String::new(), |h| format!(
                ", log sha256 <code>{}</code>",
                &h[..16]
            ))
        );
        out.push_str("<br>");
    }
    out.push_str("</p><h2>Against NFPA targets (90th percentile)</h2><table><tr><th>measure</th><th>standard</th><th>target</th>");
    for r in reports {
        let _ = write!(
            out,
            "<th>{} p90</th><th>within</th><th>n</th>",
            esc(&r.title)
        );
    }
    out.push_str("<th>chart</th></tr>");
    for i in 0..reports[0].targets.len() {
        let t = &reports[0].targets[i];
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{:.0} s</td>",
            esc(&t.measure),
            t.standard,
            t.target_s
        );
        for r in reports {
            let t = &r.targets[i];
            let class = match t.met {
                Some(true) => "ok",
                Some(false) => "miss",
                None => "",
            };
            let _ = write!(
                out,
                r#"<td class="{class}">{}</td><td>{}</td><td>{}</td>"#,
                s(t.distribution.p90_s),
                t.within_share
                    .map_or("–".into(), |x| format!("{:.0} %", x * 100.0)),
                t.distribution.count
            );
        }
        let _ = write!(out, "<td>{}</td></tr>", target_chart(reports, i));
    }
    out.push_str("</table><h2>Total response time (call received to first on scene)</h2>");
    let series: Vec<(&str, &Distribution)> = reports
        .iter()
        .map(|r| (r.title.as_str(), &r.overall.total))
        .collect();
    out.push_str(&histogram(&series));
    out.push_str("<h2>Travel time per unit</h2>");
    let series: Vec<(&str, &Distribution)> = reports
        .iter()
        .map(|r| (r.title.as_str(), &r.overall.travel))
        .collect();
    out.push_str(&histogram(&series));
    out.push_str("<h2>Coverage gaps over time</h2><p>Districts with no engine (solid) or no ambulance (dashed) within 480 s by road, sampled every 15 minutes.</p>");
    out.push_str(&coverage_chart(reports));
    out.push_str("<h2>Unit utilisation</h2><table><tr><th>kind</th>");
    for r in reports {
        let _ = write!(
            out,
            "<th>{} units</th><th>tasks</th><th>committed</th>",
            esc(&r.title)
        );
    }
    out.push_str("</tr>");
    let mut kinds: Vec<&String> = reports.iter().flat_map(|r| r.utilisation.keys()).collect();
    kinds.sort();
    kinds.dedup();
    for k in kinds {
        let _ = write!(out, "<tr><td>{}</td>", esc(k));
        for r in reports {
            match r.utilisation.get(k) {
                Some(u) => {
                    let _ = write!(
                        out,
                        r##"<td>{}</td><td>{}</td><td><svg width="100" height="10"><rect width="{:.1}" height="10" fill="#1f6fb2"/></svg> {:.0} %</td>"##,
                        u.units,
                        u.tasks,
                        u.committed_share * 100.0,
                        u.committed_share * 100.0
                    );
                }
                None => out.push_str("<td colspan=\"3\">–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><h2>Breakdowns</h2>");
    out.push_str(&measures_table("By priority", reports, |r| {
        r.by_priority
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }));
    out.push_str(&measures_table("By district", reports, |r| {
        r.by_area
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }));
    out.push_str(&measures_table("By unit kind", reports, |r| {
        r.by_unit_kind
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }));
    out.push_str("<p>Definitions: docs/drills.md. Every figure is computed from the drill's event log.</p></body></html>\n");
    out
}
