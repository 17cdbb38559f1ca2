//! A whole training run: the run folder, SFT, then GRPO, with held-out
//! evaluations and checkpoints between steps.
//!
//! Order of events: evaluate-and-stop checks during SFT; at the end of SFT
//! an evaluation (logged as the last SFT line and as GRPO step 0, the model
//! as SFT left it) and a checkpoint; GRPO steps with evaluations every
//! `eval.every` steps and checkpoints every `checkpoint.every` steps; a final
//! evaluation and checkpoint.
//!
//! [`resume`] continues a run from its newest complete checkpoint exactly
//! as if it had not stopped: weights, optimizer moments, the GRPO reference
//! model, step counters and data positions come from the checkpoint, every
//! random stream is named by its step, and the logs are cut back to their
//! lengths at the checkpoint. A run stops cleanly when its stop flag is set
//! ([`train_until`]): the step under way finishes, a checkpoint is written,
//! and the summary says `stopped`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{Device, Tensor};
use policy::{DeviceSpec, GenerationCache};
use tasks::{Mixture, Problem};

use crate::batch::Reference;
use crate::checkpoint::{
    latest_checkpoint, prune_checkpoints, write_checkpoint_with, TrainerState, OPTIMIZER_FILE,
    REFERENCE_FILE,
};
use crate::config::Config;
use crate::curriculum::{reachable_mixture, CurriculumState};
use crate::error::{Error, Result};
use crate::eval::{evaluate, render_table, EvalRecord, EvalSettings};
use crate::grpo::{grpo_step, GrpoContext, GrpoMetrics, StepPosition};
use crate::logs::{Jsonl, RunLogs, EVAL_FILE, METRICS_FILE};
use crate::model::{heldout_problems, Model};
use crate::optim::AdamW;
use crate::progress::{Live, Phase, Progress};
use crate::rewards::RewardShaping;
use crate::seeds::{rng_for, seed_for, Purpose};
use crate::sft::{sft_step, SftData, SftMetrics};

/// A step's line of metrics.jsonl, as the bookkeeping shared by both
/// phases sees it.
pub(crate) trait StepLine {
    /// Fills in the global step once the step is counted.
    fn set_global_step(&mut self, global_step: u64);
    /// Appends the line to metrics.jsonl.
    fn write_to(&self, log: &mut Jsonl) -> Result<()>;
    /// Puts its numbers on the live display.
    fn show(&self, live: &mut Live);
}

impl StepLine for SftMetrics {
    fn set_global_step(&mut self, global_step: u64) {
        self.global_step = global_step;
    }

    fn write_to(&self, log: &mut Jsonl) -> Result<()> {
        log.write(self)
    }

    fn show(&self, live: &mut Live) {
        live.loss = self.loss;
    }
}

impl StepLine for GrpoMetrics {
    fn set_global_step(&mut self, global_step: u64) {
        self.global_step = global_step;
    }

    fn write_to(&self, log: &mut Jsonl) -> Result<()> {
        log.write(self)
    }

    fn show(&self, live: &mut Live) {
        live.loss = self.loss;
        live.reward = Some(self.reward);
        live.accuracy = Some(self.accuracy);
    }
}

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
    /// The run stopped because its stop flag was set, after writing a
    /// checkpoint to resume from; it has not finished.
    pub stopped: bool,
}

impl RunSummary {
    /// Held-out greedy pass@1 when GRPO started (the model as SFT left it)
    /// and when it ended, on the tasks and levels of the first evaluation
    /// (a curriculum adds levels to later ones); `None` without a GRPO phase.
    pub fn grpo_gain(&self) -> Option<(f64, f64)> {
        let grpo: Vec<&EvalRecord> = self
            .evals
            .iter()
            .filter(|e| e.phase == Phase::Grpo)
            .collect();
        let first = grpo.first()?;
        let last = grpo.last()?;
        let (mut passed, mut problems) = (0.0, 0usize);
        for t in &first.tasks {
            let later = last
                .tasks
                .iter()
                .find(|l| l.task == t.task && l.level == t.level)?;
            passed += later.score.pass_at_1 * later.score.problems as f64;
            problems += later.score.problems;
        }
        let after = match problems {
            0 => last.overall.pass_at_1,
            n => passed / n as f64,
        };
        Some((first.overall.pass_at_1, after))
    }
}

/// Trains as `config` says, reporting to `progress`, and returns a summary.
///
/// Sets the tensor thread count first (`run.threads`), so call it before any
/// other tensor work in the process; sets the calling thread's matrix
/// product precision (`run.matmul_precision`) too.
pub fn train(config: &Config, progress: &mut dyn Progress) -> Result<RunSummary> {
    train_until(config, progress, &AtomicBool::new(false))
}

/// [`train`], stopping cleanly once `stop` is set (checked between steps):
/// the step under way finishes, a checkpoint is written, and the summary
/// says `stopped`. [`resume`] continues such a run.
pub fn train_until(
    config: &Config,
    progress: &mut dyn Progress,
    stop: &AtomicBool,
) -> Result<RunSummary> {
    let start = Instant::now();
    set_threads(config.run.threads);
    policy::set_matmul_precision(config.run.matmul_precision);
    let run_dir = create_run_dir(config)?;
    let (device, mixture) = device_and_mixture(config)?;
    let model = Model::from_config(config, &alphabet_mixture(config, &mixture)?, &device)?;
    let mut state = TrainerState::new(config.run.seed, model.prompting.clone());
    if config.curriculum.enabled {
        state.curriculum = Some(CurriculumState::start(&mixture));
    }
    let logs = RunLogs::open(&run_dir)?;
    let run = Run::new(config, model, mixture, state, logs, run_dir, stop, progress)?;
    run.train(progress, start)
}

/// Continues the run in `config.run_dir()` (see [`Config::for_resume`])
/// from its newest checkpoint that is complete and passes its checksums;
/// newer ones that do not are reported through `progress` and skipped. The
/// resumed run continues exactly as the uninterrupted one would have, as
/// long as the config's keys and the thread count are unchanged. Stops
/// cleanly when `stop` is set, like [`train_until`].
pub fn resume(
    config: &Config,
    progress: &mut dyn Progress,
    stop: &AtomicBool,
) -> Result<RunSummary> {
    let start = Instant::now();
    set_threads(config.run.threads);
    policy::set_matmul_precision(config.run.matmul_precision);
    let run_dir = config.run_dir();
    let found = latest_checkpoint(&run_dir, &mut |dir, e| {
        progress.message(&format!(
            "warning: skipping checkpoint {}: {e}",
            dir.display()
        ))
    })?;
    let Some((checkpoint, mut state)) = found else {
        return Err(Error::invalid(
            "--resume",
            format!(
                "{} has no complete checkpoint to resume from: start the run again with --config FILE under a new name",
                run_dir.display()
            ),
        ));
    };
    reopen_extended_phases(&mut state, config);
    let (device, mixture) = device_and_mixture(config)?;
    if config.curriculum.enabled && state.curriculum.is_none() {
        state.curriculum = Some(CurriculumState::start(&mixture));
    }
    let model = Model::load(&checkpoint, state.prompting.clone(), &device)?;
    let path = run_dir.join(CONFIG_FILE);
    std::fs::write(&path, config.to_toml()).map_err(|e| Error::io(&path, e))?;
    let logs = RunLogs::resume(&run_dir, &state.logs)?;
    progress.message(&format!(
        "resuming {} from {} (step {})",
        config.run.name,
        checkpoint.display(),
        state.global_step
    ));
    let mut run = Run::new(config, model, mixture, state, logs, run_dir, stop, progress)?;
    run.evals = read_evals(&run.run_dir.join(EVAL_FILE))?;
    run.checkpointed_at = Some(run.state.global_step);
    run.resume_from = Some(checkpoint);
    run.train(progress, start)
}

/// A phase that had ended continues when resumed with more `steps`: GRPO
/// always, SFT only before GRPO has started and unless it stopped early.
fn reopen_extended_phases(state: &mut TrainerState, config: &Config) {
    if state.grpo.finished && config.grpo.steps > state.grpo.steps_done {
        state.grpo.finished = false;
    }
    let sft = &mut state.sft;
    let grpo_started = state.grpo.steps_done > 0;
    if sft.finished && !sft.stopped_early && !grpo_started && config.sft.steps > sft.steps_done {
        sft.finished = false;
    }
}

/// Every problem source a run may draw from: the mixture, the levels its
/// curriculum may reach and SFT's own mixture. A scratch tokenizer's
/// alphabet covers them all.
fn alphabet_mixture(config: &Config, mixture: &Mixture) -> Result<Mixture> {
    let mut entries = match config.curriculum.enabled {
        true => reachable_mixture(&config.curriculum, mixture)?
            .entries()
            .to_vec(),
        false => mixture.entries().to_vec(),
    };
    if !config.sft.mixture.is_empty() {
        entries.extend(sft_mixture(config, mixture)?.entries().iter().cloned());
    }
    Ok(Mixture::new(entries)?)
}

/// What SFT trains on: `sft.mixture`, or the run's mixture when it is empty.
fn sft_mixture(config: &Config, mixture: &Mixture) -> Result<Mixture> {
    if config.sft.mixture.is_empty() {
        return Ok(mixture.clone());
    }
    Mixture::from_specs(&config.sft.mixture, Path::new("."))
        .map_err(|e| Error::invalid("sft.mixture", e.to_string()))
}

/// The device and task mixture a config names.
fn device_and_mixture(config: &Config) -> Result<(Device, Mixture)> {
    let device = config
        .run
        .device
        .open()
        .map_err(|e| Error::invalid("run.device", e.to_string()))?;
    let mixture = Mixture::from_specs(&config.tasks.mixture, Path::new("."))
        .map_err(|e| Error::invalid("tasks.mixture", e.to_string()))?;
    Ok((device, mixture))
}

/// The evaluations logged so far.
fn read_evals(path: &Path) -> Result<Vec<EvalRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map_err(|e| Error::bad_file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
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
    /// What SFT trains on (`sft.mixture`, else `mixture`).
    sft_mixture: Mixture,
    state: TrainerState,
    logs: RunLogs,
    run_dir: PathBuf,
    evals: Vec<EvalRecord>,
    last_checkpoint: Option<PathBuf>,
    live: Live,
    /// Set from outside (Ctrl-C) to stop after the current step.
    stop: &'a AtomicBool,
    /// The run stopped on `stop` and has not finished.
    stopped: bool,
    /// The checkpoint a resumed run started from.
    resume_from: Option<PathBuf>,
    /// Global step of the latest checkpoint written or resumed from.
    checkpointed_at: Option<u64>,
    /// Steps in a row whose loss or gradient was not finite.
    nonfinite_in_row: u64,
    /// Weights of the frozen GRPO reference model, saved with checkpoints.
    reference: Option<HashMap<String, Tensor>>,
    /// Family levels the held-out problems cover (with a curriculum).
    heldout_levels: Option<usize>,
}

impl<'a> Run<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        config: &'a Config,
        model: Model,
        mixture: Mixture,
        state: TrainerState,
        logs: RunLogs,
        run_dir: PathBuf,
        stop: &'a AtomicBool,
        progress: &mut dyn Progress,
    ) -> Result<Self> {
        progress.message(&format!(
            "{}: {} parameters, vocabulary {}, {} threads, run folder {}",
            config.run.name,
            model.policy.config.num_parameters(),
            model.tokenizer.vocab_size(),
            config.run.threads,
            run_dir.display()
        ));
        // The reference's precision matters only where there is a reference.
        let precisions = [
            (
                "run.decode_precision",
                config.run.decode_precision,
                "decoding",
                true,
            ),
            (
                "grpo.reference_precision",
                config.grpo.reference_precision,
                "reference scoring",
                config.grpo.beta > 0.0,
            ),
            (
                "run.matmul_precision",
                config.run.matmul_precision,
                "training's matrix products",
                true,
            ),
        ];
        for (key, precision, what, used) in precisions {
            if used && config.run.device == DeviceSpec::Cpu && !precision.is_native() {
                progress.message(&format!(
                    "warning: {key} = \"{precision}\": this CPU has no AVX-512 bf16 \
                     dot products, so {what} emulates them, slower than float32"
                ));
            }
        }
        Ok(Run {
            config,
            heldout: heldout_problems(&mixture, config.eval.problems)?,
            sft_mixture: sft_mixture(config, &mixture)?,
            state,
            logs,
            mixture,
            model,
            run_dir,
            evals: Vec::new(),
            last_checkpoint: None,
            live: Live::default(),
            stop,
            stopped: false,
            resume_from: None,
            checkpointed_at: None,
            nonfinite_in_row: 0,
            reference: None,
            heldout_levels: None,
        })
    }

    /// Both phases, from wherever the state stands.
    fn train(mut self, progress: &mut dyn Progress, start: Instant) -> Result<RunSummary> {
        let sft_optimizer = self.sft_phase(progress)?;
        if !self.stopped {
            self.grpo_phase(sft_optimizer, progress)?;
        }
        progress.logs_updated(&self.run_dir);
        Ok(RunSummary {
            run_dir: self.run_dir,
            state: self.state,
            evals: self.evals,
            last_checkpoint: self.last_checkpoint,
            seconds: start.elapsed().as_secs_f64(),
            stopped: self.stopped,
        })
    }

    /// The SFT phase; returns its optimizer for GRPO to continue with.
    fn sft_phase(&mut self, progress: &mut dyn Progress) -> Result<Option<AdamW>> {
        let cfg = &self.config.sft;
        if cfg.steps == 0 || self.state.sft.finished {
            return Ok(None);
        }
        let mut optimizer = self.optimizer(self.state.sft.steps_done > 0)?;
        let data_seed = seed_for(self.config.run.seed, Purpose::SftData, 0);
        progress.phase_started(Phase::Sft, self.state.sft.steps_done, cfg.steps);
        while self.state.sft.steps_done < cfg.steps {
            let data = SftData {
                mixture: &self.sft_mixture,
                seed: data_seed,
                first: self.state.sft.data_cursor,
            };
            let max_grad_norm = self.config.optimizer.max_grad_norm;
            let step = self.state.sft.steps_done;
            let mut line = sft_step(&self.model, &mut optimizer, cfg, max_grad_norm, &data, step)?;
            let done =
                self.record_step(Phase::Sft, 1, cfg.batch_size as u64, &mut line, progress)?;
            self.count_nonfinite(line.skipped, &optimizer, progress)?;
            if cfg.stop_at_pass_at_1 > 0.0
                && done.is_multiple_of(cfg.check_every)
                && done < cfg.steps
            {
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
            if self.between_steps(done, cfg.steps, &optimizer, progress)? {
                return Ok(None);
            }
        }
        self.finish_phase(Phase::Sft, &optimizer, progress)?;
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
            // Resuming: the checkpoint's moments, unless they are SFT's and
            // GRPO starts fresh.
            _ => {
                let continues_sft = !cfg.fresh_optimizer && self.state.sft.steps_done > 0;
                self.optimizer(self.state.grpo.steps_done > 0 || continues_sft)?
            }
        };
        let reference = self.reference_model()?;
        if self.state.grpo.steps_done == 0 {
            self.baseline_eval(progress)?;
        }
        progress.phase_started(Phase::Grpo, self.state.grpo.steps_done, cfg.steps);
        while self.state.grpo.steps_done < cfg.steps {
            let (mixture, levels) = match &self.state.curriculum {
                Some(c) => (c.mixture(&self.mixture)?, c.metrics()),
                None => (self.mixture.clone(), BTreeMap::new()),
            };
            let ctx = GrpoContext {
                model: &self.model,
                reference: reference.as_ref(),
                mixture: &mixture,
                cfg,
                max_grad_norm: self.config.optimizer.max_grad_norm,
                shaping: RewardShaping::from_config(cfg),
                run_seed: self.config.run.seed,
                decode_precision: self.config.run.decode_precision,
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
            out.metrics.curriculum = levels;
            if let Some(c) = &mut self.state.curriculum {
                for change in c.observe(&self.config.curriculum, &out.groups_seen)? {
                    progress.message(&change.to_string());
                }
            }
            let updates = cfg.num_iterations as u64;
            let done = self.record_step(
                Phase::Grpo,
                updates,
                out.prompts_drawn,
                &mut out.metrics,
                progress,
            )?;
            for sample in &out.samples {
                self.logs.samples.write(sample)?;
            }
            self.count_nonfinite(out.metrics.skipped, &optimizer, progress)?;
            if self.due(self.config.eval.every, done, cfg.steps) {
                self.evaluate(Phase::Grpo, done, true, progress)?;
            }
            if self.between_steps(done, cfg.steps, &optimizer, progress)? {
                return Ok(());
            }
        }
        self.finish_phase(Phase::Grpo, &optimizer, progress)
    }

    /// The bookkeeping of a finished step, the same in both phases: the
    /// phase's counters and the global step move on, the metrics line is
    /// written and shown. Returns the steps of the phase done.
    fn record_step(
        &mut self,
        phase: Phase,
        updates: u64,
        drawn: u64,
        line: &mut dyn StepLine,
        progress: &mut dyn Progress,
    ) -> Result<u64> {
        let p = match phase {
            Phase::Sft => &mut self.state.sft,
            Phase::Grpo => &mut self.state.grpo,
        };
        p.steps_done += 1;
        p.updates_done += updates;
        p.data_cursor += drawn;
        let done = p.steps_done;
        self.state.phase = phase;
        self.state.global_step += updates;
        line.set_global_step(self.state.global_step);
        line.write_to(&mut self.logs.metrics)?;
        line.show(&mut self.live);
        progress.step_finished(phase, done, &self.live);
        Ok(done)
    }

    /// After a step's evaluations: a checkpoint when one is due, and the
    /// stop flag. True when the run stops here.
    fn between_steps(
        &mut self,
        done: u64,
        total: u64,
        optimizer: &AdamW,
        progress: &mut dyn Progress,
    ) -> Result<bool> {
        if self.due(self.config.checkpoint.every, done, total) {
            self.checkpoint(optimizer, progress)?;
        }
        self.stop_now(optimizer, progress)
    }

    /// The end of a phase: marked finished, evaluated and checkpointed.
    fn finish_phase(
        &mut self,
        phase: Phase,
        optimizer: &AdamW,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let p = match phase {
            Phase::Sft => &mut self.state.sft,
            Phase::Grpo => &mut self.state.grpo,
        };
        p.finished = true;
        let done = p.steps_done;
        progress.phase_finished(phase);
        self.evaluate(phase, done, true, progress)?;
        self.checkpoint(optimizer, progress)
    }

    /// An AdamW with the run's settings: fresh, or with the moments of the
    /// checkpoint being resumed when `from_checkpoint`.
    fn optimizer(&self, from_checkpoint: bool) -> Result<AdamW> {
        let mut optimizer = self
            .config
            .optimizer
            .adamw()
            .init(&self.model.policy.varmap)?;
        if let (Some(dir), true) = (&self.resume_from, from_checkpoint) {
            optimizer.load(&dir.join(OPTIMIZER_FILE))?;
        }
        Ok(optimizer)
    }

    /// The frozen reference of the KL penalty (`grpo.beta > 0`): the model as
    /// GRPO found it, kept in memory and in every GRPO checkpoint.
    fn reference_model(&mut self) -> Result<Option<Reference>> {
        if self.config.grpo.beta == 0.0 {
            return Ok(None);
        }
        let policy = &self.model.policy;
        let weights = match &self.resume_from {
            Some(dir) if self.state.grpo.steps_done > 0 => {
                let path = dir.join(REFERENCE_FILE);
                candle_core::safetensors::load(&path, policy.device())
                    .map_err(|e| Error::bad_file(&path, e.to_string()))?
            }
            _ => policy
                .named_vars()
                .into_iter()
                .map(|(name, var)| Ok((name, var.as_tensor().detach().copy()?)))
                .collect::<Result<HashMap<_, _>>>()?,
        };
        let vb =
            candle_nn::VarBuilder::from_tensors(weights.clone(), policy.dtype(), policy.device());
        let model = policy::Transformer::new(&policy.config, vb)?;
        self.reference = Some(weights);
        let packed = GenerationCache::with_precision(self.config.grpo.reference_precision);
        let pad = self.model.pad_id();
        Ok(Some(Reference { model, packed, pad }))
    }

    /// Counts steps whose loss or gradient was not finite (they made no
    /// update); `run.max_nonfinite_steps` in a row end the run with a
    /// checkpoint of the last good weights.
    fn count_nonfinite(
        &mut self,
        skipped: bool,
        optimizer: &AdamW,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        if !skipped {
            self.nonfinite_in_row = 0;
            return Ok(());
        }
        self.nonfinite_in_row += 1;
        progress.message(&format!(
            "warning: step {} skipped: its loss or gradient is NaN or infinite",
            self.state.global_step
        ));
        let limit = self.config.run.max_nonfinite_steps;
        if limit == 0 || self.nonfinite_in_row < limit {
            return Ok(());
        }
        self.checkpoint(optimizer, progress)?;
        let dir = self.last_checkpoint.clone().unwrap_or_default();
        Err(Error::Diverged {
            message: format!(
                "training diverged: {} steps in a row had a NaN or infinite loss or gradient (up to global step {}); checkpoint {} holds the last good weights: lower the learning rate or max_grad_norm and start a new run",
                self.nonfinite_in_row,
                self.state.global_step,
                dir.display()
            ),
        })
    }

    /// After a step: when the stop flag is set, writes a checkpoint (unless
    /// this step already has one) and marks the run stopped.
    fn stop_now(&mut self, optimizer: &AdamW, progress: &mut dyn Progress) -> Result<bool> {
        if !self.stop.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if self.checkpointed_at != Some(self.state.global_step) {
            self.checkpoint(optimizer, progress)?;
        }
        self.stopped = true;
        Ok(true)
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
                progress.logs_updated(&self.run_dir);
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
        every > 0 && done.is_multiple_of(every) && done < total
    }

    fn eval_settings(&self, with_samples: bool) -> EvalSettings {
        let e = &self.config.eval;
        EvalSettings {
            samples: if with_samples { e.samples } else { 0 },
            k: e.k,
            temperature: e.temperature,
            max_new_tokens: self.config.eval_max_new_tokens(),
            batch_size: e.batch_size,
            decode_precision: self.config.run.decode_precision,
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
        self.cover_visited_levels()?;
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
        progress.logs_updated(&self.run_dir);
        self.live.pass_at_1 = Some(record.overall.pass_at_1);
        self.evals.push(record.clone());
        Ok(record)
    }

    /// With a curriculum, the held-out problems of every family level
    /// trained at so far: the configured entries first, then the others.
    fn cover_visited_levels(&mut self) -> Result<()> {
        let Some(c) = &self.state.curriculum else {
            return Ok(());
        };
        let visited = c.visited_count();
        if self.heldout_levels != Some(visited) {
            let mixture = c.visited_mixture(&self.mixture)?;
            self.heldout = heldout_problems(&mixture, self.config.eval.problems)?;
            self.heldout_levels = Some(visited);
        }
        Ok(())
    }

    /// Writes checkpoint `step-{global_step}` with the logs' lengths, then
    /// deletes all but the newest `checkpoint.keep_last`.
    fn checkpoint(&mut self, optimizer: &AdamW, progress: &mut dyn Progress) -> Result<()> {
        self.state.logs = self.logs.positions();
        let dir = write_checkpoint_with(
            &self.run_dir,
            &self.state,
            &self.model,
            optimizer,
            self.reference.as_ref(),
        )?;
        progress.message(&format!("checkpoint {}", dir.display()));
        prune_checkpoints(&self.run_dir, self.config.checkpoint.keep_last)?;
        self.last_checkpoint = Some(dir);
        self.checkpointed_at = Some(self.state.global_step);
        Ok(())
    }
}
