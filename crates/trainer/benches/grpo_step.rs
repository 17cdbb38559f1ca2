//! The GRPO step and one training pass, at the shapes the Python peer
//! (`../shared/bench/trl_baseline.py`, TRL's GRPOTrainer on PyTorch)
//! measures, with the same phase split, so the two can stand side by side.
//!
//! - **train pass**: one update of completion log-probs, the on-policy GRPO
//!   loss (`dapo`), backward, global-norm clipping at 1.0 and AdamW (lr
//!   1e-5), over random rows: bench-tiny 64 x (16 + 64) tokens, bench-small
//!   8 x (16 + 32). Built from the trainer's own pieces (policy log-probs,
//!   [`trainer::grpo_loss`], [`trainer::AdamW`]).
//! - **GRPO step**: a real `verity train` run ([`trainer::train`]) of GRPO
//!   only, bench-tiny 8 prompts x 8 samples x 64 completion tokens,
//!   bench-small 2 x 4 x 32, each at beta 0 and 0.04, one micro-batch, lr
//!   1e-5, on the peer's 16-token prompts (`Q: 12+34 = ? A:` and the plain
//!   format's newline, through the peer's character tokenizer); and at
//!   bench-small the step of a chat fine-tune, 4 prompts of 40 tokens x 8
//!   samples x 60 tokens (with its peak resident memory). The
//!   medians of the steps after the first two come from metrics.jsonl, split
//!   as the peer splits them: generation, reference, loss forward, backward,
//!   optimizer. Every completion runs to full length, as the peer's
//!   `min_new_tokens` makes them: the benchmark's tokenizer names as its
//!   end-of-sequence token an id past the model's vocabulary, which the
//!   model never samples. The reward (the verifier's) is 0 for these random
//!   models, so advantages are 0; the work per step is the same.
//!
//! The header measures what bounds all of it on this machine: f32 GEMM at
//! 2048^3 and memory bandwidth. Each figure is followed by its floor at
//! those rates (6 x parameters x tokens at the GEMM rate; the optimizer's
//! bytes at the memory rate), the ceiling the machine sets. Beside it, the
//! time of the pass's (or step's) own matrix products at their shapes,
//! timed inside it ([`policy::ProductTally`]), and what that leaves the
//! rest of the work at the target ratio.
//!
//! `cargo bench -p verity-trainer --bench grpo_step`. Environment:
//! `VERITY_BENCH_ONLY` (comma list of `tiny`, `small`, `train`, `grpo`,
//! `peer` (the GRPO steps at the peer's shapes), `chat` (the chat step);
//! naming neither of a pair means both, and `peer` or `chat` imply `grpo`),
//! `VERITY_BENCH_REPS` (train-pass repetitions, default 5),
//! `VERITY_BENCH_THREADS` (default 2, the peer's), `VERITY_PEER_JSON` (the
//! peer's results file, default `../shared/bench/results-trl-cpu.json`:
//! when present, its figures and the ratios are printed alongside),
//! `VERITY_BENCH_DECODE` (`run.decode_precision` of the GRPO steps, default
//! `float32` as the peer; `bfloat16` rollouts have a ceiling with the
//! sampling forward at twice the GEMM rate), `VERITY_BENCH_REFERENCE`
//! (`grpo.reference_precision`, default the same as the rollouts'),
//! `VERITY_BENCH_MATMUL` (`run.matmul_precision` of the training pass and
//! the GRPO steps, default `float32` as the peer; in `bfloat16` the
//! update's products have a ceiling at twice the GEMM rate).

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use policy::{completion_logprobs, Architecture, ModelConfig, Policy, Precision, ProductTally};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::Value;
use trainer::{grpo_loss, Accumulation, AdamWConfig, Config, LossConfig, LossInputs};

/// One of the peer's model shapes and its workloads.
struct Shape {
    name: &'static str,
    config: ModelConfig,
    /// Train pass: rows, prompt and completion tokens.
    train: (usize, usize, usize),
    /// The GRPO steps measured.
    grpo: Vec<GrpoCase>,
    /// The GRPO step's speed-up over the peer that verity aims for.
    target_ratio: f64,
    /// The training pass's.
    train_target_ratio: f64,
}

/// One GRPO workload.
#[derive(Clone, Copy)]
struct GrpoCase {
    /// `peer` (the peer's shapes, compared with it) or `chat`.
    kind: &'static str,
    prompts: usize,
    group: usize,
    completion: usize,
    prompt_tokens: usize,
    /// Steps run, and how many of the first are left out of the medians.
    steps: usize,
    discard: usize,
    betas: &'static [f64],
}

fn shapes() -> Vec<Shape> {
    let llama = |vocab, hidden, inter, layers, heads, kv| {
        let mut cfg =
            ModelConfig::new(Architecture::Llama, vocab, hidden, inter, layers, heads, kv);
        cfg.rope_theta = 10_000.0;
        cfg.rms_norm_eps = 1e-6;
        cfg.tie_word_embeddings = true;
        cfg.max_position_embeddings = 512;
        cfg
    };
    vec![
        Shape {
            name: "bench-tiny",
            config: llama(99, 256, 704, 4, 8, 4),
            train: (64, 16, 64),
            grpo: vec![GrpoCase {
                kind: "peer",
                prompts: 8,
                group: 8,
                completion: 64,
                prompt_tokens: 16,
                steps: 12,
                discard: 2,
                betas: &[0.0, 0.04],
            }],
            target_ratio: 2.5,
            train_target_ratio: 1.3,
        },
        Shape {
            name: "bench-small",
            config: llama(49_152, 576, 1536, 30, 9, 3),
            train: (8, 16, 32),
            grpo: vec![
                GrpoCase {
                    kind: "peer",
                    prompts: 2,
                    group: 4,
                    completion: 32,
                    prompt_tokens: 16,
                    steps: 5,
                    discard: 2,
                    betas: &[0.0, 0.04],
                },
                GrpoCase {
                    kind: "chat",
                    prompts: 4,
                    group: 8,
                    completion: 60,
                    prompt_tokens: 40,
                    steps: 3,
                    discard: 1,
                    betas: &[0.0, 0.04],
                },
            ],
            target_ratio: 3.0,
            train_target_ratio: 1.5,
        },
    ]
}

/// What bounds the work on this machine.
struct Machine {
    gemm_gflops: f64,
    read_gbs: f64,
    copy_gbs: f64,
}

fn main() {
    // Cargo passes --bench; a plain `cargo test` run passes nothing and should stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let threads = env_usize("VERITY_BENCH_THREADS", 2);
    // Before any tensor work: candle and rayon read these when their pools start.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    policy::keep_freed_memory();
    // The train pass runs on this thread; the GRPO steps set it from their config.
    policy::set_matmul_precision(matmul_precision());
    let reps = env_usize("VERITY_BENCH_REPS", 5);
    let only: Vec<String> = std::env::var("VERITY_BENCH_ONLY")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    // Within each pair, naming neither means both; naming a kind of GRPO
    // step names the GRPO steps.
    let named = |name: &str| only.iter().any(|s| s == name);
    let wanted = |name: &str, pair: [&str; 2]| named(name) || !pair.iter().any(|&p| named(p));
    let grpo_named = named("grpo") || named("peer") || named("chat");
    let (run_train, run_grpo) = (named("train") || !grpo_named, grpo_named || !named("train"));
    let peer = read_peer();

    let machine = measure_machine(threads);
    for shape in shapes() {
        if !wanted(shape.name.trim_start_matches("bench-"), ["tiny", "small"]) {
            continue;
        }
        println!(
            "\n{}: {} parameters",
            shape.name,
            shape.config.num_parameters()
        );
        if run_train {
            train_pass(&shape, reps, &machine, peer.as_ref());
        }
        if run_grpo {
            for case in &shape.grpo {
                if !wanted(case.kind, ["peer", "chat"]) {
                    continue;
                }
                for &beta in case.betas {
                    let run = grpo_steps(&shape, *case, beta, threads, &machine, peer.as_ref());
                    if let Err(e) = run {
                        println!("GRPO step {} beta {beta}: failed: {e}", shape.name);
                    }
                }
            }
        }
    }
}

/// Seconds of CPU time (user + system) this process has used so far: well
/// below threads x wall time when other work held the cores.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    }
}

/// `VERITY_BENCH_MATMUL`, default float32.
fn matmul_precision() -> Precision {
    std::env::var("VERITY_BENCH_MATMUL")
        .unwrap_or_else(|_| "float32".into())
        .parse()
        .expect("VERITY_BENCH_MATMUL")
}

/// What a multiply-add in `precision` costs at the GEMM rate, in float32 ones.
fn product_cost(precision: Precision) -> f64 {
    match precision {
        Precision::Float32 => 1.0,
        Precision::Bfloat16 => 0.5,
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------------ machine

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Best of `reps` wall-clock seconds of `f`, after one warm-up call.
fn best_of(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn measure_machine(threads: usize) -> Machine {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).expect("matrix");
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).expect("matrix");
    let gemm = best_of(5, || {
        a.matmul(&b).expect("matmul");
    });
    let gemm_gflops = 2.0 * (n * n * n) as f64 / gemm / 1e9;

    // 512 MiB of f32, read (summed) and copied by `threads` threads.
    let len = 128 << 20;
    let src = vec![1f32; len];
    let mut dst = vec![0f32; len];
    let share = len.div_ceil(threads);
    let read = best_of(3, || {
        let total: f32 = std::thread::scope(|s| {
            let parts: Vec<_> = src
                .chunks(share)
                .map(|part| s.spawn(move || sum_lanes(part)))
                .collect();
            parts.into_iter().map(|h| h.join().expect("sum")).sum()
        });
        std::hint::black_box(total);
    });
    let copy = best_of(3, || {
        std::thread::scope(|s| {
            for (d, part) in dst.chunks_mut(share).zip(src.chunks(share)) {
                s.spawn(move || d.copy_from_slice(part));
            }
        });
    });
    let bytes = (len * 4) as f64;
    let machine = Machine {
        gemm_gflops,
        read_gbs: bytes / read / 1e9,
        copy_gbs: 2.0 * bytes / copy / 1e9,
    };
    println!(
        "{} ({} logical CPUs), {threads} threads, load average {}",
        cpu_model(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    println!(
        "measured: f32 GEMM 2048^3 {:.0} GFLOP/s (candle/gemm, best of 5); memory read {:.1} GB/s, copy {:.1} GB/s (512 MiB)",
        machine.gemm_gflops, machine.read_gbs, machine.copy_gbs
    );
    machine
}

/// Sum with sixteen partial sums, so it vectorises and runs at memory speed.
fn sum_lanes(values: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for chunk in values.chunks_exact(16) {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}

/// Seconds the optimizer must take at least: AdamW reads parameter,
/// gradient and both moments and writes three of them back (f32).
fn optimizer_floor(params: usize, m: &Machine) -> f64 {
    (7 * 4 * params) as f64 / (m.copy_gbs * 1e9)
}

// ------------------------------------------------------------------ peer

fn read_peer() -> Option<Value> {
    let path = std::env::var_os("VERITY_PEER_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/results-trl-cpu.json")
        });
    let text = std::fs::read_to_string(&path).ok()?;
    let value: Value = serde_json::from_str(&text).ok()?;
    println!("peer figures from {}", path.display());
    Some(value)
}

/// `field` of every variant the peer measured of `key` in `section`: the
/// entry named `key` and those named `key/...`.
fn peer_variants(peer: Option<&Value>, section: &str, key: &str, field: &str) -> Vec<f64> {
    let Some(entries) = peer.and_then(|p| p.get(section)?.as_object()) else {
        return Vec::new();
    };
    entries
        .iter()
        .filter(|(name, _)| *name == key || name.starts_with(&format!("{key}/")))
        .filter_map(|(_, v)| v.get(field)?.as_f64())
        .collect()
}

/// The peer's fastest training pass at `shape` (tokens/s) over its
/// variants (attention implementation, TRL's fused loss or not).
fn fastest_peer_pass(peer: Option<&Value>, shape: &str) -> Option<f64> {
    peer_variants(peer, "train", shape, "tokens_per_s")
        .into_iter()
        .reduce(f64::max)
}

/// The peer's fastest GRPO step at `shape` and `beta` (seconds): its
/// headline run, or TRL's default with gradient checkpointing (`/gc`).
fn fastest_peer_step(peer: Option<&Value>, shape: &str, beta: f64) -> Option<f64> {
    let key = format!("{shape}/beta{beta:?}");
    peer_variants(peer, "grpo", &key, "seconds_per_step_median")
        .into_iter()
        .reduce(f64::min)
}

// ------------------------------------------------------------------ train pass

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One GRPO update over random rows, as the peer's train pass.
fn train_pass(shape: &Shape, reps: usize, machine: &Machine, peer: Option<&Value>) {
    let (b, p, c) = shape.train;
    let device = Device::Cpu;
    let policy = Policy::random(&shape.config, 0, &device).expect("model");
    let mut rng = StdRng::seed_from_u64(0);
    let vocab = shape.config.vocab_size.min(95) as u32;
    let ids: Vec<u32> = (0..b * (p + c))
        .map(|_| rng.random_range(0..vocab))
        .collect();
    let ids = Tensor::from_vec(ids, (b, p + c), &device).expect("ids");
    let mask = Tensor::ones((b, p + c), DType::U32, &device).expect("mask");
    let completion_mask = Tensor::ones((b, c), DType::F32, &device).expect("mask");
    let advantages: Vec<f32> = (0..b).map(|_| rng.random_range(-1.0..1.0)).collect();
    let advantages = Tensor::from_vec(advantages, b, &device).expect("advantages");
    let mut optimizer = AdamWConfig::default()
        .init(&policy.varmap)
        .expect("optimizer");
    let loss_cfg = LossConfig {
        loss_type: trainer::LossType::Dapo,
        epsilon_low: 0.2,
        epsilon_high: 0.2,
        beta: 0.0,
        max_completion_length: c,
        ..LossConfig::default()
    };
    let mut once = || -> [f64; 6] {
        let (start, cpu_start, tally) = (Instant::now(), cpu_seconds(), ProductTally::now());
        let logps = completion_logprobs(&policy.model, &ids, &mask, c, 1.0).expect("log-probs");
        let inputs = LossInputs {
            new_logps: &logps,
            old_logps: None,
            ref_logps: None,
            entropies: None,
            advantages: &advantages,
            completion_mask: &completion_mask,
            sampler_weights: None,
        };
        let loss = grpo_loss(&loss_cfg, &inputs, Accumulation::single(b * c)).expect("loss");
        let forward = start.elapsed().as_secs_f64();
        let mut grads = optimizer.zero_grads();
        let store = policy.model.backward(&loss.loss).expect("backward");
        optimizer.accumulate(&mut grads, &store).expect("gradients");
        drop(store);
        let backward = start.elapsed().as_secs_f64() - forward;
        grads.clip_norm(1.0).expect("clip");
        optimizer.step(&grads, 1e-5).expect("AdamW");
        let products = ProductTally::now().since(tally);
        [
            forward,
            backward,
            start.elapsed().as_secs_f64() - forward - backward,
            cpu_seconds() - cpu_start,
            products.seconds,
            products.multiply_adds as f64,
        ]
    };
    once();
    let runs: Vec<[f64; 6]> = (0..reps).map(|_| once()).collect();
    let mut totals: Vec<f64> = runs.iter().map(|r| r[..3].iter().sum()).collect();
    let best = totals.iter().copied().fold(f64::INFINITY, f64::min);
    let med = median(&mut totals);
    let part = |i: usize| median(&mut runs.iter().map(|r| r[i]).collect::<Vec<_>>());
    let tokens = (b * (p + c)) as f64;
    let params = shape.config.num_parameters();
    let flop = 6.0 * params as f64 * tokens;
    let matmul = matmul_precision();
    let floor = product_cost(matmul) * flop / (machine.gemm_gflops * 1e9)
        + optimizer_floor(params, machine);
    println!(
        "train pass {b} x ({p} + {c}){}: {:>7.0} tok/s (best {:.0}), {:.3} s median: forward {:.3}, backward {:.3}, clip+AdamW {:.3}; {:.0} GFLOP/s as 6NT; cpu {:.3} s",
        match matmul {
            Precision::Float32 => "",
            Precision::Bfloat16 => ", bf16 products",
        },
        tokens / med,
        tokens / best,
        med,
        part(0),
        part(1),
        part(2),
        flop / med / 1e9,
        part(3)
    );
    let peer_rate = fastest_peer_pass(peer, shape.name);
    println!(
        "    machine ceiling {:.0} tok/s (6NT at {:.0} GFLOP/s{} + AdamW bytes at {:.1} GB/s){}",
        tokens / floor,
        machine.gemm_gflops,
        match matmul {
            Precision::Float32 => "",
            Precision::Bfloat16 => ", twice it in bf16",
        },
        machine.copy_gbs,
        peer_rate.map_or(String::new(), |r| format!(
            "; peer {r:.0} tok/s (its fastest variant), ratio {:.2}x",
            tokens / med / r
        ))
    );
    // The pass's own products at their shapes, timed inside it: what the
    // rest (attention, element-wise kernels, gradient bookkeeping, AdamW)
    // has left to it at a target.
    let products = part(4);
    println!(
        "    its matrix products {products:.3} s at {:.0} GFLOP/s ({:.0}% of the pass), the rest {:.3} s",
        2.0 * part(5) / products / 1e9,
        100.0 * products / med,
        med - products
    );
    if let Some(r) = peer_rate {
        let target = tokens / (r * shape.train_target_ratio);
        println!(
            "    target {:.1}x = {target:.3} s: the products leave the rest {:.3} s",
            shape.train_target_ratio,
            target - products
        );
    }
}

// ------------------------------------------------------------------ GRPO step

/// The peer's 200 prompts: `Q: {a}+{b} = ? A: ` with a, b drawn from 10..=99
/// (the plain format's newline stands for the trailing space: 16 tokens),
/// after an instruction that makes them `tokens` long.
fn prompts_jsonl(n: usize, tokens: usize) -> String {
    const INSTRUCTION: &str = "Add the two numbers below and give the sum. ";
    let lead = &INSTRUCTION.repeat(tokens / INSTRUCTION.len() + 1)[..tokens.saturating_sub(16)];
    let mut rng = StdRng::seed_from_u64(0);
    let mut out = String::new();
    for _ in 0..n {
        let (a, b) = (rng.random_range(10..100), rng.random_range(10..100));
        out.push_str(&format!(
            "{{\"prompt\":\"{lead}Q: {a}+{b} = ? A:\",\"answer\":{},\"verifier\":\"number\"}}\n",
            a + b
        ));
    }
    out
}

/// A model folder: random weights of the shape, the peer's character
/// tokenizer (its vocabulary padded to the model's with never-produced
/// tokens, as the peer pads it), and an end-of-sequence token the model
/// cannot sample.
fn model_dir(shape: &Shape, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/tiny-llama");
    let mut tokenizer: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture.join("tokenizer.json"))?)?;
    let vocab = shape.config.vocab_size;
    let map = tokenizer["model"]["vocab"]
        .as_object_mut()
        .ok_or("fixture tokenizer has no vocab")?;
    for id in map.len()..vocab {
        map.insert(format!("<x{id}>"), Value::from(id));
    }
    let eos = "<|never|>";
    map.insert(eos.into(), Value::from(vocab));
    tokenizer["added_tokens"]
        .as_array_mut()
        .ok_or("fixture tokenizer has no added tokens")?
        .push(serde_json::json!({
            "id": vocab, "content": eos, "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }));
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string())?;
    let mut tokenizer_config: Value = serde_json::from_str(&std::fs::read_to_string(
        fixture.join("tokenizer_config.json"),
    )?)?;
    tokenizer_config["eos_token"] = Value::from(eos);
    std::fs::write(
        dir.join("tokenizer_config.json"),
        tokenizer_config.to_string(),
    )?;
    let mut config = shape.config.clone();
    config.eos_token_ids = Vec::new();
    Policy::random(&config, 0, &Device::Cpu)?.save(dir)?;
    Ok(())
}

fn grpo_steps(
    shape: &Shape,
    case: GrpoCase,
    beta: f64,
    threads: usize,
    machine: &Machine,
    peer: Option<&Value>,
) -> Result<(), Box<dyn std::error::Error>> {
    let GrpoCase {
        prompts,
        group,
        completion,
        prompt_tokens,
        steps,
        discard,
        ..
    } = case;
    let precision: Precision = std::env::var("VERITY_BENCH_DECODE")
        .unwrap_or_else(|_| "float32".into())
        .parse()?;
    let reference: Precision = match std::env::var("VERITY_BENCH_REFERENCE") {
        Ok(name) => name.parse()?,
        Err(_) => precision,
    };
    let matmul = matmul_precision();
    let work = tempfile::tempdir()?;
    let model = work.path().join("model");
    model_dir(shape, &model)?;
    let data = work.path().join("prompts.jsonl");
    std::fs::write(&data, prompts_jsonl(200, prompt_tokens))?;
    let config_path = work.path().join("bench.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[run]
name = "bench"
out_dir = "{out}"
seed = 0
threads = {threads}
decode_precision = "{precision}"
matmul_precision = "{matmul}"

[model]
source = "local"
path = "{model}"
prompt_format = "plain"

[tasks]
mixture = [{{ jsonl = "{data}" }}]

[grpo]
steps = {steps}
batch_size = {batch}
group_size = {group}
micro_batches = 1
max_completion_length = {completion}
lr = 1e-5
beta = {beta}
reference_precision = "{reference}"
temperature = 1.0

[eval]
problems = 1
samples = 0

[log]
samples_per_step = 0
"#,
            out = work.path().display(),
            model = model.display(),
            data = data.display(),
            batch = prompts * group,
        ),
    )?;
    let config = Config::load(&config_path, &[])?;
    let tally = ProductTally::now();
    trainer::train(&config, &mut trainer::Silent)?;
    // Every step does the same products (the decoder's are not counted).
    let products = ProductTally::now().since(tally);

    let metrics = std::fs::read_to_string(work.path().join("bench").join(trainer::METRICS_FILE))?;
    let lines: Vec<Value> = metrics
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let kept: Vec<&Value> = lines.iter().skip(discard).collect();
    let med = |key: &str| -> f64 {
        median(
            &mut kept
                .iter()
                .filter_map(|l| l[key].as_f64())
                .collect::<Vec<_>>(),
        )
    };
    let lengths: Vec<f64> = kept
        .iter()
        .filter_map(|l| l["completions/mean_length"].as_f64())
        .collect();
    if lengths.iter().any(|&l| l != completion as f64) {
        return Err(format!("completions were not full length: {lengths:?}").into());
    }
    let step = med("step_s");
    let peak = kept
        .iter()
        .filter_map(|l| l["peak_rss_mb"].as_f64())
        .fold(0.0, f64::max);
    println!(
        "GRPO step {prompts} x {group} x ({prompt_tokens} + {completion}), beta {beta}{}{}: {step:.3} s/step (median of {}): generation {:.3}, reference {:.3}, loss forward {:.3}, backward {:.3}, optimizer {:.3}; peak RSS {peak:.0} MB",
        match (precision, beta > 0.0, reference) {
            (Precision::Float32, false, _)
            | (Precision::Float32, true, Precision::Float32) => "",
            (Precision::Bfloat16, true, Precision::Bfloat16) => {
                ", bf16 rollouts and reference"
            }
            (Precision::Bfloat16, _, _) => ", bf16 rollouts",
            (Precision::Float32, true, Precision::Bfloat16) => ", bf16 reference",
        },
        match matmul {
            Precision::Float32 => "",
            Precision::Bfloat16 => ", bf16 products",
        },
        kept.len(),
        med("time/generation_s"),
        med("time/reference_s"),
        med("time/loss_forward_s"),
        med("time/backward_s"),
        med("time/optimizer_s"),
    );
    // Floor: each prompt once per group and every completion token through
    // the model for sampling (and the reference), then forward and backward
    // (3 forwards' worth) for the update, all at the GEMM rate (twice it in
    // bfloat16); AdamW's bytes at memory speed.
    let params = shape.config.num_parameters() as f64;
    let tokens = (prompts * prompt_tokens + prompts * group * completion) as f64;
    let scoring = if beta > 0.0 {
        product_cost(reference)
    } else {
        0.0
    };
    let forwards = product_cost(precision) + scoring + 3.0 * product_cost(matmul);
    let floor = forwards * 2.0 * params * tokens / (machine.gemm_gflops * 1e9)
        + optimizer_floor(shape.config.num_parameters(), machine);
    let peer_step = match case.kind {
        "peer" => fastest_peer_step(peer, shape.name, beta),
        _ => None,
    };
    println!(
        "    machine ceiling {floor:.3} s/step (GEMM-bound forwards/backward + AdamW bytes){}",
        peer_step.map_or(String::new(), |s| format!(
            "; peer {s:.3} s/step (its fastest variant), ratio {:.2}x",
            s / step
        ))
    );
    let step_products = products.seconds / steps as f64;
    println!(
        "    matrix products of the update {step_products:.3} s/step at {:.0} GFLOP/s; generation, reference and the rest {:.3} s",
        products.flops() / 1e9,
        step - step_products
    );
    if let Some(peer_step) = peer_step {
        // How close to the machine's ceiling the target asks the step to run.
        let target = peer_step / shape.target_ratio;
        println!(
            "    target {:.1}x = {target:.3} s/step: {:.0}% of the ceiling's speed; this step {:.0}%; the products leave the rest {:.3} s",
            shape.target_ratio,
            100.0 * floor / target,
            100.0 * floor / step,
            target - step_products
        );
    }
    Ok(())
}
