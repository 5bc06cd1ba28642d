use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn main() {
    let dev = Device::flex();
    let cases: [(usize, usize, usize, usize, usize, usize, usize); 9] = [
        // c_in, c_out, side, k, stride, pad, count in net
        (3, 32, 150, 7, 2, 0, 1),
        (32, 32, 35, 3, 1, 1, 6),
        (32, 64, 35, 3, 2, 0, 1),
        (64, 64, 17, 3, 1, 1, 7),
        (64, 128, 17, 3, 2, 0, 1),
        (128, 128, 8, 3, 1, 1, 5),
        (128, 256, 8, 3, 2, 0, 1),
        (256, 256, 4, 3, 1, 1, 4),
        (256, 256, 3, 3, 1, 1, 1),
    ];
    for n in [1usize, 32] {
        let mut total = 0.0;
        for (ci, co, s, k, st, p, cnt) in cases {
            let x = Tensor::<4>::random([n, ci, s, s], Distribution::Default, &dev);
            let w = Tensor::<4>::random([co, ci, k, k], Distribution::Default, &dev);
            let b = Tensor::<1>::random([co], Distribution::Default, &dev);
            let run = || {
                conv2d(
                    x.clone(),
                    w.clone(),
                    Some(b.clone()),
                    ConvOptions::new([st, st], [p, p], [1, 1], 1),
                )
                .into_data()
            };
            run();
            let iters = 20;
            let t = Instant::now();
            let mut out = 0;
            for _ in 0..iters {
                out = run().num_elements();
            }
            let ms = t.elapsed().as_secs_f64() * 1e3 / iters as f64;
            let os = out / n / co;
            let macs = (os * co * k * k * ci) as f64;
            println!("n={n:2} conv {ci:3}->{co:3} {s:3}x{s:<3} k{k} s{st}: {:.3} ms/img, x{cnt}, {:.1} GMAC/s", ms / n as f64, macs * n as f64 / ms / 1e6);
            total += ms / n as f64 * cnt as f64;
        }
        println!("n={n}: conv total {total:.2} ms/img");
    }
}
