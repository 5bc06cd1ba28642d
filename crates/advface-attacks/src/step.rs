//! Step rules: how a gradient becomes a change of the pixels. Each is a part of the one
//! iterative loop ([`crate::attack_pair`]), not a loop of its own.
//!
//! Step sizes are in pixel units of `[0, 1]`. The papers give them in the ImageNet-normalised
//! units their students saw (`(x - mean) / std`); [`NORMALISED_UNIT`] converts.

use serde::{Deserialize, Serialize};

/// One normalised unit in `[0, 1]` pixel units: the mean of the ImageNet channel standard
/// deviations (0.229, 0.224, 0.225), which the MCS2018 teams' students divided by.
pub const NORMALISED_UNIT: f32 = 0.226;

/// A step rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "lowercase")]
pub enum StepRule {
    /// Fast gradient sign: `-eps * sign(g)`. With `top` (the 2nd-place heuristic) only the
    /// components with `|g| > mean(|g|) + std(|g|)` move.
    Fgsm {
        /// Step, `[0, 1]` units. Organisers' baseline: 1e-2 normalised.
        eps: f32,
        /// Move only the strongest components.
        top: bool,
    },
    /// Fast gradient value (2nd place): `-eps * clamp(g / std(g), -2, 2)`.
    Fgvm {
        /// Step, `[0, 1]` units. 2nd place: 0.016 normalised.
        eps: f32,
    },
    /// Momentum (MI-FGSM, Dong et al. 2018): `m = mu m + g / mean|g|`, then the FGVM step of
    /// `m`.
    Momentum {
        /// Step, `[0, 1]` units.
        eps: f32,
        /// Decay of the accumulated gradient (Dong et al.: 1.0; here 0.9).
        mu: f32,
    },
    /// Nesterov (3rd place): the gradient is taken at the look-ahead point `x + mu v`,
    /// `v = mu v + a * clamp(g / std(g), -2, 2)`, `x += v`, with `a` decaying by `decay`
    /// each step (3rd place: mu 0.9, decay 0.98, 40 steps).
    Nesterov {
        /// Initial step `a`, `[0, 1]` units.
        eps: f32,
        /// Velocity decay (0.9).
        mu: f32,
        /// Decay of `a` per step (0.98).
        decay: f32,
    },
    /// Adam on the perturbation (Carlini-Wagner style with an SSIM penalty added by the
    /// loop): `x -= lr * m_hat / (sqrt(v_hat) + 1e-8)`.
    Adam {
        /// Learning rate, `[0, 1]` units per step.
        lr: f32,
        /// First-moment decay (0.9).
        beta1: f32,
        /// Second-moment decay (0.999).
        beta2: f32,
    },
}

impl StepRule {
    /// The organisers' FGSM baseline: sign steps of 1e-2 normalised units.
    pub fn fgsm_baseline() -> Self {
        StepRule::Fgsm {
            eps: 0.01 * NORMALISED_UNIT,
            top: false,
        }
    }

    /// FGVM with the 2nd-place team's step (0.016 normalised units).
    pub fn fgvm() -> Self {
        StepRule::Fgvm {
            eps: 0.016 * NORMALISED_UNIT,
        }
    }

    /// Momentum with FGVM's step.
    pub fn momentum() -> Self {
        StepRule::Momentum {
            eps: 0.016 * NORMALISED_UNIT,
            mu: 0.9,
        }
    }

    /// The 3rd-place team's Nesterov steps.
    pub fn nesterov() -> Self {
        StepRule::Nesterov {
            eps: 0.016 * NORMALISED_UNIT,
            mu: 0.9,
            decay: 0.98,
        }
    }

    /// Adam with a step of about one grey level.
    pub fn adam() -> Self {
        StepRule::Adam {
            lr: 1.0 / 255.0,
            beta1: 0.9,
            beta2: 0.999,
        }
    }

    /// The nominal step size, `[0, 1]` units.
    pub fn eps(&self) -> f32 {
        match *self {
            StepRule::Fgsm { eps, .. }
            | StepRule::Fgvm { eps }
            | StepRule::Momentum { eps, .. }
            | StepRule::Nesterov { eps, .. } => eps,
            StepRule::Adam { lr, .. } => lr,
        }
    }

    /// The same rule with step size `eps` (`lr` for Adam), `[0, 1]` units; the other
    /// settings kept.
    pub fn with_eps(&self, e: f32) -> Self {
        match *self {
            StepRule::Fgsm { top, .. } => StepRule::Fgsm { eps: e, top },
            StepRule::Fgvm { .. } => StepRule::Fgvm { eps: e },
            StepRule::Momentum { mu, .. } => StepRule::Momentum { eps: e, mu },
            StepRule::Nesterov { mu, decay, .. } => StepRule::Nesterov { eps: e, mu, decay },
            StepRule::Adam { beta1, beta2, .. } => StepRule::Adam {
                lr: e,
                beta1,
                beta2,
            },
        }
    }

    /// Fresh per-image state for `len` pixel values.
    pub fn state(&self, len: usize) -> StepState {
        StepState {
            m: vec![0.0; len],
            v: match self {
                StepRule::Adam { .. } => vec![0.0; len],
                _ => Vec::new(),
            },
            t: 0,
        }
    }

    /// Where the gradient is to be taken: `x` itself, or Nesterov's look-ahead `x + mu v`.
    pub fn lookahead(&self, state: &StepState, x: &[f32]) -> Option<Vec<f32>> {
        match *self {
            StepRule::Nesterov { mu, .. } if state.t > 0 => Some(
                x.iter()
                    .zip(&state.m)
                    .map(|(a, v)| (a + mu * v).clamp(0.0, 1.0))
                    .collect(),
            ),
            _ => None,
        }
    }

    /// The change to add to the pixels for gradient `g` of a loss to be lowered, with the
    /// step scaled by `scale` (the loop's adaptive step factor, 1 at first). Advances
    /// `state`; the loop keeps a copy of the state to undo a step the black box refuses.
    pub fn delta(&self, state: &mut StepState, g: &[f32], scale: f32) -> Vec<f32> {
        state.t += 1;
        match *self {
            StepRule::Fgsm { eps, top } => {
                let thr = if top {
                    let (mean, std) = mean_std(g.iter().map(|v| v.abs()));
                    mean + std
                } else {
                    0.0
                };
                g.iter()
                    .map(|&v| {
                        if v.abs() > thr || (!top && v != 0.0) {
                            -eps * scale * v.signum()
                        } else {
                            0.0
                        }
                    })
                    .collect()
            }
            StepRule::Fgvm { eps } => fgvm(g, eps * scale),
            StepRule::Momentum { eps, mu } => {
                let l1 = g.iter().map(|v| v.abs()).sum::<f32>() / g.len().max(1) as f32;
                let inv = if l1 > 0.0 { 1.0 / l1 } else { 0.0 };
                for (m, v) in state.m.iter_mut().zip(g) {
                    *m = mu * *m + v * inv;
                }
                fgvm(&state.m, eps * scale)
            }
            StepRule::Nesterov { eps, mu, decay } => {
                let a = eps * scale * decay.powi(state.t as i32 - 1);
                let step = fgvm(g, a);
                for (m, s) in state.m.iter_mut().zip(&step) {
                    *m = mu * *m + s;
                }
                state.m.clone()
            }
            StepRule::Adam { lr, beta1, beta2 } => {
                let t = state.t as i32;
                let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
                let mut out = Vec::with_capacity(g.len());
                for ((m, v), gi) in state.m.iter_mut().zip(state.v.iter_mut()).zip(g) {
                    *m = beta1 * *m + (1.0 - beta1) * gi;
                    *v = beta2 * *v + (1.0 - beta2) * gi * gi;
                    out.push(-lr * scale * (*m / c1) / ((*v / c2).sqrt() + 1e-8));
                }
                out
            }
        }
    }
}

/// Per-image state of a step rule (momentum, Adam moments, step count).
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    m: Vec<f32>,
    v: Vec<f32>,
    t: u32,
}

/// `-eps * clamp(g / std(g), -2, 2)`.
fn fgvm(g: &[f32], eps: f32) -> Vec<f32> {
    let (_, std) = mean_std(g.iter().copied());
    if std <= 0.0 || !std.is_finite() {
        return vec![0.0; g.len()];
    }
    g.iter()
        .map(|v| -eps * (v / std).clamp(-2.0, 2.0))
        .collect()
}

fn mean_std(values: impl Iterator<Item = f32> + Clone) -> (f32, f32) {
    let (mut n, mut s, mut s2) = (0f64, 0f64, 0f64);
    for v in values {
        let v = f64::from(v);
        n += 1.0;
        s += v;
        s2 += v * v;
    }
    if n == 0.0 {
        return (0.0, 0.0);
    }
    let mean = s / n;
    (
        (mean) as f32,
        ((s2 / n - mean * mean).max(0.0)).sqrt() as f32,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fgvm_clamps_at_two_standard_deviations_and_descends() {
        let g = [1.0, -1.0, 10.0, 0.0];
        let d = StepRule::Fgvm { eps: 0.5 }.delta(&mut StepRule::fgvm().state(4), &g, 1.0);
        let (_, std) = mean_std(g.iter().copied());
        assert!((d[0] + 0.5 / std).abs() < 1e-6);
        assert_eq!(d[2], -1.0);
        assert_eq!(d[3], 0.0);
        // A descent direction.
        assert!(d.iter().zip(&g).map(|(a, b)| a * b).sum::<f32>() < 0.0);
    }

    #[test]
    fn fgsm_top_moves_only_the_strong_components() {
        let g = [0.1, -0.1, 0.1, 5.0, -0.2];
        let rule = StepRule::Fgsm {
            eps: 0.01,
            top: true,
        };
        let d = rule.delta(&mut rule.state(5), &g, 1.0);
        assert_eq!(d, vec![0.0, 0.0, 0.0, -0.01, 0.0]);
        let plain = StepRule::Fgsm {
            eps: 0.01,
            top: false,
        };
        let d = plain.delta(&mut plain.state(5), &g, 1.0);
        assert_eq!(d, vec![-0.01, 0.01, -0.01, -0.01, 0.01]);
    }

    #[test]
    fn nesterov_accumulates_and_decays() {
        let rule = StepRule::Nesterov {
            eps: 1.0,
            mu: 0.5,
            decay: 0.5,
        };
        let mut s = rule.state(2);
        assert!(rule.lookahead(&s, &[0.5, 0.5]).is_none());
        let g = [1.0, -1.0];
        let d1 = rule.delta(&mut s, &g, 1.0);
        // std of [1, -1] is 1: step -a * g with a = 1.
        assert_eq!(d1, vec![-1.0, 1.0]);
        let d2 = rule.delta(&mut s, &g, 1.0);
        // v = 0.5 * v + 0.5 * step.
        assert_eq!(d2, vec![-1.0, 1.0]);
        assert!(rule.lookahead(&s, &[0.5, 0.5]).is_some());
    }

    #[test]
    fn adam_first_step_is_lr_times_sign() {
        let rule = StepRule::Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
        };
        let mut s = rule.state(3);
        let d = rule.delta(&mut s, &[2.0, -0.5, 0.0], 1.0);
        assert!((d[0] + 0.1).abs() < 1e-5 && (d[1] - 0.1).abs() < 1e-5 && d[2] == 0.0);
    }
}
