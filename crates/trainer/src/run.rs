//! A whole training run: the run folder, SFT, then GRPO, with held-out
//! evaluations and checkpoints between steps.
//!
//! Order of events: evaluate-and-stop checks during SFT; at the end of SFT
//! an evaluation (logged as the last SFT line and as GRPO step 0, the model
//! as SFT left it) and a checkpoint; GRPO steps with evaluations every
//! `eval.every` steps and checkpoints every `checkpoint.every` steps; a final
//! evaluation and checkpoint.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tasks::{Mixture, Problem};

use crate::checkpoint::{write_checkpoint, TrainerState};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::eval::{evaluate, render_table, EvalRecord, EvalSettings};
use crate::grpo::{grpo_step, GrpoContext, StepPosition};
use crate::logs::{RunLogs, METRICS_FILE};
use crate::model::{heldout_problems, Model};
use crate::optim::AdamW;
use crate::progress::{Live, Phase, Progress};
use crate::rewards::RewardShaping;
use crate::seeds::{rng_for, seed_for, Purpose};
use crate::sft::{sft_step, SftData};

/// The resolved config inside the run folder.
pub const CONFIG_FILE: &str = "config.toml";

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// OUT_DIR/NAME.
    pub run_dir: PathBuf,
    /// Where the run stands at the end.
    pub state: TrainerState,
    /// Every evaluation, in order.
    pub evals: Vec<EvalRecord>,
    /// The last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

impl RunSummary {
    /// Held-out greedy pass@1 when GRPO started (the model as SFT left it)
    /// and when it ended; `None` without a GRPO phase.
    pub fn grpo_gain(&self) -> Option<(f64, f64)> {
        let grpo: Vec<&EvalRecord> = self
            .evals
            .iter()
            .filter(|e| e.phase == Phase::Grpo)
            .collect();
        let first = grpo.first()?;
        let last = grpo.last()?;
        Some((first.overall.pass_at_1, last.overall.pass_at_1))
    }
}

/// Trains as `config` says, reporting to `progress`, and returns a summary.
///
/// Sets the tensor thread count first (`run.threads`), so call it before any
/// other tensor work in the process.
pub fn train(config: &Config, progress: &mut dyn Progress) -> Result<RunSummary> {
    let start = Instant::now();
    set_threads(config.run.threads);
    let run_dir = create_run_dir(config)?;
    let device = policy::parse_device(&config.run.device)
        .map_err(|e| Error::invalid("run.device", e.to_string()))?;
    let mixture = Mixture::from_specs(&config.tasks.mixture, Path::new("."))
        .map_err(|e| Error::invalid("tasks.mixture", e.to_string()))?;
    let model = Model::from_config(config, &mixture, &device)?;
    progress.message(&format!(
        "{}: {} parameters, vocabulary {}, {} threads, run folder {}",
        config.run.name,
        model.policy.config.num_parameters(),
        model.tokenizer.vocab_size(),
        config.run.threads,
        run_dir.display()
    ));
    let mut run = Run {
        config,
        heldout: heldout_problems(&mixture, config.eval.problems)?,
        state: TrainerState::new(config.run.seed, model.prompting.clone()),
        logs: RunLogs::open(&run_dir)?,
        mixture,
        model,
        run_dir,
        evals: Vec::new(),
        last_checkpoint: None,
        live: Live::default(),
    };
    let sft_optimizer = run.sft_phase(progress)?;
    run.grpo_phase(sft_optimizer, progress)?;
    Ok(RunSummary {
        run_dir: run.run_dir,
        state: run.state,
        evals: run.evals,
        last_checkpoint: run.last_checkpoint,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Tells candle and rayon how many threads to use. Both read these
/// variables when their pools start, which is why this runs first.
fn set_threads(threads: usize) {
    let n = threads.max(1).to_string();
    std::env::set_var("RAYON_NUM_THREADS", &n);
    std::env::set_var("CANDLE_NUM_THREADS", &n);
}

/// Creates OUT_DIR/NAME and writes the resolved config into it. A folder
/// that already holds training logs or checkpoints is not overwritten.
fn create_run_dir(config: &Config) -> Result<PathBuf> {
    let dir = config.run_dir();
    let used =
        dir.join(METRICS_FILE).is_file() || dir.join(crate::checkpoint::CHECKPOINTS_DIR).exists();
    if used {
        return Err(Error::invalid(
            "run.name",
            format!(
                "{} already holds a run: pick another name (--set run.name=NAME) or remove the folder",
                dir.display()
            ),
        ));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(CONFIG_FILE);
    std::fs::write(&path, config.to_toml()).map_err(|e| Error::io(&path, e))?;
    Ok(dir)
}

/// Everything a run carries between its steps.
struct Run<'a> {
    config: &'a Config,
    model: Model,
    mixture: Mixture,
    heldout: Vec<Problem>,
    state: TrainerState,
    logs: RunLogs,
    run_dir: PathBuf,
    evals: Vec<EvalRecord>,
    last_checkpoint: Option<PathBuf>,
    live: Live,
}

impl Run<'_> {
    /// The SFT phase; returns its optimizer for GRPO to continue with.
    fn sft_phase(&mut self, progress: &mut dyn Progress) -> Result<Option<AdamW>> {
        let cfg = &self.config.sft;
        if cfg.steps == 0 || self.state.sft.finished {
            return Ok(None);
        }
        let mut optimizer = cfg.adamw().init(&self.model.policy.varmap)?;
        let data_seed = seed_for(self.config.run.seed, Purpose::SftData, 0);
        progress.phase_started(Phase::Sft, self.state.sft.steps_done, cfg.steps);
        while self.state.sft.steps_done < cfg.steps {
            let step = self.state.sft.steps_done;
            let data = SftData {
                mixture: &self.mixture,
                seed: data_seed,
                first: self.state.sft.data_cursor,
            };
            let mut metrics = sft_step(&self.model, &mut optimizer, cfg, &data, step)?;
            let p = &mut self.state.sft;
            p.steps_done += 1;
            p.updates_done += 1;
            p.data_cursor += cfg.batch_size as u64;
            self.state.phase = Phase::Sft;
            self.state.global_step += 1;
            metrics.global_step = self.state.global_step;
            self.logs.metrics.write(&metrics)?;
            self.live.loss = metrics.loss;
            let done = self.state.sft.steps_done;
            progress.step_finished(Phase::Sft, done, &self.live);
            if cfg.stop_at_pass_at_1 > 0.0 && done % cfg.check_every == 0 && done < cfg.steps {
                let check = self.evaluate(Phase::Sft, done, false, progress)?;
                if check.overall.pass_at_1 >= cfg.stop_at_pass_at_1 {
                    self.state.sft.stopped_early = true;
                    progress.message(&format!(
                        "SFT stopped at step {done}: held-out pass@1 {:.3} reached {:.3}",
                        check.overall.pass_at_1, cfg.stop_at_pass_at_1
                    ));
                    break;
                }
            }
            if self.due(self.config.checkpoint.every, done, cfg.steps) {
                self.checkpoint(&optimizer, progress)?;
            }
        }
        self.state.sft.finished = true;
        progress.phase_finished(Phase::Sft);
        let done = self.state.sft.steps_done;
        self.evaluate(Phase::Sft, done, true, progress)?;
        self.checkpoint(&optimizer, progress)?;
        Ok(Some(optimizer))
    }

    /// The GRPO phase, continuing from SFT's optimizer unless
    /// `grpo.fresh_optimizer`.
    fn grpo_phase(
        &mut self,
        sft_optimizer: Option<AdamW>,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let cfg = &self.config.grpo;
        if cfg.steps == 0 || self.state.grpo.finished {
            return Ok(());
        }
        let mut optimizer = match sft_optimizer {
            Some(optimizer) if !cfg.fresh_optimizer => optimizer,
            _ => cfg.adamw().init(&self.model.policy.varmap)?,
        };
        let reference = if cfg.beta != 0.0 {
            Some(self.model.policy.frozen()?)
        } else {
            None
        };
        if self.state.grpo.steps_done == 0 {
            self.baseline_eval(progress)?;
        }
        progress.phase_started(Phase::Grpo, self.state.grpo.steps_done, cfg.steps);
        while self.state.grpo.steps_done < cfg.steps {
            let ctx = GrpoContext {
                model: &self.model,
                reference: reference.as_ref(),
                mixture: &self.mixture,
                cfg,
                shaping: RewardShaping::from_config(cfg),
                run_seed: self.config.run.seed,
                data_seed: seed_for(self.config.run.seed, Purpose::GrpoData, 0),
                samples_per_step: self.config.log.samples_per_step,
            };
            let p = self.state.grpo;
            let at = StepPosition {
                step: p.steps_done,
                cursor: p.data_cursor,
                updates: p.updates_done,
            };
            let mut out = grpo_step(&ctx, &mut optimizer, at)?;
            let p = &mut self.state.grpo;
            p.steps_done += 1;
            p.updates_done += cfg.num_iterations as u64;
            p.data_cursor += out.prompts_drawn;
            self.state.phase = Phase::Grpo;
            self.state.global_step += cfg.num_iterations as u64;
            out.metrics.global_step = self.state.global_step;
            self.logs.metrics.write(&out.metrics)?;
            for sample in &out.samples {
                self.logs.samples.write(sample)?;
            }
            self.live.loss = out.metrics.loss;
            self.live.reward = Some(out.metrics.reward);
            self.live.accuracy = Some(out.metrics.accuracy);
            let done = self.state.grpo.steps_done;
            progress.step_finished(Phase::Grpo, done, &self.live);
            if self.due(self.config.eval.every, done, cfg.steps) {
                self.evaluate(Phase::Grpo, done, true, progress)?;
            }
            if self.due(self.config.checkpoint.every, done, cfg.steps) {
                self.checkpoint(&optimizer, progress)?;
            }
        }
        self.state.grpo.finished = true;
        progress.phase_finished(Phase::Grpo);
        let done = self.state.grpo.steps_done;
        self.evaluate(Phase::Grpo, done, true, progress)?;
        self.checkpoint(&optimizer, progress)
    }

    /// GRPO step 0: the model as SFT left it. SFT's closing evaluation
    /// measured exactly this model, so it is logged again rather than rerun.
    fn baseline_eval(&mut self, progress: &mut dyn Progress) -> Result<()> {
        let sft_end = self
            .evals
            .last()
            .filter(|e| {
                e.phase == Phase::Sft
                    && e.k == self.eval_settings(true).recorded_k()
                    && e.global_step == self.state.global_step
            })
            .cloned();
        match sft_end {
            Some(mut record) => {
                record.phase = Phase::Grpo;
                record.step = 0;
                self.logs.eval.write(&record)?;
                self.evals.push(record);
            }
            None => {
                self.evaluate(Phase::Grpo, 0, true, progress)?;
            }
        }
        Ok(())
    }

    /// True when a phase at `done` of `total` steps is due for something
    /// that happens every `every` steps (the phase end has its own).
    fn due(&self, every: u64, done: u64, total: u64) -> bool {
        every > 0 && done % every == 0 && done < total
    }

    fn eval_settings(&self, with_samples: bool) -> EvalSettings {
        let e = &self.config.eval;
        EvalSettings {
            samples: if with_samples { e.samples } else { 0 },
            k: e.k,
            temperature: e.temperature,
            max_new_tokens: self.config.eval_max_new_tokens(),
            batch_size: e.batch_size,
        }
    }

    /// Evaluates on the held-out problems, logs and shows the result.
    /// `with_samples` adds sampled pass@k to greedy pass@1.
    fn evaluate(
        &mut self,
        phase: Phase,
        step: u64,
        with_samples: bool,
        progress: &mut dyn Progress,
    ) -> Result<EvalRecord> {
        let settings = self.eval_settings(with_samples);
        let mut rng = rng_for(
            self.config.run.seed,
            Purpose::EvalSampling,
            self.state.global_step,
        );
        let record = evaluate(
            &self.model,
            &self.heldout,
            &settings,
            &mut rng,
            phase,
            step,
            self.state.global_step,
        )?;
        self.logs.eval.write(&record)?;
        progress.message(render_table(&record).trim_end());
        self.live.pass_at_1 = Some(record.overall.pass_at_1);
        self.evals.push(record.clone());
        Ok(record)
    }

    fn checkpoint(&mut self, optimizer: &AdamW, progress: &mut dyn Progress) -> Result<()> {
        let dir = write_checkpoint(&self.run_dir, &self.state, &self.model, optimizer)?;
        progress.message(&format!("checkpoint {}", dir.display()));
        self.last_checkpoint = Some(dir);
        Ok(())
    }
}
