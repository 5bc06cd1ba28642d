//! Differential evolution with the semantics of `scipy.optimize.differential_evolution`
//! (scipy 1.17, `polish=False`, no constraints, no integrality).
//!
//! What follows scipy exactly:
//! - the population holds `max(5, popsize * N')` members, `N'` the number of dimensions
//!   whose bounds are not equal (at least 1);
//! - members live in `[0, 1]^N` and are scaled to the bounds as
//!   `0.5 (lo + hi) + (u - 0.5) |hi - lo|`;
//! - initialisation by Latin hypercube (one uniform draw in each of the `NP` strata of every
//!   dimension, strata permuted per dimension) or uniformly at random;
//! - the twelve strategies (`best1`, `rand1`, `randtobest1`, `currenttobest1`, `best2`,
//!   `rand2`, each with binomial or exponential crossover), the sample indices drawn
//!   without replacement and never the candidate itself, binomial crossover forcing one
//!   random dimension, exponential crossover copying a run of dimensions from a random
//!   start as scipy's loop does;
//! - mutation as a constant or dithered: one factor drawn uniformly from `[min, max)` at
//!   the start of every generation;
//! - trial values outside `[0, 1]` replaced by a fresh uniform value (`_ensure_constraint`);
//! - a trial replaces its member when its energy is lower *or equal*; the best member is
//!   kept at index 0 by swapping (`_promote_lowest_energy`), after every improvement of
//!   the best in `immediate` updating, once per generation in `deferred` updating;
//! - the convergence test after every generation: no infinite energy and
//!   `std(energies) <= atol + tol * |mean(energies)|` (population standard deviation).
//!
//! Where it differs, on purpose:
//! - the random stream is this crate's own [`Rng`], not numpy's: runs match scipy in
//!   distribution, not bit for bit (see the `de_scipy` test and `tools/de_reference.py`);
//! - the evaluation budget is exact: an evaluation that would go past `max_evals` is never
//!   made (scipy's immediate mode may make one more than `maxfun`); a batch is cut to the
//!   evaluations left, as scipy's `_calculate_population_energies` cuts it;
//! - the initial population is evaluated as one batch in both updating modes (its members
//!   do not depend on each other); in `immediate` mode every trial is then one call with
//!   one candidate;
//! - a NaN energy is taken as `+inf` (scipy would keep a NaN member forever, since no trial
//!   compares `<=` to NaN);
//! - no polishing.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::SearchError;

/// Mutation strategies, named as scipy names them (`"best1bin"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// `best + F (r0 - r1)`, binomial crossover (scipy's default).
    #[default]
    Best1Bin,
    /// `best + F (r0 - r1)`, exponential crossover.
    Best1Exp,
    /// `r0 + F (r1 - r2)`, binomial.
    Rand1Bin,
    /// `r0 + F (r1 - r2)`, exponential.
    Rand1Exp,
    /// `r0 + F (best - r0) + F (r1 - r2)`, binomial.
    RandToBest1Bin,
    /// `r0 + F (best - r0) + F (r1 - r2)`, exponential.
    RandToBest1Exp,
    /// `x + F (best - x + r0 - r1)`, binomial.
    CurrentToBest1Bin,
    /// `x + F (best - x + r0 - r1)`, exponential.
    CurrentToBest1Exp,
    /// `best + F (r0 + r1 - r2 - r3)`, binomial.
    Best2Bin,
    /// `best + F (r0 + r1 - r2 - r3)`, exponential.
    Best2Exp,
    /// `r0 + F (r1 + r2 - r3 - r4)`, binomial.
    Rand2Bin,
    /// `r0 + F (r1 + r2 - r3 - r4)`, exponential.
    Rand2Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Base {
    Best1,
    Rand1,
    RandToBest1,
    CurrentToBest1,
    Best2,
    Rand2,
}

impl Strategy {
    /// Every strategy, in scipy's order of its documentation.
    pub const ALL: [Strategy; 12] = [
        Strategy::Best1Bin,
        Strategy::Best1Exp,
        Strategy::Rand1Exp,
        Strategy::RandToBest1Exp,
        Strategy::CurrentToBest1Exp,
        Strategy::Best2Exp,
        Strategy::Rand2Exp,
        Strategy::RandToBest1Bin,
        Strategy::CurrentToBest1Bin,
        Strategy::Best2Bin,
        Strategy::Rand2Bin,
        Strategy::Rand1Bin,
    ];

    /// scipy's name of the strategy.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Best1Bin => "best1bin",
            Strategy::Best1Exp => "best1exp",
            Strategy::Rand1Bin => "rand1bin",
            Strategy::Rand1Exp => "rand1exp",
            Strategy::RandToBest1Bin => "randtobest1bin",
            Strategy::RandToBest1Exp => "randtobest1exp",
            Strategy::CurrentToBest1Bin => "currenttobest1bin",
            Strategy::CurrentToBest1Exp => "currenttobest1exp",
            Strategy::Best2Bin => "best2bin",
            Strategy::Best2Exp => "best2exp",
            Strategy::Rand2Bin => "rand2bin",
            Strategy::Rand2Exp => "rand2exp",
        }
    }

    /// The strategy of scipy's name, `None` for an unknown name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    fn base(self) -> Base {
        match self {
            Strategy::Best1Bin | Strategy::Best1Exp => Base::Best1,
            Strategy::Rand1Bin | Strategy::Rand1Exp => Base::Rand1,
            Strategy::RandToBest1Bin | Strategy::RandToBest1Exp => Base::RandToBest1,
            Strategy::CurrentToBest1Bin | Strategy::CurrentToBest1Exp => Base::CurrentToBest1,
            Strategy::Best2Bin | Strategy::Best2Exp => Base::Best2,
            Strategy::Rand2Bin | Strategy::Rand2Exp => Base::Rand2,
        }
    }

    fn binomial(self) -> bool {
        matches!(
            self,
            Strategy::Best1Bin
                | Strategy::Rand1Bin
                | Strategy::RandToBest1Bin
                | Strategy::CurrentToBest1Bin
                | Strategy::Best2Bin
                | Strategy::Rand2Bin
        )
    }

    /// Members other than the candidate the strategy draws.
    fn samples_needed(self) -> usize {
        match self.base() {
            Base::Best1 | Base::CurrentToBest1 => 2,
            Base::Rand1 | Base::RandToBest1 => 3,
            Base::Best2 => 4,
            Base::Rand2 => 5,
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Strategy {
    type Err = SearchError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(s).ok_or_else(|| {
            SearchError::Config(format!(
                "unknown DE strategy '{s}' (one of: {})",
                Self::ALL.map(Strategy::name).join(", ")
            ))
        })
    }
}

/// The mutation factor `F`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mutation {
    /// The same `F` in every generation, in `[0, 2)`.
    Constant(f64),
    /// Dithering: `F` drawn uniformly from `[min, max)` once per generation (scipy
    /// `mutation=(min, max)`; both in `[0, 2)`, given in either order).
    Dither(f64, f64),
}

impl Default for Mutation {
    /// scipy's default, `mutation=(0.5, 1)`.
    fn default() -> Self {
        Mutation::Dither(0.5, 1.0)
    }
}

/// How the initial population is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// scipy's default `'latinhypercube'`.
    #[default]
    LatinHypercube,
    /// scipy's `'random'`: uniform in the bounds.
    Random,
}

/// When a better trial enters the population.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Updating {
    /// scipy's default: each trial is evaluated alone and may replace its member (and the
    /// best) at once, so later trials of the same generation see it.
    #[default]
    Immediate,
    /// All trials of a generation are made from the same population and evaluated as one
    /// batch (what a black box with batched queries wants), then the population is updated.
    Deferred,
}

/// Settings of [`differential_evolution`]. The default is scipy's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeConfig {
    /// Mutation strategy (scipy default: `best1bin`).
    pub strategy: Strategy,
    /// Population size per varying dimension: the population has
    /// `max(5, popsize * N)` members (scipy default: 15).
    pub popsize: usize,
    /// Generations at most, the initial population not counted (scipy default: 1000).
    pub maxiter: usize,
    /// Relative tolerance of the convergence test (scipy default: 0.01).
    pub tol: f64,
    /// Absolute tolerance of the convergence test (scipy default: 0; a negative value
    /// turns the test off).
    pub atol: f64,
    /// Mutation factor (scipy default: dithered in `[0.5, 1)`).
    pub mutation: Mutation,
    /// Crossover probability `CR`, in `[0, 1]` (scipy default: 0.7).
    pub recombination: f64,
    /// Initial population (scipy default: Latin hypercube).
    pub init: Init,
    /// Updating mode (scipy default: immediate).
    pub updating: Updating,
    /// Seed of every random draw (scipy: `rng`).
    pub seed: u64,
    /// Objective evaluations at most, `None` for no limit (scipy's `maxfun`, default
    /// infinite); never exceeded.
    pub max_evals: Option<u64>,
}

impl Default for DeConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Best1Bin,
            popsize: 15,
            maxiter: 1000,
            tol: 0.01,
            atol: 0.0,
            mutation: Mutation::default(),
            recombination: 0.7,
            init: Init::LatinHypercube,
            updating: Updating::Immediate,
            seed: 0,
            max_evals: None,
        }
    }
}

/// Why a run stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The convergence test passed (scipy `success = True`).
    Converged,
    /// `maxiter` generations ran.
    MaxIter,
    /// The evaluation budget is spent.
    MaxEvals,
    /// The objective answered fewer values than it was asked for (an outside budget ran
    /// out, or the caller wants to stop).
    ObjectiveStopped,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeResult {
    /// Best parameters found (in the bounds), `N` values.
    pub x: Vec<f64>,
    /// Objective value at `x` (`+inf` when nothing was evaluated).
    pub energy: f64,
    /// Objective evaluations made (values the objective returned).
    pub evals: u64,
    /// Generations in which at least one trial was evaluated (scipy's `nit`, except that
    /// scipy also counts a generation cut short before its first evaluation).
    pub generations: usize,
    /// Whether the convergence test passed.
    pub converged: bool,
    /// Why the run stopped.
    pub stop: StopReason,
    /// The final population, scaled to the bounds, best first: `NP` vectors of `N` values.
    pub population: Vec<Vec<f64>>,
    /// Energies of `population`, in order (`+inf` for members never evaluated).
    pub energies: Vec<f64>,
}

/// Population size for `n` dimensions of which `equal` have equal bounds (scipy's rule).
pub fn population_size(popsize: usize, n: usize, equal: usize) -> usize {
    5.max(popsize * 1.max(n - equal))
}

/// Minimises `objective` over the box `bounds` by differential evolution.
///
/// `bounds`: one `(lo, hi)` per dimension, finite (`lo == hi` fixes a dimension).
/// `objective` receives a batch of candidates (each `N` values in the bounds) and returns
/// one energy per candidate, in order: the whole population in one call at the start,
/// then one candidate per call (`immediate`) or one generation per call (`deferred`).
/// It may return *fewer* values than candidates: the first ones are taken as evaluated,
/// the others not, and the run stops after that call ([`StopReason::ObjectiveStopped`]).
///
/// # Errors
/// [`SearchError::Config`] for bad bounds or settings, [`SearchError::ObjectiveLength`]
/// when the objective returns more values than candidates.
pub fn differential_evolution<F>(
    objective: F,
    bounds: &[(f64, f64)],
    cfg: &DeConfig,
) -> Result<DeResult, SearchError>
where
    F: FnMut(&[Vec<f64>]) -> Vec<f64>,
{
    let mut solver = Solver::new(objective, bounds, cfg)?;
    solver.run()
}

struct Solver<'c, F> {
    cfg: &'c DeConfig,
    objective: F,
    n: usize,
    np: usize,
    center: Vec<f64>,
    span: Vec<f64>,
    /// Members in `[0, 1]^n`.
    pop: Vec<Vec<f64>>,
    energies: Vec<f64>,
    rng: Rng,
    /// Member indices, partially shuffled to draw samples.
    index: Vec<usize>,
    evals: u64,
    /// Current mutation factor.
    scale: f64,
    /// Set when a batch was cut (budget) or answered short (objective).
    stopped: Option<StopReason>,
}

fn check_config(bounds: &[(f64, f64)], cfg: &DeConfig) -> Result<(), SearchError> {
    let bad = |m: String| Err(SearchError::Config(m));
    if bounds.is_empty() {
        return bad("differential evolution needs at least one dimension".into());
    }
    if let Some((i, b)) = bounds
        .iter()
        .enumerate()
        .find(|(_, b)| !(b.0.is_finite() && b.1.is_finite()))
    {
        return bad(format!("bounds of dimension {i} must be finite, got {b:?}"));
    }
    if cfg.popsize == 0 {
        return bad("popsize must be at least 1".into());
    }
    let in_range = |f: f64| f.is_finite() && (0.0..2.0).contains(&f);
    match cfg.mutation {
        Mutation::Constant(f) if !in_range(f) => {
            return bad(format!("mutation constant must be in [0, 2), got {f}"))
        }
        Mutation::Dither(a, b) if !(in_range(a) && in_range(b)) => {
            return bad(format!(
                "mutation dithering range must lie in [0, 2), got ({a}, {b})"
            ))
        }
        _ => {}
    }
    if !(0.0..=1.0).contains(&cfg.recombination) {
        return bad(format!(
            "recombination must be in [0, 1], got {}",
            cfg.recombination
        ));
    }
    if cfg.tol.is_nan() || cfg.atol.is_nan() {
        return bad("tol and atol must not be NaN".into());
    }
    Ok(())
}

impl<'c, F> Solver<'c, F>
where
    F: FnMut(&[Vec<f64>]) -> Vec<f64>,
{
    fn new(objective: F, bounds: &[(f64, f64)], cfg: &'c DeConfig) -> Result<Self, SearchError> {
        check_config(bounds, cfg)?;
        let n = bounds.len();
        let equal = bounds.iter().filter(|b| b.0 == b.1).count();
        let np = population_size(cfg.popsize, n, equal);
        let needed = cfg.strategy.samples_needed();
        if np < needed + 1 {
            return Err(SearchError::Config(format!(
                "strategy {} draws {needed} other members but the population has only {np} \
                 (raise popsize)",
                cfg.strategy
            )));
        }
        let center = bounds.iter().map(|b| 0.5 * (b.0 + b.1)).collect();
        let span = bounds.iter().map(|b| (b.0 - b.1).abs()).collect();
        let scale = match cfg.mutation {
            Mutation::Constant(f) => f,
            Mutation::Dither(a, _) => a,
        };
        Ok(Self {
            cfg,
            objective,
            n,
            np,
            center,
            span,
            pop: Vec::new(),
            energies: vec![f64::INFINITY; np],
            rng: Rng::new(cfg.seed),
            index: (0..np).collect(),
            evals: 0,
            scale,
            stopped: None,
        })
    }

    fn scaled(&self, u: &[f64]) -> Vec<f64> {
        u.iter()
            .zip(self.center.iter().zip(&self.span))
            .map(|(u, (c, s))| c + (u - 0.5) * s)
            .collect()
    }

    fn init_population(&mut self) {
        let (np, n) = (self.np, self.n);
        self.pop = match self.cfg.init {
            Init::Random => (0..np)
                .map(|_| (0..n).map(|_| self.rng.uniform()).collect())
                .collect(),
            Init::LatinHypercube => {
                let seg = 1.0 / np as f64;
                let samples: Vec<Vec<f64>> = (0..np)
                    .map(|i| {
                        (0..n)
                            .map(|_| seg * self.rng.uniform() + i as f64 / np as f64)
                            .collect()
                    })
                    .collect();
                let mut pop = vec![vec![0.0; n]; np];
                let mut order: Vec<usize> = (0..np).collect();
                for j in 0..n {
                    self.rng.shuffle(&mut order);
                    for (k, &o) in order.iter().enumerate() {
                        pop[k][j] = samples[o][j];
                    }
                }
                pop
            }
        };
    }

    fn evals_left(&self) -> u64 {
        match self.cfg.max_evals {
            Some(m) => m.saturating_sub(self.evals),
            None => u64::MAX,
        }
    }

    /// Energies of the members `units` (in `[0, 1]`): `+inf` for those not evaluated.
    /// Sets `stopped` when the batch was cut by the budget or answered short.
    fn evaluate(&mut self, units: &[Vec<f64>]) -> Result<Vec<f64>, SearchError> {
        let mut out = vec![f64::INFINITY; units.len()];
        let allowed = (units.len() as u64).min(self.evals_left()) as usize;
        if allowed < units.len() {
            self.stopped = Some(StopReason::MaxEvals);
        }
        if allowed == 0 {
            return Ok(out);
        }
        let params: Vec<Vec<f64>> = units[..allowed].iter().map(|u| self.scaled(u)).collect();
        let got = (self.objective)(&params);
        if got.len() > allowed {
            return Err(SearchError::ObjectiveLength {
                expected: allowed,
                got: got.len(),
            });
        }
        if got.len() < allowed {
            self.stopped = Some(StopReason::ObjectiveStopped);
        }
        self.evals += got.len() as u64;
        for (o, e) in out.iter_mut().zip(got) {
            *o = if e.is_nan() { f64::INFINITY } else { e };
        }
        Ok(out)
    }

    /// Swaps the lowest energy (first one on ties) into index 0.
    fn promote_lowest(&mut self) {
        let mut l = 0;
        for (i, &e) in self.energies.iter().enumerate() {
            if e < self.energies[l] {
                l = i;
            }
        }
        self.energies.swap(0, l);
        self.pop.swap(0, l);
    }

    fn converged(&self) -> bool {
        if self.energies.iter().any(|e| e.is_infinite()) {
            return false;
        }
        let n = self.energies.len() as f64;
        let mean = self.energies.iter().sum::<f64>() / n;
        let var = self
            .energies
            .iter()
            .map(|e| (e - mean).powi(2))
            .sum::<f64>()
            / n;
        var.sqrt() <= self.cfg.atol + self.cfg.tol * mean.abs()
    }

    /// Five (four when the population has five members) distinct member indices, none of
    /// them `candidate`, uniformly drawn and ordered (scipy's `_select_samples`).
    fn select_samples(&mut self, candidate: usize) -> [usize; 5] {
        let k = 6.min(self.np);
        self.rng.partial_shuffle(&mut self.index, k);
        let mut out = [usize::MAX; 5];
        let mut m = 0;
        for &i in &self.index[..k] {
            if i != candidate && m < 5 {
                out[m] = i;
                m += 1;
            }
        }
        out
    }

    /// A trial vector for member `c` from the current population (`[0, 1]`-scaled, not
    /// yet brought back into `[0, 1]`).
    fn mutate(&mut self, c: usize) -> Vec<f64> {
        let n = self.n;
        let fill_point = self.rng.index(n);
        let r = self.select_samples(c);
        let f = self.scale;
        let p = &self.pop;
        let best = &p[0];
        let bprime: Vec<f64> = match self.cfg.strategy.base() {
            Base::Best1 => (0..n)
                .map(|j| best[j] + f * (p[r[0]][j] - p[r[1]][j]))
                .collect(),
            Base::Rand1 => (0..n)
                .map(|j| p[r[0]][j] + f * (p[r[1]][j] - p[r[2]][j]))
                .collect(),
            Base::RandToBest1 => (0..n)
                .map(|j| {
                    let mut b = p[r[0]][j];
                    b += f * (best[j] - b);
                    b + f * (p[r[1]][j] - p[r[2]][j])
                })
                .collect(),
            Base::CurrentToBest1 => (0..n)
                .map(|j| p[c][j] + f * (best[j] - p[c][j] + p[r[0]][j] - p[r[1]][j]))
                .collect(),
            Base::Best2 => (0..n)
                .map(|j| best[j] + f * (p[r[0]][j] + p[r[1]][j] - p[r[2]][j] - p[r[3]][j]))
                .collect(),
            Base::Rand2 => (0..n)
                .map(|j| p[r[0]][j] + f * (p[r[1]][j] + p[r[2]][j] - p[r[3]][j] - p[r[4]][j]))
                .collect(),
        };
        let mut trial = p[c].clone();
        let cr = self.cfg.recombination;
        let mut cross: Vec<bool> = (0..n).map(|_| self.rng.uniform() < cr).collect();
        if self.cfg.strategy.binomial() {
            cross[fill_point] = true;
            for j in 0..n {
                if cross[j] {
                    trial[j] = bprime[j];
                }
            }
        } else {
            cross[0] = true;
            let mut fp = fill_point;
            let mut i = 0;
            while i < n && cross[i] {
                trial[fp] = bprime[fp];
                fp = (fp + 1) % n;
                i += 1;
            }
        }
        trial
    }

    /// Replaces values outside `[0, 1]` by fresh uniform ones (scipy `_ensure_constraint`).
    fn ensure_constraint(&mut self, trial: &mut [f64]) {
        for v in trial.iter_mut() {
            if *v > 1.0 || *v < 0.0 {
                *v = self.rng.uniform();
            }
        }
    }

    /// One generation; returns whether any trial was evaluated.
    fn generation(&mut self) -> Result<bool, SearchError> {
        if let Mutation::Dither(a, b) = self.cfg.mutation {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            self.scale = self.rng.uniform_in(lo, hi);
        }
        let before = self.evals;
        match self.cfg.updating {
            Updating::Immediate => {
                for c in 0..self.np {
                    if self.evals_left() == 0 {
                        self.stopped = Some(StopReason::MaxEvals);
                        break;
                    }
                    let mut trial = self.mutate(c);
                    self.ensure_constraint(&mut trial);
                    let trial = vec![trial];
                    let pre = self.evals;
                    let e = self.evaluate(&trial)?[0];
                    if self.evals == pre {
                        // not evaluated: the objective stopped
                        break;
                    }
                    if e <= self.energies[c] {
                        self.pop[c] = trial.into_iter().next().expect("one trial");
                        self.energies[c] = e;
                        if e <= self.energies[0] {
                            self.promote_lowest();
                        }
                    }
                    if self.stopped.is_some() {
                        break;
                    }
                }
            }
            Updating::Deferred => {
                if self.evals_left() == 0 {
                    self.stopped = Some(StopReason::MaxEvals);
                    return Ok(false);
                }
                let mut trials = Vec::with_capacity(self.np);
                for c in 0..self.np {
                    let mut t = self.mutate(c);
                    self.ensure_constraint(&mut t);
                    trials.push(t);
                }
                let e = self.evaluate(&trials)?;
                let evaluated = (self.evals - before) as usize;
                for (c, (t, e)) in trials.into_iter().zip(e).enumerate().take(evaluated) {
                    if e <= self.energies[c] {
                        self.pop[c] = t;
                        self.energies[c] = e;
                    }
                }
                self.promote_lowest();
            }
        }
        Ok(self.evals > before)
    }

    fn run(&mut self) -> Result<DeResult, SearchError> {
        self.init_population();
        let all: Vec<Vec<f64>> = self.pop.clone();
        self.energies = self.evaluate(&all)?;
        self.promote_lowest();
        let mut generations = 0;
        let mut stop = if self.stopped.is_some() {
            self.stopped
        } else if self.cfg.maxiter == 0 {
            Some(StopReason::MaxIter)
        } else {
            None
        };
        while stop.is_none() {
            let ran = self.generation()?;
            if ran {
                generations += 1;
            }
            stop = if ran && self.converged() {
                Some(StopReason::Converged)
            } else if let Some(s) = self.stopped {
                Some(s)
            } else if self.evals_left() == 0 {
                Some(StopReason::MaxEvals)
            } else if generations >= self.cfg.maxiter {
                Some(StopReason::MaxIter)
            } else {
                None
            };
        }
        let stop = stop.expect("loop ends with a reason");
        Ok(DeResult {
            x: self.scaled(&self.pop[0]),
            energy: self.energies[0],
            evals: self.evals,
            generations,
            converged: stop == StopReason::Converged,
            stop,
            population: self.pop.iter().map(|u| self.scaled(u)).collect(),
            energies: self.energies.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sphere(x: &[f64]) -> f64 {
        x.iter().map(|v| v * v).sum()
    }

    fn batch(f: fn(&[f64]) -> f64) -> impl FnMut(&[Vec<f64>]) -> Vec<f64> {
        move |xs: &[Vec<f64>]| xs.iter().map(|x| f(x)).collect()
    }

    #[test]
    fn every_strategy_minimises_a_sphere() {
        for s in Strategy::ALL {
            for updating in [Updating::Immediate, Updating::Deferred] {
                let cfg = DeConfig {
                    strategy: s,
                    updating,
                    seed: 3,
                    ..DeConfig::default()
                };
                let r = differential_evolution(batch(sphere), &[(-5.0, 5.0); 3], &cfg).unwrap();
                assert!(r.energy < 1e-6, "{s} {updating:?}: {r:?}");
                // scipy's currenttobest1 does not pass its own test on a sphere either
                // (energies reach exactly 0 with some members above: std > tol * mean)
                let current =
                    matches!(s, Strategy::CurrentToBest1Bin | Strategy::CurrentToBest1Exp);
                assert!(r.converged || current, "{s} {updating:?}");
                assert_eq!(r.population.len(), 45);
                assert_eq!(r.energy, r.energies[0]);
                assert!(r.energies.iter().all(|e| *e >= r.energy));
            }
        }
    }

    #[test]
    fn immediate_asks_one_candidate_a_call_and_deferred_a_generation() {
        for (updating, size) in [(Updating::Immediate, 1), (Updating::Deferred, 20)] {
            let mut calls = Vec::new();
            let cfg = DeConfig {
                updating,
                maxiter: 4,
                popsize: 10,
                ..DeConfig::default()
            };
            let r = differential_evolution(
                |xs: &[Vec<f64>]| {
                    calls.push(xs.len());
                    xs.iter().map(|x| sphere(x)).collect()
                },
                &[(-1.0, 1.0), (-1.0, 1.0)],
                &cfg,
            )
            .unwrap();
            assert_eq!(calls[0], 20, "the initial population is one batch");
            assert!(
                calls[1..].iter().all(|&c| c == size),
                "{updating:?}: {calls:?}"
            );
            assert_eq!(r.evals, calls.iter().sum::<usize>() as u64);
            assert_eq!(r.evals, 20 * 5);
            assert_eq!((r.generations, r.stop), (4, StopReason::MaxIter));
        }
    }

    #[test]
    fn the_budget_is_exact_in_both_modes() {
        for updating in [Updating::Immediate, Updating::Deferred] {
            for budget in [0u64, 1, 7, 45, 46, 100, 101] {
                let mut evals = 0u64;
                let cfg = DeConfig {
                    updating,
                    max_evals: Some(budget),
                    ..DeConfig::default()
                };
                let r = differential_evolution(
                    |xs: &[Vec<f64>]| {
                        evals += xs.len() as u64;
                        xs.iter().map(|x| sphere(x)).collect()
                    },
                    &[(-5.0, 5.0); 3],
                    &cfg,
                )
                .unwrap();
                assert_eq!(evals, budget, "{updating:?} budget {budget}");
                assert_eq!(r.evals, budget);
                assert_eq!(r.stop, StopReason::MaxEvals);
                let full_gens = budget.saturating_sub(45).div_ceil(45) as usize;
                assert_eq!(r.generations, full_gens, "{updating:?} budget {budget}");
                if budget > 0 {
                    assert!(r.energy.is_finite());
                } else {
                    assert!(r.energy.is_infinite());
                }
            }
        }
    }

    #[test]
    fn a_short_answer_stops_the_run_and_too_long_is_an_error() {
        let mut calls = 0;
        let cfg = DeConfig {
            updating: Updating::Deferred,
            ..DeConfig::default()
        };
        let r = differential_evolution(
            |xs: &[Vec<f64>]| {
                calls += 1;
                let k = if calls == 3 { 4 } else { xs.len() };
                xs[..k].iter().map(|x| sphere(x)).collect()
            },
            &[(-5.0, 5.0); 2],
            &cfg,
        )
        .unwrap();
        assert_eq!(r.stop, StopReason::ObjectiveStopped);
        assert_eq!(r.evals, 30 + 30 + 4);
        assert_eq!(r.generations, 2);
        let err = differential_evolution(
            |xs: &[Vec<f64>]| vec![0.0; xs.len() + 1],
            &[(-5.0, 5.0)],
            &cfg,
        )
        .unwrap_err();
        assert!(matches!(err, SearchError::ObjectiveLength { .. }), "{err}");
    }

    #[test]
    fn candidates_stay_in_bounds_and_fixed_dimensions_stay_fixed() {
        let bounds = [(2.0, 3.0), (-7.0, -7.0), (10.0, 0.0)];
        let mut seen = 0;
        for init in [Init::LatinHypercube, Init::Random] {
            let cfg = DeConfig {
                init,
                mutation: Mutation::Constant(1.9),
                maxiter: 30,
                ..DeConfig::default()
            };
            let r = differential_evolution(
                |xs: &[Vec<f64>]| {
                    for x in xs {
                        assert!((2.0..=3.0).contains(&x[0]), "{x:?}");
                        assert_eq!(x[1], -7.0);
                        assert!((0.0..=10.0).contains(&x[2]), "{x:?}");
                        seen += 1;
                    }
                    xs.iter()
                        .map(|x| (x[0] - 2.5).powi(2) + (x[2] - 1.0).powi(2))
                        .collect()
                },
                &bounds,
                &cfg,
            )
            .unwrap();
            // two varying dimensions: population 30
            assert_eq!(r.population.len(), 30);
            assert!(r.energy < 1e-3, "{r:?}");
        }
        assert!(seen > 0);
    }

    #[test]
    fn latin_hypercube_puts_one_member_in_every_stratum() {
        let np = 5 * 4;
        let cfg = DeConfig {
            popsize: 5,
            maxiter: 0,
            ..DeConfig::default()
        };
        let r = differential_evolution(batch(sphere), &[(0.0, 1.0); 4], &cfg).unwrap();
        assert_eq!(r.stop, StopReason::MaxIter);
        assert_eq!(r.evals, np as u64);
        for j in 0..4 {
            let mut strata: Vec<usize> = r
                .population
                .iter()
                .map(|x| (x[j] * np as f64).floor() as usize)
                .collect();
            strata.sort_unstable();
            assert_eq!(strata, (0..np).collect::<Vec<_>>());
        }
    }

    #[test]
    fn same_seed_same_run() {
        let cfg = DeConfig {
            seed: 11,
            maxiter: 20,
            ..DeConfig::default()
        };
        let a = differential_evolution(batch(sphere), &[(-3.0, 3.0); 2], &cfg).unwrap();
        let b = differential_evolution(batch(sphere), &[(-3.0, 3.0); 2], &cfg).unwrap();
        assert_eq!(a, b);
        let c = differential_evolution(
            batch(sphere),
            &[(-3.0, 3.0); 2],
            &DeConfig { seed: 12, ..cfg },
        )
        .unwrap();
        assert_ne!(a.x, c.x);
    }

    #[test]
    fn bad_settings_are_errors() {
        let ok = [(-1.0, 1.0)];
        let run = |b: &[(f64, f64)], cfg: DeConfig| {
            differential_evolution(batch(sphere), b, &cfg).unwrap_err()
        };
        assert!(matches!(
            run(&[], DeConfig::default()),
            SearchError::Config(_)
        ));
        assert!(matches!(
            run(&[(0.0, f64::INFINITY)], DeConfig::default()),
            SearchError::Config(_)
        ));
        for cfg in [
            DeConfig {
                mutation: Mutation::Constant(2.0),
                ..DeConfig::default()
            },
            DeConfig {
                mutation: Mutation::Dither(-0.1, 1.0),
                ..DeConfig::default()
            },
            DeConfig {
                recombination: 1.5,
                ..DeConfig::default()
            },
            DeConfig {
                popsize: 0,
                ..DeConfig::default()
            },
            // five members, rand2 needs five others
            DeConfig {
                popsize: 1,
                strategy: Strategy::Rand2Bin,
                ..DeConfig::default()
            },
        ] {
            assert!(matches!(run(&ok, cfg), SearchError::Config(_)));
        }
        assert_eq!("rand2exp".parse::<Strategy>().unwrap(), Strategy::Rand2Exp);
        assert!("best3bin".parse::<Strategy>().is_err());
        // best2 with five members works (four others)
        let cfg = DeConfig {
            popsize: 1,
            strategy: Strategy::Best2Bin,
            maxiter: 5,
            ..DeConfig::default()
        };
        assert!(differential_evolution(batch(sphere), &ok, &cfg).is_ok());
    }

    /// A solver over `n` dimensions whose members are all-integer vectors (member `i` = all
    /// `i`) except member 3, all 0.123456, a value no mutant of `F = 0.5` can take: a
    /// trial of member 3 shows which dimensions came from the mutant.
    fn solver_for_crossover(
        cfg: &DeConfig,
        n: usize,
    ) -> Solver<'_, impl FnMut(&[Vec<f64>]) -> Vec<f64>> {
        let bounds = vec![(0.0, 1.0); n];
        let mut s = Solver::new(|xs: &[Vec<f64>]| vec![0.0; xs.len()], &bounds, cfg).unwrap();
        s.pop = (0..s.np).map(|i| vec![i as f64; n]).collect();
        s.pop[3] = vec![0.123456; n];
        s
    }

    /// Dimensions of the trial of member 3 taken from the mutant.
    fn crossed(s: &mut Solver<'_, impl FnMut(&[Vec<f64>]) -> Vec<f64>>) -> Vec<bool> {
        s.mutate(3).iter().map(|&v| v != 0.123456).collect()
    }

    #[test]
    fn binomial_crossover_always_takes_one_random_dimension() {
        let n = 6;
        for (cr, mean) in [(0.0, 1.0), (0.5, 1.0 + 5.0 * 0.5), (1.0, 6.0)] {
            let cfg = DeConfig {
                recombination: cr,
                mutation: Mutation::Constant(0.5),
                ..DeConfig::default()
            };
            let mut s = solver_for_crossover(&cfg, n);
            let (mut per_dim, mut total) = (vec![0usize; n], 0usize);
            let draws = 20_000;
            for _ in 0..draws {
                let c = crossed(&mut s);
                let k = c.iter().filter(|&&b| b).count();
                assert!(k >= 1);
                total += k;
                for (d, b) in per_dim.iter_mut().zip(&c) {
                    *d += usize::from(*b);
                }
            }
            let m = total as f64 / draws as f64;
            // every dimension: P(taken) = CR + (1 - CR) / n
            let p = cr + (1.0 - cr) / n as f64;
            assert!(
                (m - mean).abs() < 0.05 * mean + 0.02,
                "CR {cr}: {m} vs {mean}"
            );
            for d in per_dim {
                assert!((d as f64 / draws as f64 - p).abs() < 0.02, "CR {cr}: {d}");
            }
        }
    }

    #[test]
    fn exponential_crossover_copies_a_cyclic_run_from_a_random_start() {
        let n = 5;
        for cr in [0.0, 0.6, 1.0] {
            let cfg = DeConfig {
                strategy: Strategy::Best1Exp,
                recombination: cr,
                mutation: Mutation::Constant(0.5),
                ..DeConfig::default()
            };
            let mut s = solver_for_crossover(&cfg, n);
            let draws = 20_000;
            let mut starts = vec![0usize; n];
            let mut lengths = vec![0usize; n + 1];
            for _ in 0..draws {
                let c = crossed(&mut s);
                let len = c.iter().filter(|&&b| b).count();
                lengths[len] += 1;
                // the run is contiguous modulo n: exactly one start (taken, previous not)
                let run_starts: Vec<usize> = (0..n)
                    .filter(|&j| c[j] && (len == n || !c[(j + n - 1) % n]))
                    .collect();
                if len < n {
                    assert_eq!(run_starts.len(), 1, "{c:?}");
                    starts[run_starts[0]] += 1;
                }
            }
            // scipy: the run has length L with P(L >= k) = CR^(k - 1), k = 1..=n
            for k in 1..=n {
                let p_ge: f64 = lengths[k..].iter().sum::<usize>() as f64 / draws as f64;
                let want = cr.powi(k as i32 - 1);
                assert!(
                    (p_ge - want).abs() < 0.015,
                    "CR {cr}: P(L >= {k}) {p_ge} vs {want}"
                );
            }
            if cr < 1.0 {
                let partial: usize = starts.iter().sum();
                for st in &starts {
                    let share = *st as f64 / partial as f64;
                    assert!((share - 0.2).abs() < 0.02, "CR {cr}: starts {starts:?}");
                }
            }
        }
    }

    #[test]
    fn dithering_draws_one_factor_per_generation() {
        let cfg = DeConfig {
            updating: Updating::Deferred,
            mutation: Mutation::Dither(0.5, 1.0),
            ..DeConfig::default()
        };
        let bounds = [(-1.0, 1.0); 3];
        let mut s = Solver::new(
            |xs: &[Vec<f64>]| xs.iter().map(|x| sphere(x)).collect(),
            &bounds,
            &cfg,
        )
        .unwrap();
        s.init_population();
        let all = s.pop.clone();
        s.energies = s.evaluate(&all).unwrap();
        s.promote_lowest();
        let mut factors = Vec::new();
        for _ in 0..200 {
            s.generation().unwrap();
            factors.push(s.scale);
            // mutate does not redraw it
            let f = s.scale;
            let _ = s.mutate(1);
            assert_eq!(s.scale, f);
        }
        assert!(factors.iter().all(|f| (0.5..1.0).contains(f)));
        let mean = factors.iter().sum::<f64>() / 200.0;
        assert!((mean - 0.75).abs() < 0.03, "{mean}");
    }

    #[test]
    fn nan_energies_are_replaceable() {
        let cfg = DeConfig {
            seed: 2,
            ..DeConfig::default()
        };
        let r = differential_evolution(
            |xs: &[Vec<f64>]| {
                xs.iter()
                    .map(|x| if x[0] > 0.5 { f64::NAN } else { sphere(x) })
                    .collect()
            },
            &[(-1.0, 1.0), (-1.0, 1.0)],
            &cfg,
        )
        .unwrap();
        assert!(r.converged);
        assert!(r.energies.iter().all(|e| e.is_finite()));
    }
}
