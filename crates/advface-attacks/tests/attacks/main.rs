//! advface-attacks' integration tests, one binary (each test binary links burn-free but
//! still costs a link on 2 cores): the gradient loop, the estimator, the pair runner.

mod common;
mod gradient_loop;
mod nes;
mod run;
