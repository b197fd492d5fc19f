//! Pooled states from the device to the host: one copy per batch, into reused buffers.
//!
//! For a large model the pooled states are gigabytes (8B: 32 layers × 14 336 neurons × 2 × f32 ×
//! 1000 sentences ≈ 3.7 GB), so on a GPU they go through page-locked memory, which the copy
//! engine fills at full bus speed, instead of pageable memory staged by the driver. A copy is
//! started and finished apart ([`HostCopy::start`], [`HostCopy::finish`]) so that the host can
//! hand on one batch's states while the GPU computes the next; two page-locked buffers take
//! turns. On the CPU nothing is copied: the values are lent from the tensor itself.

use candle_core::{DType, Device, Tensor};

use super::error::{EngineError, Result};

/// Brings tensors' values to the host; see the module's note.
#[derive(Default)]
pub struct HostCopy {
    #[cfg(feature = "cuda")]
    slots: [cuda::Slot; 2],
    /// Copies started so far: each pending copy is told apart by its number.
    started: u64,
}

/// A copy on its way to the host; [`HostCopy::finish`] waits for it and lends its values.
pub struct PendingCopy {
    /// On the host, the values themselves. A GPU source is not kept: device memory is freed in
    /// stream order, after the queued copy has read it, so it can serve the next batch.
    host: Option<Tensor>,
    /// On a GPU: which page-locked buffer receives the values, and the copy's number there.
    #[cfg(feature = "cuda")]
    slot: Option<(usize, u64)>,
}

impl HostCopy {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts bringing the values of `tensor` (any shape, read as f32, row-major) to the host.
    /// On a GPU the copy is queued behind the work that computes the tensor and this returns at
    /// once. Up to two copies may be pending; starting a third makes the oldest one's
    /// [`Self::finish`] an error, not stale values.
    pub fn start(&mut self, tensor: &Tensor) -> Result<PendingCopy> {
        let tensor = tensor.to_dtype(DType::F32)?.contiguous()?;
        self.started += 1;
        #[cfg(feature = "cuda")]
        if tensor.device().is_cuda() {
            let slot_index = (self.started % 2) as usize;
            self.slots[slot_index].start(&tensor, self.started)?;
            return Ok(PendingCopy {
                host: None,
                slot: Some((slot_index, self.started)),
            });
        }
        let tensor = if tensor.device().is_cpu() {
            tensor
        } else {
            tensor.to_device(&Device::Cpu)?
        };
        Ok(PendingCopy {
            host: Some(tensor),
            #[cfg(feature = "cuda")]
            slot: None,
        })
    }

    /// Waits for `pending` to arrive and calls `use_values` with its values.
    pub fn finish<R>(
        &mut self,
        pending: PendingCopy,
        use_values: impl FnOnce(&[f32]) -> Result<R>,
    ) -> Result<R> {
        #[cfg(feature = "cuda")]
        if let Some((slot_index, number)) = pending.slot {
            return use_values(self.slots[slot_index].finish(number)?);
        }
        let tensor = pending
            .host
            .ok_or_else(|| EngineError::Device("a copy with nowhere to read from".into()))?;
        let (storage, layout) = tensor.storage_and_layout();
        let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(values)) = &*storage else {
            // Unreachable after the conversions in `start`; an error rather than a panic.
            return Err(EngineError::Device(
                "pooled states did not arrive on the host as f32".into(),
            ));
        };
        let start = layout.start_offset();
        use_values(&values[start..start + layout.shape().elem_count()])
    }

    /// [`Self::start`] and [`Self::finish`] at once.
    pub fn copy<R>(
        &mut self,
        tensor: &Tensor,
        use_values: impl FnOnce(&[f32]) -> Result<R>,
    ) -> Result<R> {
        let pending = self.start(tensor)?;
        self.finish(pending, use_values)
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use candle_core::Tensor;
    use candle_core::cuda_backend::cudarc::driver::{CudaEvent, DriverError, PinnedHostSlice};

    use crate::engine::error::{EngineError, Result};

    fn device_error(e: DriverError) -> EngineError {
        EngineError::Device(format!("copying pooled states to the host: {e}"))
    }

    /// One page-locked buffer, the event recorded after the copy into it, and which copy (by
    /// number) and how many values it holds.
    #[derive(Default)]
    pub(super) struct Slot {
        pinned: Option<PinnedHostSlice<f32>>,
        done: Option<CudaEvent>,
        copy: u64,
        count: usize,
    }

    impl Slot {
        /// Queues the copy of `tensor` (contiguous f32 on a CUDA device) into this buffer.
        pub(super) fn start(&mut self, tensor: &Tensor, number: u64) -> Result<()> {
            let (storage, layout) = tensor.storage_and_layout();
            let candle_core::Storage::Cuda(cuda) = &*storage else {
                return Err(EngineError::Device("expected a CUDA tensor".into()));
            };
            let slice = cuda.as_cuda_slice::<f32>()?;
            let start = layout.start_offset();
            let count = layout.shape().elem_count();
            let view = slice.slice(start..start + count);
            let stream = slice.stream();
            if let Some(done) = &self.done {
                // An earlier copy into this buffer may still be running.
                done.synchronize().map_err(device_error)?;
            }
            if self.pinned.as_ref().is_none_or(|p| p.len() < count) {
                self.pinned = None; // free the smaller buffer first
                // SAFETY: the buffer is written by the copy below before anything reads it.
                // Flags 0: plain page-locked memory (write-combined memory is very slow for the
                // CPU to read).
                let pinned = unsafe { stream.context().alloc_pinned_with_flags::<f32>(count, 0) }
                    .map_err(device_error)?;
                self.pinned = Some(pinned);
            }
            let pinned = self
                .pinned
                .as_mut()
                .ok_or_else(|| EngineError::Device("no page-locked buffer".into()))?;
            // The buffer may be larger than this batch and the copy writes as many values as
            // its destination holds, so it gets exactly `count`.
            let host = &mut pinned.as_mut_slice().map_err(device_error)?[..count];
            stream.memcpy_dtoh(&view, host).map_err(device_error)?;
            // A plain slice destination is not synchronised by the copy itself (and candle
            // turns cudarc's own events off): this event says when the values are there.
            let done = match self.done.take() {
                Some(event) => event,
                None => stream.context().new_event(None).map_err(device_error)?,
            };
            done.record(stream).map_err(device_error)?;
            self.done = Some(done);
            self.copy = number;
            self.count = count;
            Ok(())
        }

        /// Waits for copy `number` and lends its values.
        pub(super) fn finish(&mut self, number: u64) -> Result<&[f32]> {
            if self.copy != number {
                return Err(EngineError::Device(
                    "pooled states were overwritten before they were read (more than two copies \
                     pending)"
                        .into(),
                ));
            }
            if let Some(done) = &self.done {
                done.synchronize().map_err(device_error)?;
            }
            let pinned = self
                .pinned
                .as_ref()
                .ok_or_else(|| EngineError::Device("no page-locked buffer".into()))?;
            Ok(&pinned.as_slice().map_err(device_error)?[..self.count])
        }
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
        let values = copy.copy(&t, |v| Ok(v.to_vec())).unwrap();
        assert_eq!(values, (0..12).map(|v| v as f32).collect::<Vec<_>>());
        // A transposed (strided) view comes out in its own row-major order.
        let tt = t.t().unwrap();
        let first = copy.copy(&tt, |v| Ok(v[..4].to_vec())).unwrap();
        assert_eq!(first, [0.0, 4.0, 8.0, 1.0]);
        // A narrowed view lends only its own values.
        let row = t.narrow(0, 1, 1).unwrap();
        assert_eq!(
            copy.copy(&row, |v| Ok(v.to_vec())).unwrap(),
            [4.0, 5.0, 6.0, 7.0]
        );
    }

    /// On the host a pending copy is the tensor itself, converted to f32. (The GPU's two
    /// buffers and their copy numbers run only on a GPU: `scripts/gpu_check.py`'s parity.)
    #[test]
    fn host_copies_convert_to_f32_finish_in_any_order_and_pass_errors_on() {
        let a = Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap();
        let b = Tensor::new(&[3u8, 4], &Device::Cpu).unwrap();
        let mut copy = HostCopy::new();
        let first = copy.start(&a).unwrap();
        let second = copy.start(&b).unwrap();
        assert_eq!(copy.finish(second, |v| Ok(v.to_vec())).unwrap(), [3.0, 4.0]);
        assert_eq!(copy.finish(first, |v| Ok(v.to_vec())).unwrap(), [1.0, 2.0]);
        // An error from the user of the values comes back as it is.
        let failed = copy.copy(&a, |_| -> Result<()> { Err(EngineError::Cancelled) });
        assert!(matches!(failed, Err(EngineError::Cancelled)));
    }
}
