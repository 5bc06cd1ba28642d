//! [`StudentTrainer`]: a [`Student`] trained with Adam on the MSE to target descriptors,
//! on the CPU, behind an API of bytes and `f32` slices (no burn type). Saving and loading
//! are in [`super::format`].

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};

use super::config::{StudentConfig, StudentError, STUDENT_INPUT_SIZE};
use super::network::Student;

/// Trains and runs a [`Student`] on the CPU (burn's `flex` backend) with Adam and MSE loss.
///
/// Inputs are crops as bytes: `n` images of 112 x 112 x 3 `u8`, row-major HWC (RGB), one
/// after the other (NHWC). Descriptors are `n x descriptor_len` `f32`, row-major.
pub struct StudentTrainer {
    pub(super) config: StudentConfig,
    /// Always `Some` outside [`StudentTrainer::step`] (the optimizer takes the module by value).
    pub(super) model: Option<Student>,
    pub(super) optim: ModuleOptimizer,
    pub(super) device: Device,
    pub(super) steps: u64,
}

impl std::fmt::Debug for StudentTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StudentTrainer")
            .field("config", &self.config)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

/// Adam as PyTorch's defaults (`betas = (0.9, 0.999)`, `eps = 1e-8`, no weight decay), which
/// the teams used; burn's own default epsilon is 1e-5.
pub(super) fn adam() -> ModuleOptimizer {
    AdamConfig::new().with_epsilon(1e-8).init()
}

impl StudentTrainer {
    /// A randomly initialised student, weights drawn from `seed` (the same seed gives the
    /// same weights).
    pub fn new(config: StudentConfig, seed: u64) -> Result<Self, StudentError> {
        config.validate()?;
        let device = Device::flex().autodiff();
        let model = {
            // burn draws parameters lazily (at first use) from one process-wide generator:
            // seed it and draw every parameter now, under a lock, so the weights depend on
            // `seed` alone and not on what other threads draw meanwhile.
            static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
            let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
            device.seed(seed);
            let record = config.init(&device)?.into_record();
            config
                .init(&device)?
                .try_load_record(record)
                .map_err(|e| StudentError::Burn(e.to_string()))?
        };
        Ok(StudentTrainer {
            config,
            model: Some(model),
            optim: adam(),
            device,
            steps: 0,
        })
    }

    /// The student's configuration.
    pub fn config(&self) -> &StudentConfig {
        &self.config
    }

    /// Training steps taken since this trainer was built or loaded.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Parameters of the module as burn counts them: trainable parameters plus the batch norm
    /// running means and variances.
    pub fn num_params(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.num_params())
    }

    /// Parameters the optimizer trains ([`Student::num_trainable_params`]).
    pub fn num_trainable_params(&self) -> usize {
        self.model.as_ref().map_or(0, |m| m.num_trainable_params())
    }

    pub(super) fn model(&self) -> Result<&Student, StudentError> {
        self.model
            .as_ref()
            .ok_or_else(|| StudentError::Burn("the module was lost in a failed step".into()))
    }

    /// Number of crops in `crops_u8`, or an error if its length is not a whole number of
    /// 112 x 112 x 3 crops.
    fn count(crops_u8: &[u8]) -> Result<usize, StudentError> {
        let per = STUDENT_INPUT_SIZE * STUDENT_INPUT_SIZE * 3;
        if crops_u8.is_empty() || !crops_u8.len().is_multiple_of(per) {
            return Err(StudentError::BadInput(format!(
                "crops: {} bytes is not a positive multiple of {per} (112 x 112 x 3)",
                crops_u8.len()
            )));
        }
        Ok(crops_u8.len() / per)
    }

    /// NHWC u8 -> NCHW f32 in [0, 1].
    fn pixels(crops_u8: &[u8], n: usize, device: &Device) -> Tensor<4> {
        let s = STUDENT_INPUT_SIZE;
        let hw = s * s;
        let mut v = vec![0f32; n * 3 * hw];
        for i in 0..n {
            let src = &crops_u8[i * hw * 3..(i + 1) * hw * 3];
            let dst = &mut v[i * 3 * hw..(i + 1) * 3 * hw];
            for p in 0..hw {
                for c in 0..3 {
                    dst[c * hw + p] = src[p * 3 + c] as f32 / 255.0;
                }
            }
        }
        Tensor::<4>::from_data(TensorData::new(v, [n, 3, s, s]), device)
    }

    fn to_vec(data: TensorData) -> Result<Vec<f32>, StudentError> {
        data.try_into_vec::<f32>()
            .map_err(|e| StudentError::Burn(format!("reading a tensor back: {e:?}")))
    }

    /// One Adam step on the mean squared error between the student's descriptors of
    /// `crops_u8` and `targets`, with batch statistics in the batch norms.
    ///
    /// `lr` is Adam's learning rate for this step (the schedule belongs to the caller).
    /// Returns the MSE per element (mean over `n x descriptor_len`) before the step.
    ///
    /// # Shapes
    /// - `crops_u8`: `n x 112 x 112 x 3` bytes (NHWC, RGB), `n >= 2` when
    ///   [`StudentConfig::needs_batch_of_two`].
    /// - `targets`: `n x descriptor_len` values.
    pub fn step(&mut self, crops_u8: &[u8], targets: &[f32], lr: f64) -> Result<f32, StudentError> {
        let n = Self::count(crops_u8)?;
        self.check_step(n, targets, lr)?;
        let x = Self::pixels(crops_u8, n, &self.device);
        self.step_tensor(x, targets, lr)
    }

    /// As [`step`](Self::step), on pixels already in `[0, 1]` of any size the network takes
    /// (`advface bench student` times other input sizes with it).
    ///
    /// # Shapes
    /// - `pixels`: `n x 3 x h x w` values (NCHW), `h, w >= 32`.
    /// - `targets`: `n x descriptor_len` values.
    pub fn step_pixels(
        &mut self,
        pixels: &[f32],
        shape: [usize; 4],
        targets: &[f32],
        lr: f64,
    ) -> Result<f32, StudentError> {
        let [n, c, h, w] = shape;
        if n == 0 || c != 3 || h < 32 || w < 32 || pixels.len() != n * c * h * w {
            return Err(StudentError::BadInput(format!(
                "pixels: shape {shape:?} (need n >= 1, 3 channels, at least 32 x 32) with {} values",
                pixels.len()
            )));
        }
        self.check_step(n, targets, lr)?;
        let x = Tensor::<4>::from_data(TensorData::new(pixels.to_vec(), shape), &self.device);
        self.step_tensor(x, targets, lr)
    }

    fn check_step(&self, n: usize, targets: &[f32], lr: f64) -> Result<(), StudentError> {
        let d = self.config.descriptor_len;
        if targets.len() != n * d {
            return Err(StudentError::BadInput(format!(
                "targets: expected {} values ({n} crops x {d}), got {}",
                n * d,
                targets.len()
            )));
        }
        if let Some(i) = targets.iter().position(|t| !t.is_finite()) {
            return Err(StudentError::BadInput(format!(
                "targets: value {i} is not finite"
            )));
        }
        if !(lr.is_finite() && lr > 0.0) {
            return Err(StudentError::BadInput(format!(
                "learning rate must be positive and finite, got {lr}"
            )));
        }
        if n < 2 && self.config.needs_batch_of_two() {
            return Err(StudentError::BadInput(
                "a batch of one cannot train an output batch norm or mobilefacenet's batch norms \
                 over 1 x 1 maps (their batch variance is zero)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn step_tensor(&mut self, x: Tensor<4>, targets: &[f32], lr: f64) -> Result<f32, StudentError> {
        let n = x.dims()[0];
        let d = self.config.descriptor_len;
        let t = Tensor::<2>::from_data(TensorData::new(targets.to_vec(), [n, d]), &self.device);
        let diff = self.model()?.forward(x) - t;
        let loss = (diff.clone() * diff).mean();
        let value = Self::to_vec(loss.to_data())?;
        let value = value
            .first()
            .copied()
            .ok_or_else(|| StudentError::Burn("empty loss".into()))?;
        let grads = GradientsParams::from_grads(loss.backward(), self.model()?);
        let model = self
            .model
            .take()
            .ok_or_else(|| StudentError::Burn("no module".into()))?;
        self.model = Some(self.optim.step(lr, model, grads));
        self.steps += 1;
        Ok(value)
    }

    /// Descriptors of `crops_u8` in eval mode (batch norm running statistics), as
    /// `n x descriptor_len` values, row-major.
    ///
    /// # Shapes
    /// - `crops_u8`: `n x 112 x 112 x 3` bytes (NHWC, RGB).
    pub fn predict(&self, crops_u8: &[u8], n: usize) -> Result<Vec<f32>, StudentError> {
        let got = Self::count(crops_u8)?;
        if got != n {
            return Err(StudentError::BadInput(format!(
                "crops: expected {n} crops, got {got}"
            )));
        }
        let model = self.model()?.valid();
        let device = self.device.clone().without_autodiff();
        let x = Self::pixels(crops_u8, n, &device);
        Self::to_vec(model.forward(x).into_data())
    }

    /// Descriptors of `pixels` in eval mode and the gradient with respect to the pixels of
    /// `sum(descriptors * cotangent)`.
    ///
    /// # Shapes
    /// - `pixels`: `n x 3 x h x w` values in `[0, 1]` (NCHW, the project's `PixelBatch`).
    /// - `cotangent`: `n x descriptor_len` values.
    /// - returns (`n x descriptor_len` descriptors, `n x 3 x h x w` gradient).
    pub fn descriptors_and_grad(
        &self,
        pixels: &[f32],
        shape: [usize; 4],
        cotangent: &[f32],
    ) -> Result<(Vec<f32>, Vec<f32>), StudentError> {
        self.descriptors_and_vjp(pixels, shape, |_| cotangent.to_vec())
    }

    /// As [`descriptors_and_grad`](Self::descriptors_and_grad), with the cotangent computed
    /// from the descriptors of the same forward pass (`cotangent` receives the
    /// `n x descriptor_len` descriptors and returns `dL/dD`): one forward and one backward
    /// pass for the gradient of any loss of the descriptors.
    pub fn descriptors_and_vjp(
        &self,
        pixels: &[f32],
        shape: [usize; 4],
        cotangent: impl FnOnce(&[f32]) -> Vec<f32>,
    ) -> Result<(Vec<f32>, Vec<f32>), StudentError> {
        let [n, c, h, w] = shape;
        let d = self.config.descriptor_len;
        if n == 0 || c != 3 || h < 32 || w < 32 || pixels.len() != n * c * h * w {
            return Err(StudentError::BadInput(format!(
                "pixels: shape {shape:?} (need n >= 1, 3 channels, at least 32 x 32) with {} values",
                pixels.len()
            )));
        }
        let model = self.model()?.valid();
        let x = Tensor::<4>::from_data(TensorData::new(pixels.to_vec(), shape), &self.device)
            .require_grad();
        let out = model.forward(x.clone());
        let descriptors = Self::to_vec(out.to_data())?;
        let cot = cotangent(&descriptors);
        if cot.len() != n * d {
            return Err(StudentError::BadInput(format!(
                "cotangent: expected {} values ({n} x {d}), got {}",
                n * d,
                cot.len()
            )));
        }
        let g = Tensor::<2>::from_data(
            TensorData::new(cot, [n, d]),
            &self.device.clone().without_autodiff(),
        );
        let grads = (out * g).sum().backward();
        let grad = x.grad(&grads).ok_or_else(|| {
            StudentError::Burn("autodiff returned no gradient for the input".into())
        })?;
        Ok((descriptors, Self::to_vec(grad.into_data())?))
    }
}
