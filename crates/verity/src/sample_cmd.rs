//! `verity sample`: show what a model writes, for held-out problems of a
//! task (with the verifier's verdict) or for a prompt of your own.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::{ArgGroup, Args};
use policy::{FinishReason, Precision};
use trainer::{Checkpoint, Sample, SamplePrompt};

use crate::bad_input;
use crate::eval_cmd::{into_anyhow, open, warn_dropped, warn_if_emulated};

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["task", "prompt"])))]
pub struct SampleArgs {
    /// A run checkpoint (runs/NAME/checkpoints/step-N), a Hugging Face
    /// model folder (config.json, *.safetensors, tokenizer.json) or a GGUF
    /// file (dequantized to float32).
    #[arg(long, value_name = "PATH")]
    checkpoint: PathBuf,
    /// A task family: one completion for each of its first N held-out
    /// problems, with verdicts.
    #[arg(long, value_name = "NAME")]
    task: Option<String>,
    /// The task's level. Default: the level the run trained the task at,
    /// else 1.
    #[arg(long, value_name = "L", requires = "task")]
    level: Option<u32>,
    /// A prompt of your own: N completions of it.
    #[arg(long, value_name = "TEXT")]
    prompt: Option<String>,
    /// How many samples.
    #[arg(long, value_name = "N", default_value_t = 4)]
    n: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(
        long,
        value_name = "T",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    temperature: f64,
    /// Most tokens per completion. Default: the run's evaluation length
    /// (`eval.max_new_tokens`, else `grpo.max_completion_length`, 128).
    #[arg(long, value_name = "M")]
    max_new_tokens: Option<usize>,
    /// Feed the prompt text exactly as it is: no chat template, no newline
    /// after it. Without it, a pretrained model's prompt goes through its
    /// chat template as the user's message, with the generation prompt and
    /// no system message (the template's default applies).
    #[arg(long)]
    raw: bool,
    /// Keep decoding past the end-of-sequence token, up to
    /// --max-new-tokens (for parity checks and benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object per sample: prompt, prompt_ids (the encoded
    /// prompt the model read), completion, token_ids, logprobs (per
    /// generated token, untempered), finish, and verdict when a task was
    /// given.
    #[arg(long)]
    json: bool,
    /// Seed of the sampling; the same seed gives the same samples.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// What the CPU decoder multiplies in: `float32` or `bfloat16` (faster
    /// where the CPU has AVX-512 bf16, log-probabilities about 1e-2 off).
    /// Default: the run's `run.decode_precision`, else float32.
    #[arg(long, value_name = "P")]
    decode_precision: Option<Precision>,
    /// `cpu`, `cuda` or `cuda:N`. Default: the run's device, else cpu.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
}

pub fn run(args: SampleArgs) -> Result<()> {
    if args.n == 0 {
        return Err(bad_input(anyhow!("--n must be at least 1")));
    }
    if !(args.temperature.is_finite() && args.temperature >= 0.0) {
        return Err(bad_input(anyhow!(
            "--temperature {}: must be a finite number >= 0",
            args.temperature
        )));
    }
    if args.max_new_tokens == Some(0) {
        return Err(bad_input(anyhow!("--max-new-tokens must be at least 1")));
    }
    let started = Instant::now();
    let checkpoint = open(&args.checkpoint, args.device.as_deref())?;
    let loaded = started.elapsed().as_secs_f64();
    let (prompts, per_prompt) = match (&args.task, &args.prompt) {
        (Some(task), _) => (problems(&checkpoint, task, args.level, args.n)?, 1),
        (None, Some(text)) => (vec![SamplePrompt::Text(text.clone())], args.n),
        (None, None) => return Err(bad_input(anyhow!("give --task NAME or --prompt TEXT"))),
    };
    warn_dropped(&checkpoint, prompts.iter().map(SamplePrompt::text))?;
    let run = checkpoint.eval_settings();
    let max_new_tokens = args.max_new_tokens.unwrap_or(run.max_new_tokens);
    let precision = args.decode_precision.unwrap_or(run.decode_precision);
    warn_if_emulated(precision);
    let mut sampling = checkpoint
        .model
        .sampling(args.temperature, 1.0, 0, max_new_tokens);
    if args.ignore_eos {
        sampling.stop_token_ids.clear();
    }
    let started = Instant::now();
    let samples = checkpoint
        .sample(
            &prompts,
            per_prompt,
            &sampling,
            args.raw,
            (args.seed, precision),
        )
        .map_err(into_anyhow)?;
    let seconds = started.elapsed().as_secs_f64();
    let tokens: usize = samples.iter().map(|s| s.generation.tokens.len()).sum();
    eprintln!(
        "{tokens} tokens in {seconds:.2} s ({:.1} tokens/s); model loaded in {loaded:.2} s",
        tokens as f64 / seconds.max(1e-9)
    );
    let total = samples.len();
    for (i, sample) in samples.iter().enumerate() {
        if args.json {
            println!("{}", serde_json::to_string(&json(i, sample))?);
        } else {
            print!("{}", text(i, total, sample));
        }
    }
    Ok(())
}

/// The first `n` held-out problems of `task` at `level` (default: the
/// run's level for the task, else 1).
fn problems(
    checkpoint: &Checkpoint,
    task: &str,
    level: Option<u32>,
    n: usize,
) -> Result<Vec<SamplePrompt>> {
    let levels = level.map(|l| vec![l]);
    let chosen = checkpoint
        .selection(&[task.to_string()], levels.as_deref())
        .map_err(into_anyhow)?;
    let level = match chosen.entries().first().map(|e| &e.source) {
        Some(tasks::Source::Family { level, .. }) => *level,
        _ => 1,
    };
    let set = tasks::heldout(task, level).map_err(|e| bad_input(anyhow::Error::new(e)))?;
    if n > set.len() {
        return Err(bad_input(anyhow!(
            "--n {n}: {task} level {level} holds out {} problems",
            set.len()
        )));
    }
    Ok(set[..n]
        .iter()
        .cloned()
        .map(SamplePrompt::Problem)
        .collect())
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// One sample for people to read.
fn text(index: usize, total: usize, sample: &Sample) -> String {
    let g = &sample.generation;
    let mut out = match &sample.prompt {
        SamplePrompt::Problem(p) => format!("== {} ({} of {total})\n", p.id, index + 1),
        SamplePrompt::Text(_) => format!("== sample {} of {total}\n", index + 1),
    };
    out.push_str(&format!("prompt: {}\n", sample.prompt.text()));
    out.push_str(&format!(
        "completion ({} tokens, {}):\n{}\n",
        g.tokens.len(),
        finish_name(g.finish),
        sample.completion
    ));
    if let (Some(v), SamplePrompt::Problem(p)) = (&sample.verdict, &sample.prompt) {
        out.push_str(&format!(
            "verdict: reward {:.3}, format {}, answer {}, expected {}: {}\n",
            v.reward,
            if v.format_ok { "ok" } else { "not followed" },
            v.extracted.as_deref().unwrap_or("(none)"),
            p.answer,
            v.reason
        ));
    }
    out.push('\n');
    out
}

/// One sample as a JSON object.
fn json(index: usize, sample: &Sample) -> serde_json::Value {
    let g = &sample.generation;
    let mut value = serde_json::json!({
        "index": index,
        "prompt": sample.prompt.text(),
        "prompt_ids": sample.prompt_ids,
        "completion": sample.completion,
        "token_ids": g.tokens,
        "logprobs": g.raw_logprobs,
        "finish": finish_name(g.finish),
    });
    if let (Some(map), SamplePrompt::Problem(p)) = (value.as_object_mut(), &sample.prompt) {
        map.insert("id".into(), p.id.clone().into());
        map.insert("task".into(), p.task.clone().into());
        map.insert("level".into(), p.level.into());
        map.insert("answer".into(), p.answer.clone().into());
        if let Some(verdict) = &sample.verdict {
            map.insert(
                "verdict".into(),
                serde_json::to_value(verdict).unwrap_or_default(),
            );
        }
    }
    value
}
