use serde::{Deserialize, Serialize};

/// A face descriptor: the black box's (or a student's) output for one image.
///
/// For face-api.js / dlib it has 128 components; two faces are the same person when the
/// Euclidean distance between their descriptors is below 0.6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Descriptor(pub Vec<f32>);

impl Descriptor {
    /// Number of components.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the descriptor has no components.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Euclidean (L2) distance, accumulated in f64.
    ///
    /// # Panics
    /// When the two descriptors have different lengths (a programming error: descriptors of
    /// one model always share a length, and loaders check it against user input).
    pub fn l2(&self, other: &Descriptor) -> f64 {
        assert_eq!(
            self.len(),
            other.len(),
            "descriptor length mismatch: {} vs {}",
            self.len(),
            other.len()
        );
        self.0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| {
                let d = f64::from(*a) - f64::from(*b);
                d * d
            })
            .sum::<f64>()
            .sqrt()
    }

    /// Euclidean norm.
    pub fn norm(&self) -> f64 {
        self.0
            .iter()
            .map(|a| f64::from(*a) * f64::from(*a))
            .sum::<f64>()
            .sqrt()
    }
}

impl From<Vec<f32>> for Descriptor {
    fn from(v: Vec<f32>) -> Self {
        Descriptor(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_of_a_3_4_5_triangle() {
        let a = Descriptor(vec![0.0, 0.0]);
        let b = Descriptor(vec![3.0, 4.0]);
        assert!((a.l2(&b) - 5.0).abs() < 1e-12);
        assert!((b.norm() - 5.0).abs() < 1e-12);
    }
}
