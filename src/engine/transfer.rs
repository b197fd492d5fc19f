//! Pooled states from the device to the host: one copy per batch, into a reused buffer.
//!
//! For a large model the pooled states are gigabytes (8B: 32 layers × 14 336 neurons × 2 × f32 ×
//! 1000 sentences ≈ 3.7 GB), so on a GPU they go through page-locked memory, which the copy
//! engine fills at full bus speed, instead of pageable memory staged by the driver.

use candle_core::{DType, Device, Tensor};

use super::error::Result;

#[derive(Default)]
pub struct HostCopy {
    buffer: Vec<f32>,
    #[cfg(feature = "cuda")]
    pinned: Option<candle_core::cuda_backend::cudarc::driver::PinnedHostSlice<f32>>,
}

impl HostCopy {
    pub fn new() -> Self {
        Self::default()
    }

    /// The values of `tensor` (any shape, read as f32) in row-major order.
    pub fn copy(&mut self, tensor: &Tensor) -> Result<&[f32]> {
        let tensor = tensor.to_dtype(DType::F32)?.contiguous()?;
        #[cfg(feature = "cuda")]
        if tensor.device().is_cuda() {
            return self.copy_cuda(&tensor);
        }
        let host = tensor.to_device(&Device::Cpu)?;
        self.buffer.clear();
        let (storage, layout) = host.storage_and_layout();
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(values)) = &*storage else {
            // Unreachable after the conversions above; an error rather than a panic regardless.
            return Err(super::error::EngineError::Device(
                "pooled states did not arrive on the host as f32".into(),
            ));
        };
        let start = layout.start_offset();
        self.buffer
            .extend_from_slice(&values[start..start + layout.shape().elem_count()]);
        Ok(&self.buffer)
    }

    #[cfg(feature = "cuda")]
    fn copy_cuda(&mut self, tensor: &Tensor) -> Result<&[f32]> {
        use super::error::EngineError;
        let device_error = |e: candle_core::cuda_backend::cudarc::driver::DriverError| {
            EngineError::Device(format!("copying pooled states to the host: {e}"))
        };
        let (storage, layout) = tensor.storage_and_layout();
        let candle_core::Storage::Cuda(cuda) = &*storage else {
            return Err(EngineError::Device("expected a CUDA tensor".into()));
        };
        let slice = cuda.as_cuda_slice::<f32>()?;
        let start = layout.start_offset();
        let count = layout.shape().elem_count();
        let view = slice.slice(start..start + count);
        let stream = slice.stream();
        if self.pinned.as_ref().is_none_or(|p| p.len() < count) {
            self.pinned = None; // free the smaller buffer first
            // SAFETY: the buffer is written by the copy below before anything reads it.
            // Flags 0: plain page-locked memory (write-combined memory is very slow for the CPU
            // to read).
            let pinned = unsafe { stream.context().alloc_pinned_with_flags::<f32>(count, 0) }
                .map_err(device_error)?;
            self.pinned = Some(pinned);
        }
        let pinned = self
            .pinned
            .as_mut()
            .ok_or_else(|| EngineError::Device("no page-locked buffer".into()))?;
        // The buffer may be larger than this batch and the copy writes as many values as its
        // destination holds, so it gets exactly `count`.
        let host = &mut pinned.as_mut_slice().map_err(device_error)?[..count];
        stream.memcpy_dtoh(&view, host).map_err(device_error)?;
        // A plain slice destination is not synchronised by the copy itself: wait for it here.
        stream.synchronize().map_err(device_error)?;
        Ok(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_any_shape_in_row_major_order() {
        let t = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let mut copy = HostCopy::new();
        assert_eq!(
            copy.copy(&t).unwrap(),
            (0..12).map(|v| v as f32).collect::<Vec<_>>()
        );
        // A transposed (strided) view comes out in its own row-major order.
        let tt = t.t().unwrap();
        assert_eq!(copy.copy(&tt).unwrap()[..4], [0.0, 4.0, 8.0, 1.0]);
    }
}
