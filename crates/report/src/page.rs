//! The HTML page: a legend of the runs, the plots by section, then tables
//! (the last evaluation per task and level, completions with verdicts, the
//! config). Self-contained: styles inline, plots as inline SVG, no script,
//! no font or image fetched from anywhere.

use std::collections::BTreeSet;
use std::fmt::Write;

use crate::chart::{css_colour, Stroke};
use crate::error::Result;
use crate::plots::{
    budget_figures, curriculum_figures, step_sections, task_figures, Figure, HELDOUT_SECTION,
};
use crate::read::{RunLog, VerdictLine};

/// Config keys that name where a run went rather than how it trained.
const NOT_SETTINGS: [&str; 2] = ["run.name", "run.out_dir"];

const STYLE: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 20px 24px;
       color: #222; background: #fafafa; max-width: 1540px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 8px; }
p.lead { color: #555; margin: 0 0 12px; font-size: 14px; }
.plots { display: flex; flex-wrap: wrap; gap: 14px; }
figure.plot { margin: 0; background: #fff; border: 1px solid #e2e2e2; border-radius: 6px;
              padding: 6px 6px 6px; width: 460px; }
figure.plot figcaption { font-size: 14px; margin: 0 4px 4px; }
figure.plot figcaption .note { color: #666; font-size: 12px; display: block; margin-top: 2px; }
figure.plot svg { display: block; }
.key { font-size: 12px; color: #444; margin: 2px 4px 0; display: flex; flex-wrap: wrap; gap: 4px 14px; }
.key span { white-space: nowrap; }
.key svg { display: inline-block; vertical-align: middle; margin-right: 4px; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
th, td { border: 1px solid #e2e2e2; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.diff td { background: #fff6d6; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; vertical-align: middle;
          margin-right: 6px; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: 12px; max-width: 560px; }
.pass { color: #2a7d2a; font-weight: 600; }
.fail { color: #b3261e; font-weight: 600; }
.notes { color: #8a5a00; font-size: 13px; }
code { font-size: 12px; }
";

/// The whole page for `runs` (at least one).
pub(crate) fn render(runs: &[RunLog]) -> Result<String> {
    let names: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let mut html = String::with_capacity(1 << 20);
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n");
    let _ = writeln!(
        html,
        "<title>verity report: {}</title>",
        esc(&names.join(", "))
    );
    let _ = writeln!(html, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(html, "<h1>verity report: {}</h1>", esc(&names.join(", ")));
    html.push_str(
        "<p class=\"lead\">Read from the run folders. Plots are against the global step (optimizer \
         steps over both phases); a dashed vertical line marks where SFT ended and GRPO began. \
         <code>verity train</code> rewrites a run's report.html after every evaluation: reload \
         to see the latest.</p>\n",
    );
    runs_table(&mut html, runs);

    let mut sections = step_sections(runs);
    // Per task and level beside the overall rates (evaluations draw both).
    let tasks = task_figures(runs);
    match sections
        .iter_mut()
        .find(|(name, _)| *name == HELDOUT_SECTION)
    {
        Some((_, figures)) => figures.extend(tasks),
        None if !tasks.is_empty() => sections.insert(0, (HELDOUT_SECTION, tasks)),
        None => {}
    }
    let curriculum = curriculum_figures(runs);
    if !curriculum.is_empty() {
        sections.push(("Curriculum", curriculum));
    }
    let budgets = budget_figures(runs);
    if !budgets.is_empty() {
        sections.push(("Thinking budget", budgets));
    }
    for (title, figures) in &sections {
        let _ = writeln!(html, "<h2>{}</h2>\n<div class=\"plots\">", esc(title));
        for figure in figures {
            figure_html(&mut html, figure, runs.len())?;
        }
        html.push_str("</div>\n");
    }

    last_eval_tables(&mut html, runs);
    completion_tables(&mut html, runs);
    config_table(&mut html, runs);
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

fn figure_html(html: &mut String, figure: &Figure, runs: usize) -> Result<()> {
    let _ = write!(
        html,
        "<figure class=\"plot\" id=\"plot-{id}\" data-plot=\"{id}\">\n<figcaption><b>{}</b>",
        esc(&figure.title),
        id = esc(&figure.id)
    );
    if !figure.note.is_empty() {
        let _ = write!(html, "<span class=\"note\">{}</span>", esc(&figure.note));
    }
    html.push_str("</figcaption>\n");
    html.push_str(&figure.chart.svg(&figure.title)?);
    html.push_str("\n<div class=\"key\">");
    // Colours name runs, or (where entries have their own) checkpoints; a
    // line style alone is shown in the one run's colour, else in grey.
    let own_colours = figure.key.iter().any(|e| e.colour.is_some());
    for entry in &figure.key {
        let colour = match (entry.colour, runs, own_colours) {
            (Some(c), _, _) => css_colour(c),
            (None, 1, false) => css_colour(0),
            (None, _, _) => "#555555".to_string(),
        };
        let _ = write!(
            html,
            "<span>{}{}</span>",
            stroke_sample(entry.stroke, &colour),
            esc(&entry.label)
        );
    }
    html.push_str("</div>\n</figure>\n");
    Ok(())
}

/// A short line in `stroke` and `colour`, for a key.
fn stroke_sample(stroke: Stroke, colour: &str) -> String {
    let dash = match stroke {
        Stroke::Solid => "",
        Stroke::Dashed => " stroke-dasharray=\"7 4\"",
        Stroke::Dotted => " stroke-dasharray=\"2 3\"",
    };
    format!(
        "<svg width=\"30\" height=\"10\" viewBox=\"0 0 30 10\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line x1=\"1\" y1=\"5\" x2=\"29\" y2=\"5\" stroke=\"{colour}\" stroke-width=\"2\"{dash}/></svg>"
    )
}

/// Keys whose values differ between runs (a key one run lacks differs).
fn differing_keys(runs: &[RunLog]) -> BTreeSet<String> {
    if runs.len() < 2 {
        return BTreeSet::new();
    }
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    keys.into_iter()
        .filter(|k| !NOT_SETTINGS.contains(&k.as_str()))
        .filter(|k| {
            let first = runs[0].config.get(*k);
            runs.iter().any(|r| r.config.get(*k) != first)
        })
        .cloned()
        .collect()
}

/// Where a run stands, from its logs and config: `GRPO step 40 of 80`.
fn progress(run: &RunLog) -> String {
    let Some(last) = run.steps.last() else {
        return "no steps yet".to_string();
    };
    let step = last.values.get("step").map_or(0, |s| *s as u64);
    let phase = last.phase.as_str();
    let total = run
        .config
        .get(&format!("{phase}.steps"))
        .and_then(|s| s.parse::<u64>().ok());
    let mut text = format!("{} step {step}", phase.to_uppercase());
    if let Some(total) = total {
        let _ = write!(text, " of {total}");
    }
    let _ = write!(text, " (global {})", last.global_step);
    text
}

fn runs_table(html: &mut String, runs: &[RunLog]) {
    let differing = differing_keys(runs);
    html.push_str("<table class=\"runs\">\n<tr><th>run</th><th>folder</th><th>progress</th>");
    html.push_str("<th>held-out pass@1 (latest)</th>");
    if runs.len() > 1 {
        html.push_str("<th>settings that differ</th>");
    }
    html.push_str("</tr>\n");
    for (i, run) in runs.iter().enumerate() {
        let pass = run.last_eval().map_or_else(
            || "none yet".to_string(),
            |e| format!("{:.3} at step {}", e.overall.pass_at_1, e.global_step),
        );
        let _ = write!(
            html,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span><b>{}</b></td>\
             <td><code>{}</code></td><td>{}</td><td>{}</td>",
            css_colour(i),
            esc(&run.name),
            esc(&run.dir.display().to_string()),
            esc(&progress(run)),
            esc(&pass)
        );
        if runs.len() > 1 {
            let diffs: Vec<String> = differing
                .iter()
                .map(|k| {
                    let v = run.config.get(k).map_or("(unset)", String::as_str);
                    format!("{k} = {v}")
                })
                .collect();
            let _ = write!(html, "<td><code>{}</code></td>", esc(&diffs.join("; ")));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    for run in runs.iter().filter(|r| !r.notes.is_empty()) {
        for note in &run.notes {
            let _ = writeln!(
                html,
                "<p class=\"notes\">{}: {}</p>",
                esc(&run.name),
                esc(note)
            );
        }
    }
}

fn last_eval_tables(html: &mut String, runs: &[RunLog]) {
    let with_evals: Vec<&RunLog> = runs.iter().filter(|r| r.last_eval().is_some()).collect();
    if with_evals.is_empty() {
        return;
    }
    html.push_str("<h2>Last evaluation per task and level</h2>\n");
    for run in with_evals {
        let Some(e) = run.last_eval() else { continue };
        let k =
            e.k.map_or_else(|| "pass@k".to_string(), |k| format!("pass@{k}"));
        let _ = writeln!(
            html,
            "<h3>{}: {} step {} (global step {})</h3>",
            esc(&run.name),
            esc(&e.phase.to_uppercase()),
            e.step,
            e.global_step
        );
        let _ = writeln!(
            html,
            "<table data-table=\"last-eval\"><tr><th>task</th><th>level</th><th>problems</th>\
             <th>pass@1</th><th>{k}</th><th>format</th></tr>"
        );
        let row = |name: &str, level: &str, s: &crate::read::EvalScore| {
            format!(
                "<tr><td>{}</td><td class=\"num\">{level}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{:.3}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
                esc(name),
                s.problems,
                s.pass_at_1,
                s.pass_at_k.map_or("–".to_string(), |v| format!("{v:.3}")),
                s.format_rate.map_or("–".to_string(), |v| format!("{v:.3}")),
            )
        };
        for t in &e.tasks {
            html.push_str(&row(&t.task, &t.level.to_string(), &t.score));
        }
        html.push_str(&row("all", "", &e.overall).replace("<td>all</td>", "<td><b>all</b></td>"));
        html.push_str("</table>\n");
    }
}

fn verdict_cell(v: &VerdictLine) -> String {
    let (class, mark) = if v.reward >= 1.0 {
        ("pass", "pass")
    } else {
        ("fail", "fail")
    };
    format!(
        "<span class=\"{class}\">{mark}</span> reward {:.2}<br/>format {}<br/>answer <code>{}</code><br/>{}",
        v.reward,
        if v.format_ok { "ok" } else { "broken" },
        esc(v.extracted.as_deref().unwrap_or("(none)")),
        esc(&v.reason)
    )
}

fn completion_tables(html: &mut String, runs: &[RunLog]) {
    for run in runs {
        let examples = run.last_eval().map(|e| (e, &e.examples));
        let has_examples = examples.is_some_and(|(_, x)| !x.is_empty());
        if !has_examples && run.samples.is_empty() {
            continue;
        }
        let _ = writeln!(html, "<h2>Completions: {}</h2>", esc(&run.name));
        if let Some((e, examples)) = examples.filter(|_| has_examples) {
            let _ = writeln!(
                html,
                "<h3>Last evaluation (global step {}): the best and the worst greedy completion of each task and level</h3>",
                e.global_step
            );
            html.push_str("<table data-table=\"eval-completions\"><tr><th>problem</th><th>prompt</th><th>completion</th><th>verdict</th></tr>\n");
            for x in examples {
                let _ = writeln!(
                    html,
                    "<tr><td><code>{}</code></td><td><pre>{}</pre></td><td><pre>{}</pre></td><td>{}</td></tr>",
                    esc(&x.problem_id),
                    esc(&x.prompt),
                    esc(&x.completion),
                    verdict_cell(&x.verdict)
                );
            }
            html.push_str("</table>\n");
        }
        if !run.samples.is_empty() {
            let mut samples: Vec<_> = run.samples.iter().collect();
            samples.sort_by(|a, b| b.reward.total_cmp(&a.reward));
            let shown: Vec<_> = if samples.len() > 6 {
                samples[..3]
                    .iter()
                    .chain(&samples[samples.len() - 3..])
                    .copied()
                    .collect()
            } else {
                samples
            };
            let _ = writeln!(
                html,
                "<h3>Training samples of GRPO step {} (samples.jsonl), highest reward first</h3>",
                run.samples[0].step
            );
            html.push_str("<table data-table=\"train-completions\"><tr><th>problem</th><th>prompt</th><th>completion</th><th>reward</th><th>verdict</th></tr>\n");
            for s in shown {
                let _ = writeln!(
                    html,
                    "<tr><td><code>{}</code></td><td><pre>{}</pre></td><td><pre>{}</pre></td><td class=\"num\">{:.2}<br/>{} tokens</td><td>{}</td></tr>",
                    esc(&s.problem_id),
                    esc(&s.prompt),
                    esc(&s.completion),
                    s.reward,
                    s.length,
                    verdict_cell(&s.verdict)
                );
            }
            html.push_str("</table>\n");
        }
    }
}

fn config_table(html: &mut String, runs: &[RunLog]) {
    let keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    if keys.is_empty() {
        return;
    }
    let differing = differing_keys(runs);
    html.push_str("<h2>Resolved config</h2>\n");
    if !differing.is_empty() {
        html.push_str(
            "<p class=\"lead\">Highlighted: settings that differ between the runs.</p>\n",
        );
    }
    html.push_str("<table data-table=\"config\"><tr><th>key</th>");
    for (i, run) in runs.iter().enumerate() {
        let _ = write!(
            html,
            "<th><span class=\"swatch\" style=\"background:{}\"></span>{}</th>",
            css_colour(i),
            esc(&run.name)
        );
    }
    html.push_str("</tr>\n");
    for key in keys {
        let class = if differing.contains(key) {
            " class=\"diff\""
        } else {
            ""
        };
        let _ = write!(html, "<tr{class}><td><code>{}</code></td>", esc(key));
        for run in runs {
            let value = run.config.get(key).map_or("", String::as_str);
            let _ = write!(html, "<td><code>{}</code></td>", esc(value));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
}

/// `text` escaped for HTML text and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
