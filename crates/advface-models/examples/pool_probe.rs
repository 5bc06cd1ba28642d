use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use std::time::Instant;

fn pool_pairs(x: Tensor<4>) -> Tensor<4> {
    // 3x3 stride 2 valid on even sides
    let [n, c, h, w] = x.dims();
    let (oh, ow) = ((h - 1) / 2, (w - 1) / 2);
    let along_w = |x: Tensor<4>, rows: usize| {
        let e = x.clone().narrow(3, 0, 2 * ow).reshape([n, c, rows, ow, 2]);
        let f = x
            .narrow(3, 2, 2 * ow)
            .reshape([n, c, rows, ow, 2])
            .narrow(4, 0, 1);
        e.clone()
            .narrow(4, 0, 1)
            .max_pair(e.narrow(4, 1, 1))
            .max_pair(f)
            .reshape([n, c, rows, ow])
    };
    let m = along_w(x, h); // [n,c,h,ow]
    let e = m.clone().narrow(2, 0, 2 * oh).reshape([n, c, oh, 2, ow]);
    let f = m
        .narrow(2, 2, 2 * oh)
        .reshape([n, c, oh, 2, ow])
        .narrow(3, 0, 1);
    e.clone()
        .narrow(3, 0, 1)
        .max_pair(e.narrow(3, 1, 1))
        .max_pair(f)
        .reshape([n, c, oh, ow])
}

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
        let a = Tensor::<4>::random([n, 32, 72, 72], Distribution::Default, &dev);
        let r1 = max_pool2d(a.clone(), MaxPoolOptions::new([3, 3]).with_stride([2, 2]));
        let r2 = pool_pairs(a.clone());
        let d: f32 = (r1 - r2).abs().max().into_scalar();
        println!("diff {d}");
        t("max_pool2d", n, || {
            max_pool2d(a.clone(), MaxPoolOptions::new([3, 3]).with_stride([2, 2])).into_data();
        });
        t("pairs", n, || {
            pool_pairs(a.clone()).into_data();
        });
        let img = Tensor::<4>::random([n, 3, 112, 112], Distribution::Default, &dev);
        let idx: Vec<i64> = (0..150).map(|o| (o * 112 / 150) as i64).collect();
        let lo = Tensor::<1, Int>::from_data(TensorData::new(idx.clone(), [150]), &dev);
        let hi = Tensor::<1, Int>::from_data(
            TensorData::new(
                idx.iter().map(|i| (i + 1).min(111)).collect::<Vec<_>>(),
                [150],
            ),
            &dev,
        );
        let fw = Tensor::<4>::random([1, 1, 1, 150], Distribution::Default, &dev);
        let fh = Tensor::<4>::random([1, 1, 150, 1], Distribution::Default, &dev);
        t("resize select+lerp", n, || {
            let a = img.clone().select(3, lo.clone());
            let b = img.clone().select(3, hi.clone());
            let r = a.clone() + (b - a) * fw.clone();
            let a = r.clone().select(2, lo.clone());
            let b = r.select(2, hi.clone());
            (a.clone() + (b - a) * fh.clone()).into_data();
        });
        let rows = Tensor::<4>::random([1, 1, 150, 112], Distribution::Default, &dev);
        let cols = Tensor::<4>::random([1, 1, 112, 150], Distribution::Default, &dev);
        t("resize 2 matmuls", n, || {
            rows.clone()
                .matmul(img.clone().matmul(cols.clone()))
                .into_data();
        });
        let cols2 = Tensor::<2>::random([112, 150], Distribution::Default, &dev);
        let rows3 = Tensor::<3>::random([1, 150, 112], Distribution::Default, &dev);
        t("resize 2d matmul + 3d", n, || {
            let r = img
                .clone()
                .reshape([n * 3 * 112, 112])
                .matmul(cols2.clone())
                .reshape([n * 3, 112, 150]);
            rows3.clone().matmul(r).into_data();
        });
    }
}
