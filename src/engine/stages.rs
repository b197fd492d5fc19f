//! Where a forward pass spends its time, stage by stage (`neuronxa bench --stages`). Each stage
//! is timed between two synchronisations of the device, so a GPU's queue runs dry at every
//! stage and the stages add up to more than an unsynchronised pass: their shares are what count.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::Device;
use serde::Serialize;

use super::error::{EngineError, Result};

pub struct StageClock {
    device: Device,
    /// In the order the stages first ran.
    totals: Mutex<Vec<StageTime>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    pub stage: &'static str,
    pub seconds: f64,
    /// How often it ran (per layer and batch).
    pub calls: usize,
}

impl StageClock {
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            totals: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f`, the device synchronised before and after, and adds its time to `stage`.
    pub fn time<T>(&self, stage: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.device.synchronize()?;
        let started = Instant::now();
        let out = f()?;
        self.device.synchronize()?;
        self.add(stage, started.elapsed())?;
        Ok(out)
    }

    fn add(&self, stage: &'static str, elapsed: Duration) -> Result<()> {
        let mut totals = self
            .totals
            .lock()
            .map_err(|_| EngineError::Device("a stage clock was poisoned".into()))?;
        match totals.iter_mut().find(|total| total.stage == stage) {
            Some(total) => {
                total.seconds += elapsed.as_secs_f64();
                total.calls += 1;
            }
            None => totals.push(StageTime {
                stage,
                seconds: elapsed.as_secs_f64(),
                calls: 1,
            }),
        }
        Ok(())
    }

    /// Each stage's time so far, in the order the stages first ran.
    pub fn totals(&self) -> Vec<StageTime> {
        self.totals
            .lock()
            .map(|totals| totals.clone())
            .unwrap_or_default()
    }
}

/// `f` timed as `stage` where there is a clock, else simply run.
pub(super) fn timed<T>(
    clock: Option<&StageClock>,
    stage: &'static str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    match clock {
        Some(clock) => clock.time(stage, f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_add_up_in_first_run_order() {
        let clock = StageClock::new(&Device::Cpu);
        for _ in 0..3 {
            clock
                .time("b", || {
                    std::thread::sleep(Duration::from_millis(2));
                    Ok(())
                })
                .unwrap();
            clock.time("a", || Ok(())).unwrap();
        }
        let totals = clock.totals();
        assert_eq!(
            totals
                .iter()
                .map(|t| (t.stage, t.calls))
                .collect::<Vec<_>>(),
            [("b", 3), ("a", 3)]
        );
        assert!(totals[0].seconds >= 0.006);
        assert!(timed(None, "c", || Ok(7)).unwrap() == 7);
        assert!(
            clock
                .time("d", || Err::<(), _>(EngineError::Device("x".into())))
                .is_err()
        );
        // A stage that failed is not counted.
        assert_eq!(clock.totals().len(), 2);
    }
}
