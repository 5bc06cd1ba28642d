//! Helpers of the attack tests around the test kit's fake differentiable model (a fixed
//! random linear map of the pixels, exact gradients), served as a black box by `LocalOracle`.

#![allow(dead_code)]

use std::sync::Arc;

use advface_core::Differentiable;

// The fake model and the test face are the test kit's (advface-testkit): one copy for
// every crate's tests.
pub use advface_testkit::textured_face as face;
pub use advface_testkit::Linear;

pub fn arc(l: Linear) -> Arc<Linear> {
    Arc::new(l)
}

/// A one-model ensemble of `model`, weight 1.
pub fn ensemble(model: &Arc<Linear>) -> advface_attacks::Ensemble {
    let m: Arc<dyn Differentiable> = model.clone();
    advface_attacks::Ensemble::new(vec![advface_attacks::Member {
        model: m,
        weight: 1.0,
    }])
    .unwrap()
}
