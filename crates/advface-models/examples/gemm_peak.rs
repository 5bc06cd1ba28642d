use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn main() {
    let dev = Device::flex();
    for (m, k, n) in [
        (512usize, 512usize, 512usize),
        (1024, 1024, 1024),
        (32, 288, 1225),
        (256, 2304, 16),
        (64, 576, 289),
    ] {
        let a = Tensor::<2>::random([m, k], Distribution::Default, &dev);
        let b = Tensor::<2>::random([k, n], Distribution::Default, &dev);
        a.clone().matmul(b.clone()).into_data();
        let it = 20;
        let t = Instant::now();
        for _ in 0..it {
            a.clone().matmul(b.clone()).into_data();
        }
        let s = t.elapsed().as_secs_f64() / it as f64;
        println!(
            "{m}x{k}x{n}: {:.3} ms, {:.1} GMAC/s",
            s * 1e3,
            (m * k * n) as f64 / s / 1e9
        );
    }
}
