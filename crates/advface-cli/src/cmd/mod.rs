pub mod bench;
pub mod blackbox;
pub mod describe;
pub mod prepare;
pub mod serve;
pub mod ssim;
