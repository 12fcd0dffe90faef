//! Renders evaluation reports: the terminal summary, comparison tables, and a self-contained
//! HTML page (inline SVG charts: PR curves, reliability diagram, per-language F1) with a Markdown
//! summary.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::eval::evaluate::{
    pr_curve, reliability_bins, Comparison, EvalReport, MIN_RELIABLE_SLICE,
};
use crate::util::html::escape;

fn ci(v: [f64; 2]) -> String {
    format!("[{:.3}, {:.3}]", v[0], v[1])
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.3}"))
}

fn opt_f32(v: Option<f32>) -> String {
    v.map_or_else(|| "n/a".into(), |x| format!("{x:.3}"))
}

/// The per-topic and overall tables as Markdown (also used in the terminal).
pub fn markdown_tables(report: &EvalReport) -> String {
    let mut s = String::new();
    let o = &report.overall;
    let _ = writeln!(s, "| topic | precision | recall | F1 | F1 95% CI | support | predicted | AP | threshold | best threshold (F1) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for t in &report.per_topic {
        let _ = writeln!(
            s,
            "| `{}` | {:.3} | {:.3} | **{:.3}** | {} | {} | {} | {} | {} | {} ({}) |",
            t.topic,
            t.precision,
            t.recall,
            t.f1,
            ci(t.f1_ci95),
            t.support,
            t.predicted,
            opt(t.average_precision),
            opt_f32(t.threshold),
            opt_f32(t.best_threshold),
            opt(t.best_f1)
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "| articles | macro-F1 (95% CI) | micro-F1 | subset accuracy | Hamming loss | `none` precision | `none` recall | ECE |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| {} | **{:.3}** {} | {:.3} | {:.3} | {:.4} | {:.3}{} | {:.3}{} | {} |",
        o.articles,
        o.macro_f1,
        ci(o.macro_f1_ci95),
        o.micro_f1,
        o.subset_accuracy,
        o.hamming_loss,
        o.none_precision,
        o.none_precision_ci95
            .map(|c| format!(" {}", ci(c)))
            .unwrap_or_default(),
        o.none_recall,
        o.none_recall_ci95
            .map(|c| format!(" {}", ci(c)))
            .unwrap_or_default(),
        opt(o.ece)
    );
    s
}

fn slices_table(report: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| slice | articles | macro-F1 | micro-F1 | |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for sl in &report.slices {
        let _ = writeln!(
            s,
            "| {} = {} | {} | {:.3} | {:.3} | {} |",
            sl.kind,
            sl.value,
            sl.articles,
            sl.macro_f1,
            sl.micro_f1,
            if sl.unreliable {
                format!("unreliable (< {MIN_RELIABLE_SLICE} articles)")
            } else {
                String::new()
            }
        );
    }
    s
}

fn errors_table(report: &EvalReport, limit: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "| kind | id | lang | topic | score | evidence |");
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for e in report.errors.iter().take(limit) {
        let mut excerpt: String = e.excerpt.chars().take(120).collect::<String>();
        if e.excerpt.chars().nth(120).is_some() {
            excerpt.push('…');
        }
        let excerpt = excerpt.replace('|', "/");
        let _ = writeln!(
            s,
            "| {} | {} | {} | `{}` | {} | {} |",
            e.kind.replace('_', " "),
            e.id,
            e.lang,
            e.topic,
            opt_f32(e.score),
            excerpt
        );
    }
    s
}

pub fn terminal_summary(report: &EvalReport, show_errors: usize) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "model {} on {} ({} articles; bootstrap {} x, seed {})\n",
        report.model,
        report
            .data
            .iter()
            .map(|d| d.path.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        report.overall.articles,
        report.bootstrap_samples,
        report.seed
    );
    s.push_str(&markdown_tables(report));
    let _ = writeln!(s, "\nslices:\n");
    s.push_str(&slices_table(report));
    if show_errors > 0 && !report.errors.is_empty() {
        let _ = writeln!(
            s,
            "\nworst {} of {} errors:\n",
            show_errors.min(report.errors.len()),
            report.errors.len()
        );
        s.push_str(&errors_table(report, show_errors));
    }
    s
}

pub fn comparison_table(a: &str, b: &str, paired: usize, rows: &[Comparison]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "A = {a}\nB = {b}\npaired articles: {paired}\n");
    let _ = writeln!(
        s,
        "| metric | A | B | B - A | 95% CI of B - A | p (paired bootstrap) |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {:.3} | {:.3} | {:+.3} | {} | {:.3}{} |",
            r.metric,
            r.a,
            r.b,
            r.delta,
            ci(r.delta_ci95),
            r.p_value,
            if r.p_value < 0.05 { " *" } else { "" }
        );
    }
    s
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn pr_chart(report: &EvalReport) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Precision-recall per topic", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)?;
        chart
            .configure_mesh()
            .x_desc("recall")
            .y_desc("precision")
            .draw()?;
        for (t, topic) in report.topics.iter().enumerate() {
            let scores: Vec<f32> = report
                .articles
                .iter()
                .filter_map(|a| a.probs.as_ref().map(|p| p[t]))
                .collect();
            if scores.len() != report.articles.len() {
                continue;
            }
            let gold: Vec<bool> = report.articles.iter().map(|a| a.gold[t]).collect();
            let color = COLORS[t % COLORS.len()];
            let ap = report.per_topic[t].average_precision.unwrap_or(0.0);
            chart
                .draw_series(LineSeries::new(
                    pr_curve(&scores, &gold),
                    color.stroke_width(2),
                ))?
                .label(format!("{topic} (AP {ap:.2})"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}

fn reliability_chart(report: &EvalReport) -> Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (480, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Reliability (ECE {})", opt(report.overall.ece)),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("predicted probability")
            .y_desc("observed frequency")
            .draw()?;
        chart.draw_series(LineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.4),
        ))?;
        let probs: Vec<f32> = report
            .articles
            .iter()
            .filter_map(|a| a.probs.clone())
            .flatten()
            .collect();
        let gold: Vec<bool> = report
            .articles
            .iter()
            .flat_map(|a| a.gold.iter().copied())
            .collect();
        if probs.len() == gold.len() {
            let bins = reliability_bins(&probs, &gold, 10);
            chart.draw_series(LineSeries::new(
                bins.iter().map(|b| (b.0, b.1)),
                COLORS[0].stroke_width(2),
            ))?;
            chart.draw_series(bins.iter().map(|b| {
                let size = 3 + ((b.2 as f64).log10().max(0.0) * 3.0) as i32;
                Circle::new((b.0, b.1), size, COLORS[0].filled())
            }))?;
        }
        root.present()?;
    }
    Ok(svg)
}

fn language_chart(report: &EvalReport) -> Result<String, Box<dyn std::error::Error>> {
    let langs: Vec<_> = report.slices.iter().filter(|s| s.kind == "lang").collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        root.fill(&WHITE)?;
        let labels: Vec<String> = langs
            .iter()
            .map(|s| format!("{} ({})", s.value, s.articles))
            .collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Macro-F1 per language (grey: fewer than 20 articles)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(44)
            .build_cartesian_2d((0..langs.len()).into_segmented(), 0f64..1f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(langs.len().max(1))
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("macro-F1")
            .draw()?;
        chart.draw_series(langs.iter().enumerate().map(|(i, s)| {
            let color = if s.unreliable {
                COLORS[7].mix(0.5)
            } else {
                COLORS[0].mix(0.9)
            };
            Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), s.macro_f1),
                ],
                color.filled(),
            )
        }))?;
        root.present()?;
    }
    Ok(svg)
}

/// A Markdown table rendered as an HTML table (cells escaped; `**x**` and `` `x` `` kept simple).
fn html_table(markdown: &str) -> String {
    let mut html = String::from("<table>\n");
    for (i, line) in markdown.lines().filter(|l| l.starts_with('|')).enumerate() {
        if i == 1 {
            continue; // the |---| separator
        }
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for cell in cells {
            let text = escape(cell).replace("**", "").replace('`', "");
            let _ = write!(html, "<{tag}>{text}</{tag}>");
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}

/// Writes `index.html` (self-contained: inline CSS and SVG) and `summary.md` into `dir`.
pub fn write_report(dir: &Path, report: &EvalReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let charts = (|| -> Result<[String; 3], Box<dyn std::error::Error>> {
        Ok([
            pr_chart(report)?,
            reliability_chart(report)?,
            language_chart(report)?,
        ])
    })()
    .map_err(|e| anyhow::anyhow!("chart rendering failed: {e}"))?;
    let tables = markdown_tables(report);
    let slices = slices_table(report);
    let errors = errors_table(report, 50);
    let header = format!(
        "Model `{}` (sha256 {}…) on {}; taxonomy v{}; {} bootstrap resamples, seed {}; {}.",
        report.model,
        &report.model_sha256[..12.min(report.model_sha256.len())],
        report
            .data
            .iter()
            .map(|d| format!(
                "`{}` ({} articles, sha256 {}…)",
                d.path,
                d.articles,
                &d.sha256[..12]
            ))
            .collect::<Vec<_>>()
            .join(", "),
        report.taxonomy_version,
        report.bootstrap_samples,
        report.seed,
        report.created
    );
    let markdown = format!(
        "# spyglass evaluation\n\n{header}\n\n## Scores\n\n{tables}\n## Slices\n\n{slices}\n## Worst errors\n\n{errors}"
    );
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>spyglass evaluation: {model}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "PingFang SC", "Hiragino Sans", "Microsoft YaHei", "Yu Gothic", sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }}
th {{ background: #f3f3f3; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1rem; }}
figure {{ margin: 0; }}
</style></head>
<body>
<h1>spyglass evaluation</h1>
<p>{header}</p>
<h2>Scores</h2>
{tables_html}
<h2>Charts</h2>
<div class="charts">
<figure id="pr-curves">{pr}</figure>
<figure id="reliability">{rel}</figure>
<figure id="language-f1">{lang}</figure>
</div>
<h2>Slices</h2>
{slices_html}
<h2>Worst errors</h2>
{errors_html}
</body></html>
"#,
        model = escape(&report.model),
        header = escape(&header).replace('`', ""),
        tables_html = tables.split("\n\n").map(html_table).collect::<String>(),
        pr = charts[0],
        rel = charts[1],
        lang = charts[2],
        slices_html = html_table(&slices),
        errors_html = html_table(&errors),
    );
    crate::io::output::write_atomic(&dir.join("index.html"), html.as_bytes())?;
    crate::io::output::write_atomic(&dir.join("summary.md"), markdown.as_bytes())?;
    Ok(())
}
