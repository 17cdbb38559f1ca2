//! Held-out evaluation: greedy pass@1 and sampled pass@k (the unbiased
//! estimator), overall and per task and level.
//!
//! A completion passes when its verifier gives full reward (1.0). Greedy
//! pass@1 decodes one completion per problem at temperature 0; pass@k draws
//! `samples` completions per problem at the evaluation temperature and
//! averages [`pass_at_k`] over problems.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tasks::Problem;

use crate::error::Result;
use crate::model::Model;
use crate::pass_at_k::pass_at_k;
use crate::progress::Phase;

/// What an evaluation measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalSettings {
    /// Sampled completions per problem for pass@k; 0 measures greedy pass@1 only.
    pub samples: usize,
    /// The k of pass@k (1..=samples).
    pub k: usize,
    /// Sampling temperature for pass@k.
    pub temperature: f64,
    /// Most tokens per completion.
    pub max_new_tokens: usize,
    /// Prompts per generation batch.
    pub batch_size: usize,
}

impl EvalSettings {
    /// The k an evaluation with these settings records (`None` without
    /// sampling).
    pub fn recorded_k(&self) -> Option<usize> {
        (self.samples > 0).then_some(self.k)
    }
}

/// Scores of one group of problems (everything, or one task and level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Problems scored.
    pub problems: usize,
    /// Fraction solved by greedy decoding.
    pub pass_at_1: f64,
    /// Mean unbiased pass@k of the samples; `None` without sampling.
    pub pass_at_k: Option<f64>,
    /// Fraction of greedy completions in the `<think>…</think><answer>…</answer>` format.
    pub format_rate: f64,
}

/// The score of one task and level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskScore {
    /// Task (family or problem-set) name.
    pub task: String,
    /// Difficulty level.
    pub level: u32,
    /// Its scores.
    #[serde(flatten)]
    pub score: Score,
}

/// One line of eval.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// `sft` or `grpo`.
    pub phase: Phase,
    /// Steps of that phase done when measured (GRPO step 0: the model as SFT
    /// left it).
    pub step: u64,
    /// Optimizer steps over both phases.
    pub global_step: u64,
    /// The k of `pass_at_k`; `None` without sampling.
    pub k: Option<usize>,
    /// Overall scores.
    #[serde(flatten)]
    pub overall: Score,
    /// Seconds the evaluation took.
    pub seconds: f64,
    /// Per task and level, in name then level order.
    pub tasks: Vec<TaskScore>,
}

/// What happened on one problem.
struct Outcome {
    greedy_pass: bool,
    greedy_format: bool,
    /// Passing samples, out of `settings.samples`.
    sampled_passes: usize,
}

/// Evaluates `model` on `problems`; sampling draws from `rng`.
pub fn evaluate(
    model: &Model,
    problems: &[Problem],
    settings: &EvalSettings,
    rng: &mut StdRng,
    phase: Phase,
    step: u64,
    global_step: u64,
) -> Result<EvalRecord> {
    let start = Instant::now();
    let mut outcomes = Vec::with_capacity(problems.len());
    for chunk in problems.chunks(settings.batch_size.max(1)) {
        outcomes.extend(evaluate_chunk(model, chunk, settings, rng)?);
    }
    let overall = summarize(outcomes.iter(), settings)?;
    let mut groups: BTreeMap<(&str, u32), Vec<&Outcome>> = BTreeMap::new();
    for (problem, outcome) in problems.iter().zip(&outcomes) {
        groups
            .entry((&problem.task, problem.level))
            .or_default()
            .push(outcome);
    }
    let tasks = groups
        .into_iter()
        .map(|((task, level), group)| {
            Ok(TaskScore {
                task: task.to_string(),
                level,
                score: summarize(group.into_iter(), settings)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EvalRecord {
        phase,
        step,
        global_step,
        k: settings.recorded_k(),
        overall,
        seconds: start.elapsed().as_secs_f64(),
        tasks,
    })
}

fn evaluate_chunk(
    model: &Model,
    problems: &[Problem],
    settings: &EvalSettings,
    rng: &mut StdRng,
) -> Result<Vec<Outcome>> {
    let prompts = problems
        .iter()
        .map(|p| model.prompt_ids(&p.prompt))
        .collect::<Result<Vec<_>>>()?;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    model.check_fits(longest, settings.max_new_tokens, "eval.max_new_tokens")?;
    let greedy = model.sampling(0.0, 1.0, 0, settings.max_new_tokens);
    let greedy = policy::generate(&model.policy.model, &prompts, 1, &greedy, rng)?;
    let mut outcomes = Vec::with_capacity(problems.len());
    for (problem, generation) in problems.iter().zip(&greedy) {
        let verdict = problem.verify(&model.decode(&generation.tokens)?);
        outcomes.push(Outcome {
            greedy_pass: passes(verdict.reward),
            greedy_format: verdict.format_ok,
            sampled_passes: 0,
        });
    }
    if settings.samples > 0 {
        let sampling = model.sampling(settings.temperature, 1.0, 0, settings.max_new_tokens);
        let samples = policy::generate(
            &model.policy.model,
            &prompts,
            settings.samples,
            &sampling,
            rng,
        )?;
        for generation in &samples {
            let problem = &problems[generation.prompt_index];
            if passes(problem.verify(&model.decode(&generation.tokens)?).reward) {
                outcomes[generation.prompt_index].sampled_passes += 1;
            }
        }
    }
    Ok(outcomes)
}

/// Full reward: a pass (partial credit is not a pass).
pub(crate) fn passes(reward: f64) -> bool {
    reward >= 1.0
}

fn summarize<'a>(
    outcomes: impl Iterator<Item = &'a Outcome>,
    settings: &EvalSettings,
) -> Result<Score> {
    let (mut n, mut greedy, mut format, mut sampled) = (0usize, 0usize, 0usize, 0f64);
    for o in outcomes {
        n += 1;
        greedy += usize::from(o.greedy_pass);
        format += usize::from(o.greedy_format);
        if settings.samples > 0 {
            sampled += pass_at_k(settings.samples, o.sampled_passes, settings.k)?;
        }
    }
    let frac = |x: f64| if n == 0 { 0.0 } else { x / n as f64 };
    Ok(Score {
        problems: n,
        pass_at_1: frac(greedy as f64),
        pass_at_k: (settings.samples > 0).then(|| frac(sampled)),
        format_rate: frac(format as f64),
    })
}

/// The evaluation as a small table: a headline, then one row per task and
/// level.
pub fn render_table(record: &EvalRecord) -> String {
    let k_label = record.k.map(|k| format!("pass@{k}"));
    let mut out = format!(
        "eval {} step {} (global {}): pass@1 {:.3}",
        record.phase, record.step, record.global_step, record.overall.pass_at_1
    );
    if let (Some(label), Some(v)) = (&k_label, record.overall.pass_at_k) {
        out.push_str(&format!("  {label} {v:.3}"));
    }
    out.push_str(&format!(
        "  ({} problems, {:.1} s)\n",
        record.overall.problems, record.seconds
    ));
    let width = record
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(4)
        .max(4);
    out.push_str(&format!(
        "  {:<width$}  level  problems  pass@1  format{}\n",
        "task",
        k_label
            .as_ref()
            .map(|l| format!("  {l:>6}"))
            .unwrap_or_default()
    ));
    for t in &record.tasks {
        out.push_str(&format!(
            "  {:<width$}  {:>5}  {:>8}  {:>6.3}  {:>6.3}{}\n",
            t.task,
            t.level,
            t.score.problems,
            t.score.pass_at_1,
            t.score.format_rate,
            t.score
                .pass_at_k
                .map(|v| format!("  {v:>6.3}"))
                .unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(greedy_pass: bool, sampled_passes: usize) -> Outcome {
        Outcome {
            greedy_pass,
            greedy_format: true,
            sampled_passes,
        }
    }

    #[test]
    fn summary_averages_pass_at_k_over_problems() {
        let settings = EvalSettings {
            samples: 4,
            k: 2,
            temperature: 1.0,
            max_new_tokens: 8,
            batch_size: 8,
        };
        let outcomes = [outcome(true, 4), outcome(false, 0), outcome(false, 1)];
        let s = summarize(outcomes.iter(), &settings).unwrap();
        assert_eq!(s.problems, 3);
        assert!((s.pass_at_1 - 1.0 / 3.0).abs() < 1e-12);
        // pass@2 with 4 samples: 1, 0 and 1 - C(3,2)/C(4,2) = 0.5.
        assert!((s.pass_at_k.unwrap() - 1.5 / 3.0).abs() < 1e-12);
        let greedy_only = EvalSettings {
            samples: 0,
            ..settings
        };
        assert_eq!(
            summarize(outcomes.iter(), &greedy_only).unwrap().pass_at_k,
            None
        );
    }

    #[test]
    fn records_serialise_with_the_documented_keys() {
        let record = EvalRecord {
            phase: Phase::Grpo,
            step: 0,
            global_step: 300,
            k: Some(8),
            overall: Score {
                problems: 2,
                pass_at_1: 0.5,
                pass_at_k: Some(0.75),
                format_rate: 1.0,
            },
            seconds: 1.5,
            tasks: vec![TaskScore {
                task: "add".into(),
                level: 3,
                score: Score {
                    problems: 2,
                    pass_at_1: 0.5,
                    pass_at_k: Some(0.75),
                    format_rate: 1.0,
                },
            }],
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(json["phase"], "grpo");
        assert_eq!(json["step"], 0);
        assert_eq!(json["pass_at_1"], 0.5);
        assert_eq!(json["pass_at_k"], 0.75);
        assert_eq!(json["k"], 8);
        assert_eq!(json["tasks"][0]["task"], "add");
        assert_eq!(json["tasks"][0]["pass_at_1"], 0.5);
        let table = render_table(&record);
        assert!(
            table.starts_with("eval grpo step 0 (global 300): pass@1 0.500  pass@8 0.750"),
            "{table}"
        );
        assert!(
            table.contains("\n  add       3         2   0.500   1.000   0.750\n"),
            "{table}"
        );
    }
}
