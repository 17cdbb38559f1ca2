//! The op candle sees for either half of a decoder layer, fused: `x + f(x)`
//! from three inputs, x [rows, hidden], the block's weights (its input
//! projections' rows, then the norm's weight) and its output projection.
//! Each half supplies its sizes ([`ResidualBlock`]) and arithmetic
//! ([`BlockKernels`]); the op reads the storage, picks the float type and
//! routes the gradients.

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Shape, Tensor, WithDType};

use super::WeightSink;
use crate::cpu::parallel::{cpu_slice, with_cpu};
use crate::error::Result;

/// What one half of a decoder layer is, whatever its float type.
pub(crate) trait ResidualBlock: Send + Sync + 'static {
    /// The op's name in candle.
    const NAME: &'static str;
    /// How its errors name it.
    const LABEL: &'static str;
    /// The sizes its arithmetic needs, read from the inputs' shapes.
    type Sizes: Copy;

    /// The sizes of x, the weights and the output projection, checked
    /// against one another.
    fn sizes(&self, x: &Layout, weights: &Layout, out: &Layout)
        -> candle_core::Result<Self::Sizes>;

    /// Where the weights' gradients go, when not to the inputs.
    fn sink(&self) -> Option<&WeightSink>;
}

/// A block's arithmetic on the CPU in float type `T`.
pub(crate) trait BlockKernels<T>: ResidualBlock {
    /// `x + f(x)` from x, the weights and the output projection.
    fn forward(&self, inputs: (&[T], &[T], &[T]), sizes: Self::Sizes) -> Vec<T>;

    /// Gradients for x, the weights and the output projection from the
    /// output's gradient (the fourth input).
    #[allow(clippy::type_complexity)]
    fn backward(
        &self,
        inputs: (&[T], &[T], &[T], &[T]),
        sizes: Self::Sizes,
    ) -> candle_core::Result<(Vec<T>, Vec<T>, Vec<T>)>;
}

/// `block` applied to x, its weights and output projection, as one node of
/// candle's graph.
pub(crate) fn apply<B>(x: &Tensor, weights: &Tensor, out: &Tensor, block: B) -> Result<Tensor>
where
    B: BlockKernels<f32> + BlockKernels<f64>,
{
    Ok(x.contiguous()?
        .apply_op3(&weights.contiguous()?, &out.contiguous()?, Fused(block))?)
}

struct Fused<B>(B);

/// A block's gradients for x, the weights and the output projection as
/// candle takes them back: none for the last two when they went to a sink.
type BlockGrads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

impl<B> CustomOp3 for Fused<B>
where
    B: BlockKernels<f32> + BlockKernels<f64>,
{
    fn name(&self) -> &'static str {
        B::NAME
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        lx: &Layout,
        w: &CpuStorage,
        lw: &Layout,
        o: &CpuStorage,
        lo: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let sizes = self.0.sizes(lx, lw, lo)?;
        fn run<T: WithDType, B: BlockKernels<T>>(
            block: &B,
            cpu: [(&CpuStorage, &Layout); 3],
            sizes: B::Sizes,
        ) -> candle_core::Result<CpuStorage> {
            let inputs = (cpu_slice(cpu[0])?, cpu_slice(cpu[1])?, cpu_slice(cpu[2])?);
            Ok(T::to_cpu_storage_owned(block.forward(inputs, sizes)))
        }
        let cpu = [(x, lx), (w, lw), (o, lo)];
        let out = match x {
            CpuStorage::F32(_) => run::<f32, B>(&self.0, cpu, sizes)?,
            CpuStorage::F64(_) => run::<f64, B>(&self.0, cpu, sizes)?,
            _ => candle_core::bail!("{}: only f32 and f64 on the CPU", B::LABEL),
        };
        Ok((out, lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weights: &Tensor,
        out: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<BlockGrads> {
        let grad = grad.contiguous()?;
        fn run<T: WithDType, B: BlockKernels<T>>(
            block: &B,
            cpu: &[(&CpuStorage, &Layout)],
            like: [&Tensor; 3],
        ) -> candle_core::Result<[Tensor; 3]> {
            let sizes = block.sizes(cpu[0].1, cpu[1].1, cpu[2].1)?;
            let s = |i: usize| cpu_slice::<T>(cpu[i]);
            let (dx, d_weights, d_out) = block.backward((s(0)?, s(1)?, s(2)?, s(3)?), sizes)?;
            let wrap = |g: Vec<T>, like: &Tensor| Tensor::from_vec(g, like.shape(), &Device::Cpu);
            Ok([
                wrap(dx, like[0])?,
                wrap(d_weights, like[1])?,
                wrap(d_out, like[2])?,
            ])
        }
        let like = [x, weights, out];
        let [dx, d_weights, d_out] = with_cpu(&[x, weights, out, &grad], |cpu| match cpu[0].0 {
            CpuStorage::F32(_) => run::<f32, B>(&self.0, cpu, like),
            CpuStorage::F64(_) => run::<f64, B>(&self.0, cpu, like),
            _ => candle_core::bail!("{}: only f32 and f64 on the CPU", B::LABEL),
        })?;
        match self.0.sink() {
            Some(sink) => {
                sink.hand_over(&d_weights, d_out)?;
                Ok((Some(dx), None, None))
            }
            None => Ok((Some(dx), Some(d_weights), Some(d_out))),
        }
    }
}
