//! Held-out evaluation: greedy pass@1 and sampled pass@k (the unbiased
//! estimator), overall and per task and level.
//!
//! A completion passes when its verifier gives full reward (1.0). Greedy
//! pass@1 decodes one completion per problem at temperature 0; pass@k draws
//! `samples` completions per problem at the evaluation temperature and
//! averages [`pass_at_k`] over problems. A few greedy completions, the best
//! and the worst of each task and level, are kept with their verdicts.
//!
//! [`evaluate_budgets`] measures the same held-out problems at several
//! thinking budgets (most new tokens): greedy pass@1 and majority-vote
//! maj@k over sampled completions.

use std::collections::BTreeMap;
use std::time::Instant;

use policy::{GenerationCache, Precision};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use tasks::{Problem, Verdict};

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
    /// What the CPU decoder multiplies in (`run.decode_precision`).
    pub decode_precision: Precision,
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
    /// The held-out sets measured ([`tasks::HELDOUT_VERSION`]); empty in
    /// records written before versions were named.
    #[serde(default)]
    pub heldout_version: String,
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
    /// Greedy completions with their verdicts: the best and the worst of
    /// each task and level (older logs have none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<EvalExample>,
}

/// One greedy completion of an evaluation and what the verifier said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalExample {
    /// The problem's id (`add/3/heldout/17`).
    pub problem_id: String,
    /// The prompt text.
    pub prompt: String,
    /// The completion, cut at [`EXAMPLE_CHARS`] characters.
    pub completion: String,
    /// The verifier's verdict on the whole completion.
    pub verdict: Verdict,
}

/// Longest completion an [`EvalExample`] keeps, in characters.
pub const EXAMPLE_CHARS: usize = 1000;

/// What happened on one problem.
struct Outcome {
    greedy_pass: bool,
    greedy_format: bool,
    /// The greedy completion and its verdict.
    greedy: (String, Verdict),
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
    // Every chunk's greedy and sampled passes share the weights: packed once.
    let packed = GenerationCache::with_precision(settings.decode_precision);
    for chunk in problems.chunks(settings.batch_size.max(1)) {
        outcomes.extend(evaluate_chunk(model, &packed, chunk, settings, rng)?);
    }
    let overall = summarize(outcomes.iter(), settings)?;
    let mut groups: BTreeMap<(&str, u32), Vec<(&Problem, &Outcome)>> = BTreeMap::new();
    for (problem, outcome) in problems.iter().zip(&outcomes) {
        groups
            .entry((&problem.task, problem.level))
            .or_default()
            .push((problem, outcome));
    }
    let examples = groups.values().flat_map(|g| best_and_worst(g)).collect();
    let tasks = groups
        .into_iter()
        .map(|((task, level), group)| {
            Ok(TaskScore {
                task: task.to_string(),
                level,
                score: summarize(group.into_iter().map(|(_, o)| o), settings)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(EvalRecord {
        heldout_version: tasks::HELDOUT_VERSION.to_string(),
        phase,
        step,
        global_step,
        k: settings.recorded_k(),
        overall,
        seconds: start.elapsed().as_secs_f64(),
        tasks,
        examples,
    })
}

/// The first of the highest-rewarded greedy completions of a group and, when
/// it differs, the first of the lowest (a format failure before a merely
/// wrong answer).
fn best_and_worst(group: &[(&Problem, &Outcome)]) -> Vec<EvalExample> {
    let rank = |o: &Outcome| (o.greedy.1.reward, o.greedy.1.format_ok);
    let first_by = |better: fn(&(f64, bool), &(f64, bool)) -> bool| {
        group
            .iter()
            .copied()
            .reduce(|kept, next| match better(&rank(next.1), &rank(kept.1)) {
                true => next,
                false => kept,
            })
    };
    let best = first_by(|a, b| a.partial_cmp(b) == Some(std::cmp::Ordering::Greater));
    let worst = first_by(|a, b| a.partial_cmp(b) == Some(std::cmp::Ordering::Less));
    let mut picked: Vec<(&Problem, &Outcome)> = best.into_iter().collect();
    if let Some(worst) = worst.filter(|w| best.is_some_and(|b| rank(b.1) != rank(w.1))) {
        picked.push(worst);
    }
    picked
        .into_iter()
        .map(|(problem, outcome)| EvalExample {
            problem_id: problem.id.clone(),
            prompt: problem.prompt.clone(),
            completion: outcome.greedy.0.chars().take(EXAMPLE_CHARS).collect(),
            verdict: outcome.greedy.1.clone(),
        })
        .collect()
}

fn evaluate_chunk(
    model: &Model,
    packed: &policy::GenerationCache,
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
    let greedy = packed.generate(&model.policy.model, &prompts, 1, &greedy, rng)?;
    let mut outcomes = Vec::with_capacity(problems.len());
    for (problem, generation) in problems.iter().zip(&greedy) {
        let text = model.decode(&generation.tokens)?;
        let verdict = problem.verify(&text);
        outcomes.push(Outcome {
            greedy_pass: passes(verdict.reward),
            greedy_format: verdict.format_ok,
            greedy: (text, verdict),
            sampled_passes: 0,
        });
    }
    if settings.samples > 0 {
        let sampling = model.sampling(settings.temperature, 1.0, 0, settings.max_new_tokens);
        let samples = packed.generate(
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

/// Where `verity eval --budgets` records the curves of a run's checkpoints,
/// one [`BudgetRecord`] per line, in the run folder.
pub const BUDGETS_FILE: &str = "budgets.jsonl";

/// Held-out accuracy at one thinking budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetScore {
    /// The budget: most new tokens per completion.
    pub max_new_tokens: usize,
    /// Problems scored.
    pub problems: usize,
    /// Fraction solved by greedy decoding within the budget.
    pub pass_at_1: f64,
    /// Fraction whose most frequent sampled answer (by the verifier's
    /// normalised form) passes; `None` without sampling.
    pub maj_at_k: Option<f64>,
    /// Fraction of greedy completions in the output format.
    pub format_rate: f64,
    /// Mean greedy completion length in tokens.
    pub mean_length: f64,
}

/// The thinking-budget curve of one model: [`BudgetScore`]s in budget order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetRecord {
    /// The k of maj@k: sampled completions voting per problem (0: none).
    pub k: usize,
    /// Sampling temperature of the votes.
    pub temperature: f64,
    /// One score per budget, smallest first.
    pub budgets: Vec<BudgetScore>,
    /// Seconds the evaluation took.
    pub seconds: f64,
}

/// Greedy pass@1 and maj@k (k = `settings.samples`, at
/// `settings.temperature`) at each budget in `budgets`.
///
/// Completions are generated once, at the largest budget, and cut at each
/// smaller one: a model cut at `b` tokens has written exactly the first `b`
/// tokens it writes with more room (sampled ones follow the same
/// distribution), so this equals separate runs at each budget and keeps the
/// curve free of sampling noise between budgets.
pub fn evaluate_budgets(
    model: &Model,
    problems: &[Problem],
    budgets: &[usize],
    settings: &EvalSettings,
    rng: &mut StdRng,
) -> Result<BudgetRecord> {
    let start = Instant::now();
    let mut budgets = budgets.to_vec();
    budgets.sort_unstable();
    budgets.dedup();
    let largest = budgets.last().copied().unwrap_or(0);
    let mut tallies = vec![BudgetTally::default(); budgets.len()];
    let packed = GenerationCache::with_precision(settings.decode_precision);
    for chunk in problems.chunks(settings.batch_size.max(1)) {
        let prompts = chunk
            .iter()
            .map(|p| model.prompt_ids(&p.prompt))
            .collect::<Result<Vec<_>>>()?;
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        model.check_fits(longest, largest, "--budgets")?;
        let greedy = model.sampling(0.0, 1.0, 0, largest);
        let greedy = packed.generate(&model.policy.model, &prompts, 1, &greedy, rng)?;
        let samples = match settings.samples {
            0 => Vec::new(),
            n => {
                let sampling = model.sampling(settings.temperature, 1.0, 0, largest);
                packed.generate(&model.policy.model, &prompts, n, &sampling, rng)?
            }
        };
        for (tally, &budget) in tallies.iter_mut().zip(&budgets) {
            for (i, problem) in chunk.iter().enumerate() {
                let tokens = &greedy[i].tokens;
                let kept = &tokens[..tokens.len().min(budget)];
                let verdict = problem.verify(&model.decode(kept)?);
                tally.problems += 1;
                tally.greedy_passes += usize::from(passes(verdict.reward));
                tally.formatted += usize::from(verdict.format_ok);
                tally.tokens += kept.len();
                let votes = samples
                    .iter()
                    .filter(|g| g.prompt_index == i)
                    .map(|g| {
                        let kept = &g.tokens[..g.tokens.len().min(budget)];
                        let v = problem.verify(&model.decode(kept)?);
                        Ok((v.normalized, passes(v.reward)))
                    })
                    .collect::<Result<Vec<_>>>()?;
                tally.majority_passes += usize::from(majority_passes(&votes));
            }
        }
    }
    let scores = budgets
        .iter()
        .zip(&tallies)
        .map(|(&max_new_tokens, t)| {
            let frac = |x: usize| x as f64 / t.problems.max(1) as f64;
            BudgetScore {
                max_new_tokens,
                problems: t.problems,
                pass_at_1: frac(t.greedy_passes),
                maj_at_k: (settings.samples > 0).then(|| frac(t.majority_passes)),
                format_rate: frac(t.formatted),
                mean_length: frac(t.tokens),
            }
        })
        .collect();
    Ok(BudgetRecord {
        k: settings.samples,
        temperature: settings.temperature,
        budgets: scores,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Counts behind one [`BudgetScore`].
#[derive(Debug, Clone, Default)]
struct BudgetTally {
    problems: usize,
    greedy_passes: usize,
    majority_passes: usize,
    formatted: usize,
    tokens: usize,
}

/// Whether the most frequent answer among `votes` (normalised answer, pass)
/// passes. Completions without an answer do not vote; a tie goes to the
/// answer that reached the top count first in sample order; no answer at
/// all fails.
fn majority_passes(votes: &[(Option<String>, bool)]) -> bool {
    let mut counts: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    let mut leader: Option<(usize, bool)> = None;
    for (answer, pass) in votes {
        let Some(answer) = answer else { continue };
        let entry = counts.entry(answer).or_insert((0, *pass));
        entry.0 += 1;
        if leader.is_none_or(|(count, _)| entry.0 > count) {
            leader = Some(*entry);
        }
    }
    leader.is_some_and(|(_, pass)| pass)
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
            greedy: (
                String::new(),
                verdict(f64::from(u8::from(greedy_pass)), true, None),
            ),
            sampled_passes,
        }
    }

    fn verdict(reward: f64, format_ok: bool, normalized: Option<&str>) -> Verdict {
        Verdict {
            reward,
            format_ok,
            extracted: normalized.map(str::to_string),
            normalized: normalized.map(str::to_string),
            reason: String::new(),
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
            decode_precision: Precision::Float32,
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
    fn majority_vote_counts_normalised_answers() {
        let v = |answer: Option<&str>, pass: bool| (answer.map(str::to_string), pass);
        // Two wrong "5" outvote one right "7", whatever the order.
        assert!(!majority_passes(&[
            v(Some("7"), true),
            v(Some("5"), false),
            v(Some("5"), false)
        ]));
        // Missing answers do not vote.
        assert!(majority_passes(&[
            v(None, false),
            v(None, false),
            v(Some("7"), true)
        ]));
        // A tie goes to the answer that reached the top count first.
        assert!(majority_passes(&[
            v(Some("5"), false),
            v(Some("7"), true),
            v(Some("7"), true),
            v(Some("5"), false)
        ]));
        assert!(majority_passes(&[v(Some("7"), true), v(Some("5"), false)]));
        assert!(!majority_passes(&[v(Some("5"), false), v(Some("7"), true)]));
        assert!(!majority_passes(&[v(None, false)]));
        assert!(!majority_passes(&[]));
    }

    #[test]
    fn examples_are_the_best_and_worst_of_each_group() {
        let problem = |id: &str| Problem {
            id: id.into(),
            task: "add".into(),
            level: 1,
            prompt: String::new(),
            answer: "1".into(),
            solution: String::new(),
            check: tasks::Check::Number,
        };
        let (p1, p2, p3) = (problem("a"), problem("b"), problem("c"));
        let with = |reward: f64, format_ok: bool| Outcome {
            greedy_pass: reward >= 1.0,
            greedy_format: format_ok,
            greedy: (
                "x".repeat(2 * EXAMPLE_CHARS),
                verdict(reward, format_ok, None),
            ),
            sampled_passes: 0,
        };
        let (o1, o2, o3) = (with(0.0, true), with(1.0, true), with(0.0, false));
        let picked = best_and_worst(&[(&p1, &o1), (&p2, &o2), (&p3, &o3)]);
        let ids: Vec<&str> = picked.iter().map(|e| e.problem_id.as_str()).collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(picked[0].completion.chars().count(), EXAMPLE_CHARS);
        // All alike: one example.
        assert_eq!(best_and_worst(&[(&p1, &o1), (&p2, &o1)]).len(), 1);
    }

    #[test]
    fn records_serialise_with_the_documented_keys() {
        let record = EvalRecord {
            heldout_version: "v2".to_string(),
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
            examples: Vec::new(),
        };
        let json: serde_json::Value = serde_json::to_value(&record).unwrap();
        assert_eq!(json["heldout_version"], "v2");
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
