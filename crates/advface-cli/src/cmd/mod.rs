pub mod bench;
pub mod blackbox;
pub mod describe;
pub mod distill;
pub mod prepare;
pub mod serve;
pub mod ssim;
