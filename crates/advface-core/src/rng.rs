//! Small seeded generators, without a dependency, so every random choice is reproducible
//! from its seed and no library update can change a stream. Two streams, both fixed
//! forever (published runs depend on them bit for bit):
//!
//! - [`SplitMix64`]: the attacks' generator (input diversity, the estimator's directions);
//! - [`Xoshiro256`]: the search's generator (differential evolution, the Square attack),
//!   xoshiro256** seeded through SplitMix64.

/// The SplitMix64 step (Steele, Lea, Flood 2014): advances `x`, returns the next output.
fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 (Steele, Lea, Flood 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed` (the state is `seed ^ 0x9E3779B97F4A7C15`, as the attacks
    /// have always seeded it).
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// A generator whose state is `state` itself (the reference code's seeding).
    pub fn from_state(state: u64) -> Self {
        SplitMix64(state)
    }

    /// A generator for item `stream` of a run seeded with `seed` (pair index, source index).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = SplitMix64::new(seed);
        r.0 = r.0.wrapping_add(stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next_u64();
        r
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        splitmix64(&mut self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `lo..=hi`.
    ///
    /// # Panics
    /// When `lo > hi`.
    pub fn range_i32(&mut self, lo: i32, hi: i32) -> i32 {
        assert!(lo <= hi, "range_i32({lo}, {hi}): empty range");
        let span = (hi - lo + 1) as u64;
        lo + (self.next_u64() % span) as i32
    }
}

/// xoshiro256** (Blackman and Vigna 2018), state filled by SplitMix64 from the seed.
///
/// It does not reproduce numpy's stream: the searches match scipy in distribution, not bit
/// for bit.
#[derive(Debug, Clone)]
pub struct Xoshiro256 {
    s: [u64; 4],
}

impl Xoshiro256 {
    /// A generator from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { s }
    }

    /// A generator for sub-stream `stream` of a run seeded with `seed` (a round, a pair).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let _ = splitmix64(&mut x);
        Self::new(splitmix64(&mut x))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `[0, 1)` (53 random bits).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's method).
    ///
    /// # Panics
    /// When `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform index in `0..n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform integer in `lo..=hi`.
    ///
    /// # Panics
    /// When `lo > hi`.
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        assert!(lo <= hi, "range_i64({lo}, {hi}): empty range");
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Shuffles `v` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.index(i + 1);
            v.swap(i, j);
        }
    }

    /// Moves a uniformly drawn ordered sample of `k` distinct elements of `v` to its front
    /// (a partial Fisher-Yates shuffle: `k` draws instead of `v.len()`).
    pub fn partial_shuffle<T>(&mut self, v: &mut [T], k: usize) {
        let n = v.len();
        for i in 0..k.min(n) {
            let j = i + self.index(n - i);
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(mut next: impl FnMut() -> u64) -> Vec<u64> {
        (0..3).map(|_| next()).collect()
    }

    /// The streams as they were before the three copies became this module (values from
    /// the C reference code of SplitMix64, and from the copies themselves).
    #[test]
    fn the_streams_are_the_ones_published_runs_used() {
        let mut r = SplitMix64::from_state(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        let mut a = SplitMix64::new(7);
        assert_eq!(
            draws(|| a.next_u64()),
            [
                17039259473404265729,
                18363971414914884509,
                8043341295829897994
            ]
        );
        let mut a = SplitMix64::derive(7, 1);
        assert_eq!(
            draws(|| a.next_u64()),
            [
                15013951788225242225,
                17676465280881553577,
                10367910356401339853
            ]
        );
        let mut x = Xoshiro256::new(0);
        assert_eq!(
            draws(|| x.next_u64()),
            [
                11091344671253066420,
                13793997310169335082,
                1900383378846508768
            ]
        );
        let mut x = Xoshiro256::derive(3, 5);
        assert_eq!(
            draws(|| x.next_u64()),
            [
                16055223293616777590,
                2373138567616446449,
                7975580972990424925
            ]
        );
    }

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let draw = |mut r: Xoshiro256| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        assert_eq!(draw(Xoshiro256::new(7)), draw(Xoshiro256::new(7)));
        assert_ne!(draw(Xoshiro256::new(7)), draw(Xoshiro256::new(8)));
        assert_ne!(
            draw(Xoshiro256::derive(7, 1)),
            draw(Xoshiro256::derive(7, 2))
        );
        let draw = |mut r: SplitMix64| (0..4).map(|_| r.next_u64()).collect::<Vec<_>>();
        assert_eq!(
            draw(SplitMix64::derive(7, 1)),
            draw(SplitMix64::derive(7, 1))
        );
        assert_ne!(
            draw(SplitMix64::derive(7, 1)),
            draw(SplitMix64::derive(7, 2))
        );
    }

    #[test]
    fn draws_stay_in_range_and_are_roughly_uniform() {
        let mut r = Xoshiro256::new(1);
        let mut counts = [0usize; 7];
        let mut sum = 0.0;
        for _ in 0..70_000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            sum += u;
            counts[r.index(7)] += 1;
            let k = r.range_i64(-2, 2);
            assert!((-2..=2).contains(&k));
        }
        assert!((sum / 70_000.0 - 0.5).abs() < 0.01);
        for c in counts {
            assert!((c as f64 - 10_000.0).abs() < 500.0, "{counts:?}");
        }
        let mut r = SplitMix64::new(1);
        for _ in 0..1000 {
            let u = r.uniform();
            assert!((0.0..1.0).contains(&u));
            let k = r.range_i32(-2, 2);
            assert!((-2..=2).contains(&k));
        }
    }

    #[test]
    #[should_panic(expected = "empty range")]
    fn an_empty_range_is_refused_in_release_too() {
        SplitMix64::new(0).range_i32(3, 2);
    }

    #[test]
    fn shuffles_are_permutations() {
        let mut r = Xoshiro256::new(3);
        let mut v: Vec<usize> = (0..20).collect();
        r.shuffle(&mut v);
        r.partial_shuffle(&mut v, 6);
        let mut s = v.clone();
        s.sort_unstable();
        assert_eq!(s, (0..20).collect::<Vec<_>>());
    }
}
