//! The integration tests of advface-distill, one test binary (one link on 2 cores).

mod collect;
mod eval;
mod train;
