use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions, PadMode};
use burn::tensor::{Device, Distribution, Tensor};
use std::time::Instant;
fn t(label: &str, n: usize, mut f: impl FnMut()) {
    f();
    let it = 30;
    let s = Instant::now();
    for _ in 0..it {
        f();
    }
    println!(
        "n={n:2} {label:40} {:.3} ms/img",
        s.elapsed().as_secs_f64() * 1e3 / it as f64 / n as f64
    );
}
fn main() {
    let dev = Device::flex();
    for n in [1usize, 32] {
        let img = Tensor::<4>::random([n, 3, 112, 112], Distribution::Default, &dev);
        let rows = Tensor::<4>::random([1, 1, 150, 112], Distribution::Default, &dev);
        let cols = Tensor::<4>::random([1, 1, 112, 150], Distribution::Default, &dev);
        t("resize (2 matmuls)", n, || {
            rows.clone()
                .matmul(img.clone().matmul(cols.clone()))
                .into_data();
        });
        let a = Tensor::<4>::random([n, 32, 72, 72], Distribution::Default, &dev);
        t("relu 32x72x72", n, || {
            relu(a.clone()).into_data();
        });
        t("maxpool 3/2 on 32x72x72", n, || {
            max_pool2d(a.clone(), MaxPoolOptions::new([3, 3]).with_stride([2, 2])).into_data();
        });
        let b = Tensor::<4>::random([n, 32, 35, 35], Distribution::Default, &dev);
        t("add+relu 32x35x35", n, || {
            relu(b.clone() + b.clone()).into_data();
        });
        t("avgpool 2 on 32x35x35", n, || {
            avg_pool2d(b.clone(), AvgPoolOptions::new([2, 2])).into_data();
        });
        let c = Tensor::<4>::random([n, 256, 1, 1], Distribution::Default, &dev);
        t("pad 256x1x1 -> 2x2", n, || {
            c.clone()
                .pad([(0, 1), (0, 1)], PadMode::Constant(0.0))
                .into_data();
        });
        let d = Tensor::<4>::random([n, 32, 17, 17], Distribution::Default, &dev);
        t("cat zeros 32->64 17x17", n, || {
            Tensor::cat(vec![d.clone(), Tensor::zeros([n, 32, 17, 17], &dev)], 1).into_data();
        });
    }
}
