//! Which plots a set of runs gets, and their series: one colour per run,
//! one line style per quantity. A plot is made only when some run logged
//! one of its quantities, and a run appears only in the plots it has data for.

use std::collections::{BTreeMap, BTreeSet};

use crate::chart::{Chart, Series, Stroke, YAxis};
use crate::read::{EvalLine, EvalScore, RunLog};

/// A plot with its title and key.
pub(crate) struct Figure {
    /// Stable id (`reward`, `heldout-add-3`), used in the page's anchors.
    pub id: String,
    pub title: String,
    /// One sentence on what it shows.
    pub note: String,
    /// What each line style (and, where given, colour) means.
    pub key: Vec<KeyEntry>,
    pub chart: Chart,
}

/// One entry of a plot's key.
pub(crate) struct KeyEntry {
    pub stroke: Stroke,
    /// A palette colour when colours mean something other than runs.
    pub colour: Option<usize>,
    pub label: String,
}

/// Where a line's values come from.
#[derive(Clone, Copy)]
enum Source {
    /// A key of metrics.jsonl.
    Metric(&'static str),
    /// A number of each evaluation.
    Eval(fn(&EvalLine) -> Option<f64>),
}

struct Line {
    source: Source,
    stroke: Stroke,
    label: &'static str,
}

/// A shaded band around or under a plot's first line.
enum Band {
    /// mean ± std, from two metrics.
    PlusMinus(&'static str, &'static str),
    /// From one metric to another.
    Between(&'static str, &'static str),
}

struct Spec {
    id: &'static str,
    title: &'static str,
    note: &'static str,
    y_label: &'static str,
    y_axis: YAxis,
    lines: &'static [Line],
    band: Option<Band>,
    /// Leave the plot out when every value is zero (a feature that was off).
    skip_all_zero: bool,
}

const fn metric(key: &'static str, stroke: Stroke, label: &'static str) -> Line {
    Line {
        source: Source::Metric(key),
        stroke,
        label,
    }
}

fn eval_pass_at_1(e: &EvalLine) -> Option<f64> {
    Some(e.overall.pass_at_1)
}
fn eval_pass_at_k(e: &EvalLine) -> Option<f64> {
    e.overall.pass_at_k
}
fn eval_format(e: &EvalLine) -> Option<f64> {
    e.overall.format_rate
}

const fn eval(f: fn(&EvalLine) -> Option<f64>, stroke: Stroke, label: &'static str) -> Line {
    Line {
        source: Source::Eval(f),
        stroke,
        label,
    }
}

/// The section of held-out evaluations.
pub(crate) const HELDOUT_SECTION: &str = "Held-out evaluation";

/// The plots against the global step, in page order, by section.
const SPECS: &[(&str, &[Spec])] = &[
    (
        HELDOUT_SECTION,
        &[
            Spec {
                id: "heldout",
                title: "Held-out pass rate",
                note: "Greedy pass@1 and sampled pass@k on the frozen held-out problems.",
                y_label: "pass rate",
                y_axis: YAxis::Unit,
                lines: &[
                    eval(eval_pass_at_1, Stroke::Solid, "greedy pass@1"),
                    eval(eval_pass_at_k, Stroke::Dashed, "sampled pass@k"),
                ],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "format",
                title: "Format rate",
                note: "Share of completions in the output format: <think>…</think> then <answer>…</answer>.",
                y_label: "share in format",
                y_axis: YAxis::Unit,
                lines: &[
                    metric("format_rate", Stroke::Solid, "GRPO samples"),
                    eval(eval_format, Stroke::Dashed, "held-out, greedy"),
                ],
                band: None,
                skip_all_zero: false,
            },
        ],
    ),
    (
        "GRPO",
        &[
            Spec {
                id: "reward",
                title: "Reward",
                note: "Mean reward of each step's samples; the band is ± the mean within-group std.",
                y_label: "reward",
                y_axis: YAxis::Linear,
                lines: &[
                    metric("reward", Stroke::Solid, "shaped reward (band: ± group std)"),
                    metric("accuracy", Stroke::Dashed, "verifier correctness"),
                ],
                band: Some(Band::PlusMinus("reward", "reward_std")),
                skip_all_zero: false,
            },
            Spec {
                id: "zero-std",
                title: "Groups without signal",
                note: "Share of groups whose samples all got the same reward: their advantages are 0.",
                y_label: "frac_reward_zero_std",
                y_axis: YAxis::Unit,
                lines: &[metric("frac_reward_zero_std", Stroke::Solid, "share of groups")],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "resampled",
                title: "Dynamic-sampling refills",
                note: "Groups without signal replaced by groups of fresh prompts, per step.",
                y_label: "groups replaced",
                y_axis: YAxis::Linear,
                lines: &[metric("groups_resampled", Stroke::Solid, "groups replaced")],
                band: None,
                skip_all_zero: true,
            },
            Spec {
                id: "length",
                title: "Completion length",
                note: "Tokens per sampled completion: mean, with the band from shortest to longest.",
                y_label: "tokens",
                y_axis: YAxis::Linear,
                lines: &[metric("completions/mean_length", Stroke::Solid, "mean (band: min to max)")],
                band: Some(Band::Between("completions/min_length", "completions/max_length")),
                skip_all_zero: false,
            },
            Spec {
                id: "truncated",
                title: "Completions cut at the length limit",
                note: "Share of samples that reached max_completion_length without finishing.",
                y_label: "share cut",
                y_axis: YAxis::Unit,
                lines: &[metric("completions/clipped_ratio", Stroke::Solid, "share cut")],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "kl",
                title: "KL to the reference model",
                note: "Mean k3 estimate over completion tokens (logged when beta > 0).",
                y_label: "KL",
                y_axis: YAxis::Linear,
                lines: &[metric("kl", Stroke::Solid, "KL")],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "entropy",
                title: "Entropy",
                note: "Mean entropy of the sampling distribution over completion tokens.",
                y_label: "nats per token",
                y_axis: YAxis::Linear,
                lines: &[metric("entropy", Stroke::Solid, "entropy")],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "sampling-gap",
                title: "Sampler against trained model",
                note: "Mean |sampled − trained log-prob| per token.",
                y_label: "nats per token",
                y_axis: YAxis::Linear,
                lines: &[metric(
                    "sampling/sampling_logp_difference/mean",
                    Stroke::Solid,
                    "mean gap",
                )],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "clip",
                title: "Clipped ratios",
                note: "Share of tokens whose probability ratio hit the clip range.",
                y_label: "share of tokens",
                y_axis: YAxis::Linear,
                lines: &[
                    metric("clip_ratio/low_mean", Stroke::Solid, "below 1 - ε_low"),
                    metric("clip_ratio/high_mean", Stroke::Dashed, "above 1 + ε_high"),
                    metric("clip_ratio/region_mean", Stroke::Dotted, "either"),
                ],
                band: None,
                skip_all_zero: false,
            },
        ],
    ),
    (
        "Optimisation",
        &[
            Spec {
                id: "loss",
                title: "Loss",
                note: "SFT: negative log-likelihood per solution token. GRPO: the policy loss, near 0 by construction.",
                y_label: "loss",
                y_axis: YAxis::Linear,
                lines: &[metric("loss", Stroke::Solid, "loss")],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "grad-norm",
                title: "Gradient norm",
                note: "Global gradient norm before clipping.",
                y_label: "norm",
                y_axis: YAxis::Log,
                lines: &[metric("grad_norm", Stroke::Solid, "before clipping")],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "lr",
                title: "Learning rate",
                note: "As the schedule set it at each step.",
                y_label: "learning rate",
                y_axis: YAxis::Linear,
                lines: &[metric("learning_rate", Stroke::Solid, "learning rate")],
                band: None,
                skip_all_zero: false,
            },
        ],
    ),
    (
        "Speed",
        &[
            Spec {
                id: "time",
                title: "Step time",
                note: "Seconds per step; GRPO steps split into rollout (sampling and scoring) and update.",
                y_label: "seconds",
                y_axis: YAxis::Linear,
                lines: &[
                    metric("step_s", Stroke::Solid, "whole step"),
                    metric("rollout_s", Stroke::Dashed, "rollout"),
                    metric("update_s", Stroke::Dotted, "update"),
                ],
                band: None,
                skip_all_zero: false,
            },
            Spec {
                id: "throughput",
                title: "Tokens per second",
                note: "SFT: tokens trained on per second. GRPO: completion tokens sampled per second of rollout.",
                y_label: "tokens / s",
                y_axis: YAxis::Linear,
                lines: &[metric("tokens_per_s", Stroke::Solid, "tokens per second")],
                band: None,
                skip_all_zero: false,
            },
        ],
    ),
];

/// Plots against the global step, by section, in page order; sections
/// without any plot are left out.
pub(crate) fn step_sections(runs: &[RunLog]) -> Vec<(&'static str, Vec<Figure>)> {
    let boundaries = boundaries(runs);
    let mut sections = Vec::new();
    for (section, specs) in SPECS {
        let figures: Vec<Figure> = specs
            .iter()
            .filter_map(|spec| spec_figure(spec, runs, &boundaries))
            .collect();
        if !figures.is_empty() {
            sections.push((*section, figures));
        }
    }
    sections
}

fn boundaries(runs: &[RunLog]) -> Vec<(usize, f64)> {
    runs.iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.sft_end()? as f64)))
        .collect()
}

fn spec_figure(spec: &Spec, runs: &[RunLog], boundaries: &[(usize, f64)]) -> Option<Figure> {
    let mut series = Vec::new();
    let mut strokes = BTreeSet::new();
    for (run_index, run) in runs.iter().enumerate() {
        for (line_index, line) in spec.lines.iter().enumerate() {
            let points = match line.source {
                Source::Metric(key) => metric_points(run, key),
                Source::Eval(f) => eval_points(&run.evals, f),
            };
            if points.is_empty() {
                continue;
            }
            let mut s = Series::line(run_index, line.stroke, points);
            if matches!(line.source, Source::Eval(_)) {
                s = s.with_markers();
            }
            if line_index == 0 {
                if let Some(band) = &spec.band {
                    s = s.with_band(band_points(run, band));
                }
            }
            strokes.insert(line_index);
            series.push(s);
        }
    }
    let all_zero = series.iter().all(|s| s.points.iter().all(|p| p.1 == 0.0));
    if series.is_empty() || (spec.skip_all_zero && all_zero) {
        return None;
    }
    let note = match all_zero {
        true => format!("{} Zero throughout.", spec.note),
        false => spec.note.to_string(),
    };
    let y_axis = match spec.y_axis {
        YAxis::Log if !spans_decades(&series) => YAxis::Linear,
        axis => axis,
    };
    Some(Figure {
        id: spec.id.to_string(),
        title: spec.title.to_string(),
        note,
        key: strokes
            .into_iter()
            .map(|i| KeyEntry {
                stroke: spec.lines[i].stroke,
                colour: None,
                label: with_k(spec.lines[i].label, runs),
            })
            .collect(),
        chart: Chart {
            x_label: "global step".to_string(),
            y_label: spec.y_label.to_string(),
            y_axis,
            x_log2: false,
            series,
            boundaries: boundaries.to_vec(),
        },
    })
}

/// `label` with the k of pass@k filled in when every evaluation of every
/// run used the same one.
fn with_k(label: &str, runs: &[RunLog]) -> String {
    let ks: BTreeSet<usize> = runs
        .iter()
        .flat_map(|r| r.evals.iter().filter_map(|e| e.k))
        .collect();
    match ks.len() {
        1 => label.replace(
            "pass@k",
            &format!("pass@{}", ks.iter().next().unwrap_or(&0)),
        ),
        _ => label.to_string(),
    }
}

/// True when every value is positive and the largest is 30 times the smallest.
fn spans_decades(series: &[Series]) -> bool {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for v in values {
        if v <= 0.0 {
            return false;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    hi > 30.0 * lo
}

fn metric_points(run: &RunLog, key: &str) -> Vec<(f64, f64)> {
    run.steps
        .iter()
        .filter_map(|s| Some((s.global_step as f64, *s.values.get(key)?)))
        .collect()
}

/// One point per global step (the SFT-end evaluation is logged again as
/// GRPO step 0 at the same step: one point).
fn eval_points(evals: &[EvalLine], f: fn(&EvalLine) -> Option<f64>) -> Vec<(f64, f64)> {
    let by_step: BTreeMap<u64, f64> = evals
        .iter()
        .filter_map(|e| Some((e.global_step, f(e)?)))
        .collect();
    by_step.into_iter().map(|(x, y)| (x as f64, y)).collect()
}

fn band_points(run: &RunLog, band: &Band) -> Vec<(f64, f64, f64)> {
    run.steps
        .iter()
        .filter_map(|s| {
            let x = s.global_step as f64;
            match *band {
                Band::PlusMinus(mean, std) => {
                    let (m, d) = (*s.values.get(mean)?, *s.values.get(std)?);
                    Some((x, m - d, m + d))
                }
                Band::Between(lo, hi) => Some((x, *s.values.get(lo)?, *s.values.get(hi)?)),
            }
        })
        .collect()
}

/// Held-out pass rate of each task and level, one plot each, in name then
/// level order.
pub(crate) fn task_figures(runs: &[RunLog]) -> Vec<Figure> {
    let mut groups: BTreeSet<(String, u32)> = BTreeSet::new();
    for run in runs {
        for e in &run.evals {
            groups.extend(e.tasks.iter().map(|t| (t.task.clone(), t.level)));
        }
    }
    let boundaries = boundaries(runs);
    groups
        .into_iter()
        .map(|(task, level)| {
            let score = |e: &EvalLine| -> Option<EvalScore> {
                e.tasks
                    .iter()
                    .find(|t| t.task == task && t.level == level)
                    .map(|t| t.score.clone())
            };
            let mut series = Vec::new();
            let mut has_k = false;
            for (i, run) in runs.iter().enumerate() {
                let points = |k: bool| -> Vec<(f64, f64)> {
                    let by_step: BTreeMap<u64, f64> = run
                        .evals
                        .iter()
                        .filter_map(|e| {
                            let s = score(e)?;
                            let y = if k { s.pass_at_k? } else { s.pass_at_1 };
                            Some((e.global_step, y))
                        })
                        .collect();
                    by_step.into_iter().map(|(x, y)| (x as f64, y)).collect()
                };
                let (one, k) = (points(false), points(true));
                if !one.is_empty() {
                    series.push(Series::line(i, Stroke::Solid, one).with_markers());
                }
                if !k.is_empty() {
                    has_k = true;
                    series.push(Series::line(i, Stroke::Dashed, k).with_markers());
                }
            }
            let mut key = vec![KeyEntry {
                stroke: Stroke::Solid,
                colour: None,
                label: "greedy pass@1".to_string(),
            }];
            if has_k {
                key.push(KeyEntry {
                    stroke: Stroke::Dashed,
                    colour: None,
                    label: with_k("sampled pass@k", runs),
                });
            }
            Figure {
                id: format!("heldout-{task}-{level}"),
                title: format!("{task}, level {level}"),
                note: "Held-out pass rate of this task and level.".to_string(),
                key,
                chart: Chart {
                    x_label: "global step".to_string(),
                    y_label: "pass rate".to_string(),
                    y_axis: YAxis::Unit,
                    x_log2: false,
                    series,
                    boundaries: boundaries.clone(),
                },
            }
        })
        .collect()
}

/// Prefix of the metrics keys a curriculum logs, one per family.
pub(crate) const CURRICULUM_PREFIX: &str = "curriculum/";

/// The curriculum's level of each family over the steps, one plot per family.
pub(crate) fn curriculum_figures(runs: &[RunLog]) -> Vec<Figure> {
    let families: BTreeSet<&str> = runs
        .iter()
        .flat_map(|r| r.steps.iter())
        .flat_map(|s| s.values.keys())
        .filter_map(|k| k.strip_prefix(CURRICULUM_PREFIX))
        .collect();
    let boundaries = boundaries(runs);
    families
        .into_iter()
        .map(|family| {
            let key = format!("{CURRICULUM_PREFIX}{family}");
            let series = runs
                .iter()
                .enumerate()
                .map(|(i, run)| Series::line(i, Stroke::Solid, metric_points(run, &key)))
                .filter(|s| !s.points.is_empty())
                .collect();
            Figure {
                id: format!("curriculum-{family}"),
                title: format!("Curriculum: {family}"),
                note: String::new(),
                key: vec![KeyEntry {
                    stroke: Stroke::Solid,
                    colour: None,
                    label: format!("level ({key})"),
                }],
                chart: Chart {
                    x_label: "global step".to_string(),
                    y_label: "level".to_string(),
                    y_axis: YAxis::Linear,
                    x_log2: false,
                    series,
                    boundaries: boundaries.clone(),
                },
            }
        })
        .collect()
}

/// Pass rate against thinking budget, one plot per run that has budget
/// curves, one colour per checkpoint.
pub(crate) fn budget_figures(runs: &[RunLog]) -> Vec<Figure> {
    runs.iter()
        .filter(|r| !r.budgets.is_empty())
        .map(|run| {
            let mut series = Vec::new();
            let mut key = Vec::new();
            let mut has_maj = None;
            for (i, curve) in run.budgets.iter().enumerate() {
                let x = |b: &crate::read::BudgetPoint| b.max_new_tokens as f64;
                let one = curve.budgets.iter().map(|b| (x(b), b.pass_at_1)).collect();
                series.push(Series::line(i, Stroke::Solid, one).with_markers());
                let maj: Vec<(f64, f64)> = curve
                    .budgets
                    .iter()
                    .filter_map(|b| Some((x(b), b.maj_at_k?)))
                    .collect();
                if !maj.is_empty() {
                    has_maj = Some(curve.k);
                    series.push(Series::line(i, Stroke::Dashed, maj).with_markers());
                }
                key.push(KeyEntry {
                    stroke: Stroke::Solid,
                    colour: Some(i),
                    label: checkpoint_name(curve),
                });
            }
            key.push(KeyEntry {
                stroke: Stroke::Solid,
                colour: None,
                label: "greedy pass@1".to_string(),
            });
            if let Some(k) = has_maj {
                key.push(KeyEntry {
                    stroke: Stroke::Dashed,
                    colour: None,
                    label: format!("majority vote of {k} samples (maj@{k})"),
                });
            }
            Figure {
                id: format!("budgets-{}", run.name),
                title: format!("Thinking budget: {}", run.name),
                note: "Held-out pass rate when a completion may use at most this many new tokens."
                    .to_string(),
                key,
                chart: Chart {
                    x_label: "thinking budget (max new tokens)".to_string(),
                    y_label: "pass rate".to_string(),
                    y_axis: YAxis::Unit,
                    x_log2: true,
                    series,
                    boundaries: Vec::new(),
                },
            }
        })
        .collect()
}

/// `step 410` for a run checkpoint, else the folder's last part.
fn checkpoint_name(curve: &crate::read::BudgetLine) -> String {
    match curve.global_step {
        Some(step) => format!("checkpoint at step {step}"),
        None => curve
            .checkpoint
            .rsplit('/')
            .find(|p| !p.is_empty())
            .unwrap_or("checkpoint")
            .to_string(),
    }
}
