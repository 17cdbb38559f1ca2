//! What this machine can do, measured: the processor, the multiply-add
//! peak of its cores, a large matrix product and the memory read rate.
//! The bench prints these first, so each throughput below can be read
//! against the ceiling of the machine it ran on.

use std::time::Instant;

use candle_core::{Device, Tensor};

/// The measured ceilings.
pub struct Machine {
    /// The processor, from /proc/cpuinfo.
    pub cpu: String,
    /// float32 FLOP/s of multiply-adds held in registers, one thread.
    pub fma_one: f64,
    /// The same per second of that thread's CPU time.
    pub fma_core: f64,
    /// The same on `threads` threads at once.
    pub fma_all: f64,
    /// float32 FLOP/s of a 2048^3 product through candle (the gemm crate).
    pub gemm: f64,
    /// Bytes/s read from a buffer far larger than the caches, all threads.
    pub memory: f64,
    pub threads: usize,
}

impl Machine {
    pub fn measure(threads: usize) -> Self {
        let best = |f: &dyn Fn() -> f64| (0..3).map(|_| f()).fold(0.0, f64::max);
        let fma_one = best(&|| fma_rate(1));
        let fma_core = best(&fma_per_core);
        let fma_all = best(&|| fma_rate(threads));
        Machine {
            cpu: cpu_name(),
            fma_one,
            fma_core,
            fma_all,
            gemm: gemm_rate(),
            memory: best(&|| memory_rate(threads)),
            threads,
        }
    }

    pub fn print(&self) {
        println!("machine: {}", self.cpu);
        println!(
            "  float32 FMA peak {:.0} GFLOP/s on 1 thread ({:.0} per CPU-second), {:.0} on {}; gemm 2048^3 {:.0} GFLOP/s; memory read {:.1} GB/s",
            self.fma_one / 1e9,
            self.fma_core / 1e9,
            self.fma_all / 1e9,
            self.threads,
            self.gemm / 1e9,
            self.memory / 1e9
        );
    }
}

fn cpu_name() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let flags = field("flags");
    let simd: Vec<&str> = ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"]
        .into_iter()
        .filter(|f| flags.split(' ').any(|g| g == *f))
        .collect();
    format!(
        "{} (family {}, model {}; {}), {} logical CPUs",
        field("model name"),
        field("cpu family"),
        field("model"),
        simd.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

/// FLOP/s of `threads` threads each running independent multiply-add chains.
fn fma_rate(threads: usize) -> f64 {
    const ITERS: usize = 4_000_000;
    let start = Instant::now();
    let flops: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| fma_chains(ITERS)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("fma thread"))
            .sum()
    });
    flops / start.elapsed().as_secs_f64()
}

/// FLOP per second of the calling thread's own CPU time: the core's peak
/// even while other processes share it (unless they slow its clock).
fn fma_per_core() -> f64 {
    let start = thread_cpu_seconds();
    let flops = fma_chains(4_000_000);
    flops / (thread_cpu_seconds() - start)
}

/// CPU seconds the calling thread has used.
fn thread_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct it is given.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut usage);
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        secs(usage.ru_utime) + secs(usage.ru_stime)
    }
}

/// Runs 16 independent chains of `iters` vector multiply-adds (the widest
/// the CPU has); returns the FLOPs done.
fn fma_chains(iters: usize) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            let sink = unsafe { fma512(iters) };
            std::hint::black_box(sink);
            return (iters * 16 * 16 * 2) as f64;
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            let sink = unsafe { fma256(iters) };
            std::hint::black_box(sink);
            return (iters * 16 * 8 * 2) as f64;
        }
    }
    let mut acc = [1.0f32; 16];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = a.mul_add(0.999_999, 1e-7);
        }
    }
    std::hint::black_box(acc);
    (iters * 16 * 2) as f64
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); 16];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, b, c);
        }
    }
    acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma256(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (b, c) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); 16];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, b, c);
        }
    }
    let mut lanes = [0f32; 8];
    let mut total = 0.0;
    for a in acc {
        _mm256_storeu_ps(lanes.as_mut_ptr(), a);
        total += lanes.iter().sum::<f32>();
    }
    total
}

/// FLOP/s of the best of a few 2048^3 products.
fn gemm_rate() -> f64 {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).expect("a");
    let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu).expect("b");
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let start = Instant::now();
        std::hint::black_box(a.matmul(&b).expect("matmul"));
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best
}

/// Bytes/s of `threads` threads summing their parts of a 512 MB buffer.
fn memory_rate(threads: usize) -> f64 {
    let buffer = vec![1.0f32; 128 << 20];
    let part = buffer.len() / threads;
    let start = Instant::now();
    let total: f32 = std::thread::scope(|s| {
        let handles: Vec<_> = buffer
            .chunks(part)
            .map(|chunk| s.spawn(move || sum(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("sum thread"))
            .sum()
    });
    std::hint::black_box(total);
    (buffer.len() * 4) as f64 / start.elapsed().as_secs_f64()
}

fn sum(values: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for chunk in values.chunks_exact(16) {
        for (a, v) in acc.iter_mut().zip(chunk) {
            *a += v;
        }
    }
    acc.iter().sum()
}
