//! Throughput of generation and of a training pass at the "bench-tiny" shape
//! (Llama, vocab 99, hidden 256, intermediate 704, 4 layers, 8 heads, 4 KV
//! heads, tied embeddings, rope_theta 10000), the shape the Python peer
//! benchmark (../shared/bench) measures; and generation of 8 x (16 + 32)
//! and 64 x (32 + 128) tokens at its "bench-small" shape (SmolLM2-135M:
//! vocab 49,152, hidden 576, 30 layers, 9 heads, 3 KV heads).
//!
//! `cargo bench -p verity-policy` first measures the machine (processor,
//! multiply-add peak, a 2048^3 product, memory read rate), then prints
//! medians with min/max so noise shows. `VERITY_BENCH_REPS` sets the
//! repetitions (default 7); `VERITY_BENCH_ONLY` a comma list of
//! `generate,generate_bf16,grouped,train,matmul,small,small64,small64_bf16`
//! (`_bf16`: the decoder in bfloat16); `VERITY_BENCH_GLIBC_DEFAULTS`
//! keeps glibc's allocator thresholds as they are.

mod machine;

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use policy::{
    completion_logprobs, Architecture, GenerationCache, ModelConfig, Policy, Precision,
    SamplingConfig,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

use machine::Machine;

/// "bench-small": SmolLM2-135M's shape, random weights.
fn bench_small() -> ModelConfig {
    let mut cfg = ModelConfig::new(Architecture::Llama, 49_152, 576, 1536, 30, 9, 3);
    cfg.rope_theta = 10_000.0;
    cfg.tie_word_embeddings = true;
    cfg
}

fn bench_tiny() -> ModelConfig {
    let mut cfg = ModelConfig::new(Architecture::Llama, 99, 256, 704, 4, 8, 4);
    cfg.rope_theta = 10_000.0;
    cfg.tie_word_embeddings = true;
    cfg
}

/// Seconds of CPU time (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    }
}

/// Wall-clock and CPU seconds of each repetition, each list sorted.
struct Timings {
    wall: Vec<f64>,
    cpu: Vec<f64>,
}

/// Runs `f` once to warm up, then `reps` times.
fn time<F: FnMut()>(reps: usize, mut f: F) -> Timings {
    f();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (start, start_cpu) = (Instant::now(), cpu_seconds());
        f();
        wall.push(start.elapsed().as_secs_f64());
        cpu.push(cpu_seconds() - start_cpu);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    Timings { wall, cpu }
}

fn median(v: &[f64]) -> f64 {
    v[v.len() / 2]
}

/// Throughput from the median wall time, with the spread of wall times and
/// the CPU time (CPU time over wall time well below the thread count means
/// the machine was busy with other work).
fn report(label: &str, t: &Timings, units: f64, unit: &str) {
    let m = median(&t.wall);
    let (min, max) = (t.wall[0], t.wall[t.wall.len() - 1]);
    println!(
        "{label:<44} {:>10.0} {unit}/s  median {:>8.2} ms  (min {:.2}, max {:.2}; spread {:.0}%; cpu {:.2} ms, min {:.2})",
        units / m,
        m * 1e3,
        min * 1e3,
        max * 1e3,
        100.0 * (max - min) / m,
        median(&t.cpu) * 1e3,
        t.cpu[0] * 1e3,
    );
}

fn random_prompts(n: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.random_range(0..95)).collect())
        .collect()
}

/// A generation shape: `prompts` x `group` sequences of `prompt_len`
/// prompt tokens and exactly `new_tokens` sampled ones (T=1, no stop token).
struct Shape {
    prompts: usize,
    group: usize,
    prompt_len: usize,
    new_tokens: usize,
}

impl Shape {
    /// FLOPs of the matrix products (2 per weight per token; the LM head for
    /// the last prompt token and each sampled one) and of attention (4 per
    /// head dimension per visible position).
    fn flops(&self, cfg: &ModelConfig) -> f64 {
        let (h, v) = (cfg.hidden_size as f64, cfg.vocab_size as f64);
        let q = (cfg.num_attention_heads * cfg.head_dim) as f64;
        let kv = (cfg.num_key_value_heads * cfg.head_dim) as f64;
        let i = cfg.intermediate_size as f64;
        let per_layer = h * (q + 2.0 * kv) + q * h + 3.0 * h * i;
        let body = 2.0 * cfg.num_hidden_layers as f64 * per_layer;
        let head = 2.0 * h * v;
        let attention = |visible: usize| 4.0 * (cfg.num_hidden_layers as f64) * q * visible as f64;
        let prompt: f64 = (1..=self.prompt_len)
            .map(|t| body + attention(t))
            .sum::<f64>()
            + head;
        let sampled: f64 = (1..self.new_tokens)
            .map(|t| body + head + attention(self.prompt_len + t))
            .sum();
        // Each prompt is prefilled once for its group.
        (self.prompts as f64) * prompt + (self.prompts * self.group) as f64 * sampled
    }
}

/// Generation with the packed weights kept between calls (as the trainer
/// keeps them for an evaluation or a step's rollouts); packing is timed apart.
fn bench_generate(
    policy: &Policy,
    reps: usize,
    shape: &Shape,
    precision: Precision,
    machine: &Machine,
) {
    let Shape {
        prompts,
        group,
        prompt_len,
        new_tokens,
    } = *shape;
    let sampling = SamplingConfig {
        max_new_tokens: new_tokens,
        temperature: 1.0,
        ..SamplingConfig::default()
    };
    let prompt_ids = random_prompts(prompts, prompt_len, 1);
    let cache = GenerationCache::with_precision(precision);
    let mut seed = 0;
    let mut generated = 0;
    let times = time(reps, || {
        seed += 1;
        let out = cache
            .generate(
                &policy.model,
                &prompt_ids,
                group,
                &sampling,
                &mut StdRng::seed_from_u64(seed),
            )
            .expect("generation runs");
        generated = out.iter().map(|g| g.tokens.len()).sum::<usize>();
    });
    assert_eq!(generated, prompts * group * new_tokens);
    let label = format!(
        "generate {prompts}x{group} seqs, {prompt_len} + {new_tokens} tokens (T=1{})",
        match precision {
            Precision::Float32 => "",
            Precision::Bfloat16 => ", bf16",
        }
    );
    report(&label, &times, generated as f64, "tok");
    let flops = shape.flops(&policy.config);
    let (wall, cpu) = (median(&times.wall), median(&times.cpu));
    println!(
        "{:<44} {:.0} GFLOP/s in products and attention: {:.0}% of the float32 FMA peak on {} threads; per CPU-second {:.0}, {:.0}% of a core's",
        "",
        flops / wall / 1e9,
        100.0 * flops / wall / machine.fma_all,
        machine.threads,
        flops / cpu / 1e9,
        100.0 * flops / cpu / machine.fma_core,
    );

    let one = SamplingConfig {
        max_new_tokens: 1,
        ..sampling
    };
    let first = |cache: &GenerationCache| {
        cache
            .generate(
                &policy.model,
                &prompt_ids,
                group,
                &one,
                &mut StdRng::seed_from_u64(0),
            )
            .expect("prefill runs");
    };
    let prefill = time(reps, || first(&cache));
    let fresh = time(reps, || first(&GenerationCache::with_precision(precision)));
    let (full, pre) = (median(&times.wall), median(&prefill.wall));
    println!(
        "{:<44} prefill + 1 token {:.2} ms, decode {:.3} ms/step; packing the weights {:.1} ms",
        "",
        pre * 1e3,
        (full - pre) * 1e3 / (new_tokens - 1) as f64,
        (median(&fresh.wall) - pre) * 1e3
    );
}

/// One update over 64 rows of 16 prompt + 64 completion tokens: completion
/// log-probs, a policy-gradient loss, backward, global-norm clipping and an
/// AdamW step, as the peer's train pass does.
fn bench_train(policy: &Policy, reps: usize) {
    let (b, p, c) = (64, 16, 64);
    let device = policy.device().clone();
    let mut rng = StdRng::seed_from_u64(0);
    let ids: Vec<u32> = (0..b * (p + c)).map(|_| rng.random_range(0..95)).collect();
    let ids = Tensor::from_vec(ids, (b, p + c), &device).expect("ids");
    let mask = Tensor::ones((b, p + c), DType::U32, &device).expect("mask");
    let advantages: Vec<f32> = (0..b).map(|_| rng.random_range(-1.0..1.0)).collect();
    let advantages = Tensor::from_vec(advantages, (b, 1), &device).expect("advantages");
    let vars: Vec<Var> = policy.named_vars().into_iter().map(|(_, v)| v).collect();
    let mut adam = Adam::new(&vars);
    let times = time(reps, || {
        let logprobs = completion_logprobs(&policy.model, &ids, &mask, c, 1.0).expect("log-probs");
        // On-policy surrogate: ratio exp(lp - lp.detach()) times the advantage.
        let ratio = (&logprobs - logprobs.detach())
            .and_then(|d| d.exp())
            .expect("ratio");
        let loss = ratio
            .broadcast_mul(&advantages)
            .and_then(|x| x.mean_all())
            .and_then(|x| x.neg())
            .expect("loss");
        let grads = policy.model.backward(&loss).expect("backward");
        adam.step(&vars, &grads).expect("update");
    });
    report(
        "train pass 64 x 80 tokens (fwd+bwd+clip+AdamW)",
        &times,
        (b * (p + c)) as f64,
        "tok",
    );
    let flops = 6.0 * policy.config.num_parameters() as f64 * (b * (p + c)) as f64;
    println!(
        "{:<44} {:.0} GFLOP/s as 6 x params x tokens",
        "",
        flops / median(&times.wall) / 1e9
    );
}

/// AdamW (lr 1e-5, no decay) with global-norm clipping at 1.0.
struct Adam {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: i32,
}

impl Adam {
    fn new(vars: &[Var]) -> Self {
        let zeros = |v: &Var| v.zeros_like().expect("zeros");
        Adam {
            m: vars.iter().map(zeros).collect(),
            v: vars.iter().map(zeros).collect(),
            step: 0,
        }
    }

    fn step(
        &mut self,
        vars: &[Var],
        grads: &candle_core::backprop::GradStore,
    ) -> candle_core::Result<()> {
        let (lr, b1, b2, eps) = (1e-5, 0.9f64, 0.999f64, 1e-8);
        self.step += 1;
        let grads: Vec<Tensor> = vars
            .iter()
            .map(|v| grads.get(v).expect("gradient").clone())
            .collect();
        let mut sq = 0.0;
        for g in &grads {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let clip = (1.0 / (sq.sqrt() + 1e-6)).min(1.0);
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        for (i, (var, g)) in vars.iter().zip(&grads).enumerate() {
            let g = (g * clip)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&self.m[i] / c1)? / ((&self.v[i] / c2)?.sqrt()? + eps)?)?;
            var.set(&(var.as_tensor() - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// Raw matrix products at the model's shapes, x W^T as a linear layer computes them.
fn bench_matmul(reps: usize) {
    let device = Device::Cpu;
    for (m, k, n) in [
        (5120, 256, 704),
        (5120, 704, 256),
        (64, 256, 704),
        (64, 704, 256),
        (64, 256, 512),
    ] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &device).expect("x");
        let w = Tensor::randn(0f32, 1.0, (n, k), &device).expect("w");
        let times = time(reps * 4, || {
            x.matmul(&w.t().expect("t")).expect("matmul");
        });
        let label = format!("matmul [{m}x{k}] x [{n}x{k}]^T");
        report(&label, &times, 2.0 * (m * k * n) as f64 / 1e9, "GFLOP");
        // The layout generation uses: the weight stored transposed, [k, n].
        let wt = w.t().and_then(|t| t.contiguous()).expect("transpose");
        let times = time(reps * 4, || {
            x.matmul(&wt).expect("matmul");
        });
        let label = format!("matmul [{m}x{k}] x [{k}x{n}] (transposed copy)");
        report(&label, &times, 2.0 * (m * k * n) as f64 / 1e9, "GFLOP");
    }
    // Weight gradients of the training pass: dy^T x, summing over the rows.
    for (rows, out, inp) in [(5120, 704, 256), (5120, 256, 704), (5120, 1408, 256)] {
        let dy = Tensor::randn(0f32, 1.0, (rows, out), &device).expect("dy");
        let x = Tensor::randn(0f32, 1.0, (rows, inp), &device).expect("x");
        let times = time(reps * 4, || {
            dy.t().and_then(|t| t.matmul(&x)).expect("matmul");
        });
        let label = format!("matmul [{rows}x{out}]^T x [{rows}x{inp}]");
        report(
            &label,
            &times,
            2.0 * (rows * out * inp) as f64 / 1e9,
            "GFLOP",
        );
    }
}

fn main() {
    if std::env::var_os("VERITY_BENCH_GLIBC_DEFAULTS").is_none() {
        policy::keep_freed_memory();
    }
    let reps: usize = std::env::var("VERITY_BENCH_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let only = std::env::var("VERITY_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    // Cargo passes --bench; a plain `cargo test` run passes nothing and should stay quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let threads = candle_core::utils::get_num_threads();
    let machine = Machine::measure(threads);
    machine.print();
    let policy = Policy::random(&bench_tiny(), 0, &Device::Cpu).expect("bench-tiny builds");
    println!(
        "bench-tiny: {} parameters, {reps} reps",
        policy.config.num_parameters()
    );
    let shape = |prompts, group, prompt_len, new_tokens| Shape {
        prompts,
        group,
        prompt_len,
        new_tokens,
    };
    let (f32, bf16) = (Precision::Float32, Precision::Bfloat16);
    if wanted("generate") {
        bench_generate(&policy, reps, &shape(64, 1, 16, 64), f32, &machine);
    }
    if wanted("generate_bf16") {
        bench_generate(&policy, reps, &shape(64, 1, 16, 64), bf16, &machine);
    }
    if wanted("grouped") {
        bench_generate(&policy, reps, &shape(8, 8, 16, 64), f32, &machine);
    }
    if wanted("train") {
        bench_train(&policy, reps);
    }
    if wanted("matmul") {
        bench_matmul(reps);
    }
    if ["small", "small64", "small64_bf16"]
        .iter()
        .any(|s| wanted(s))
    {
        let small = Policy::random(&bench_small(), 0, &Device::Cpu).expect("bench-small builds");
        println!("bench-small: {} parameters", small.config.num_parameters());
        if wanted("small") {
            bench_generate(&small, reps.min(3), &shape(8, 1, 16, 32), f32, &machine);
        }
        if wanted("small64") {
            bench_generate(&small, reps.min(3), &shape(64, 1, 32, 128), f32, &machine);
        }
        if wanted("small64_bf16") {
            bench_generate(&small, reps.min(3), &shape(64, 1, 32, 128), bf16, &machine);
        }
    }
}
