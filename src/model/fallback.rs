//! The fallback scorer: an ONNX graph the native compiler does not take (an sklearn, lightgbm or
//! hand-built pipeline exported elsewhere) runs on tract-onnx.
//!
//! It is slower than the native trees and carries no contributions, but it scores any graph tract
//! can run whose input is float32 `[N, width]` and whose probabilities output is `[N, 2]`. The model
//! checks it like any other at load (card, opsets, golden rows); a graph tract cannot run either is
//! refused then, with tract's reason (which names the operator).

use tract_onnx::prelude::*;

/// A graph compiled by tract-onnx, with a symbolic batch dimension.
pub struct TractGraph {
    /// The optimized plan; each call runs it on its own state.
    plan: Arc<TypedRunnableModel>,
    /// Features per row.
    pub width: usize,
    /// Rows tract could not score since load, and the last reason.
    pub(crate) failures: std::sync::Mutex<(u64, Option<String>)>,
}

impl std::fmt::Debug for TractGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TractGraph")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl TractGraph {
    /// Compiles `bytes` keeping only the output `probabilities` (as the card names it), for rows of
    /// `width` float32 features and any batch size.
    pub fn load(bytes: &[u8], width: usize, probabilities: &str) -> TractResult<TractGraph> {
        let mut reader = bytes;
        let mut model = tract_onnx::onnx().model_for_read(&mut reader)?;
        let n = model.symbols.sym("N");
        model.set_input_fact(0, f32::fact([n.to_dim(), width.to_dim()]).into())?;
        model.select_outputs_by_name([probabilities])?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok(TractGraph {
            plan,
            width,
            failures: Default::default(),
        })
    }

    /// Writes P(fault) (column 1 of the probabilities output) of each row to `out`.
    pub fn probabilities(&self, rows: &[f32], out: &mut [f32]) -> TractResult<()> {
        let n = out.len();
        let input = tract_ndarray::Array2::from_shape_vec((n, self.width), rows.to_vec())?;
        let result = self.plan.run(tvec!(input.into_tensor().into()))?;
        let probs = result[0].to_plain_array_view::<f32>()?;
        anyhow::ensure!(
            probs.shape() == [n, 2],
            "the probabilities output has shape {:?}, not [{n}, 2]",
            probs.shape()
        );
        for (i, o) in out.iter_mut().enumerate() {
            *o = probs[[i, 1]];
        }
        Ok(())
    }
}
