use crate::{Descriptor, OracleError, RgbImage};

/// Query counts of an oracle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueryStats {
    /// Images answered by the black box itself: every one counts, one image one query.
    pub queries: u64,
    /// Images answered from a cache without asking the black box (not queries).
    pub cached: u64,
}

/// A black box that maps a face image to a descriptor, and nothing else.
///
/// Every image is one query, as MCS2018's black box counted them, even when an adapter
/// batches images internally for speed. Implementations must be usable from several
/// threads at once.
pub trait Oracle: Send + Sync {
    /// A short name for messages ("faceapi", "http://127.0.0.1:8080").
    fn name(&self) -> String;

    /// Descriptor length, when known without a query.
    fn descriptor_len(&self) -> Option<usize>;

    /// One descriptor per image, in order. Each image counts as one query; a call that
    /// would go past a budget fails as a whole and answers nothing.
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError>;

    /// Queries answered so far.
    fn stats(&self) -> QueryStats;
}

impl<T: Oracle + ?Sized> Oracle for std::sync::Arc<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn descriptor_len(&self) -> Option<usize> {
        (**self).descriptor_len()
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        (**self).describe(images)
    }
    fn stats(&self) -> QueryStats {
        (**self).stats()
    }
}

impl<T: Oracle + ?Sized> Oracle for Box<T> {
    fn name(&self) -> String {
        (**self).name()
    }
    fn descriptor_len(&self) -> Option<usize> {
        (**self).descriptor_len()
    }
    fn describe(&self, images: &[RgbImage]) -> Result<Vec<Descriptor>, OracleError> {
        (**self).describe(images)
    }
    fn stats(&self) -> QueryStats {
        (**self).stats()
    }
}
