//! Score against queries per image, from scored attack runs (issue 6): one point per run
//! folder (its `config.json` from `advface attack`, its score JSON from `advface score
//! --json`), as a CSV table and a chart.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::plot::{Chart, HLine, Series};

/// One scored run.
#[derive(Debug, Clone, PartialEq)]
pub struct CurvePoint {
    /// The run folder.
    pub run: PathBuf,
    /// Method as recorded (`nes`, `square`, ...); white-box runs are labelled as such.
    pub method: String,
    /// Queries allowed per image; `None` for no limit (or pure transfer).
    pub budget: Option<u64>,
    /// Queries per image the attack made (mean and largest), targets included.
    pub queries_mean: f64,
    /// See `queries_mean`.
    pub queries_max: u64,
    /// Score of the adversarial images, and of the same pairs unattacked.
    pub score: f64,
    /// See `score`.
    pub clean: f64,
    /// Share of combinations under the match threshold.
    pub match_rate: f64,
    /// Lowest SSIM, and images below the limit.
    pub ssim_min: f64,
    /// See `ssim_min`.
    pub violations: usize,
    /// Pairs scored.
    pub pairs: u64,
    /// Sum of the pairs' attack wall times, seconds.
    pub attack_seconds: f64,
    /// The pairs' floor (targets' geometric median).
    pub floor: f64,
}

/// Why a run folder cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CurveError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong and how to fix it.
    pub reason: String,
}

fn read_json(path: &Path, hint: &str) -> Result<Value, CurveError> {
    let bytes = std::fs::read(path).map_err(|e| CurveError {
        path: path.to_path_buf(),
        reason: format!("{e} ({hint})"),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| CurveError {
        path: path.to_path_buf(),
        reason: format!("not valid JSON: {e} ({hint})"),
    })
}

/// Reads the point of run folder `run`, its score from `run/score_file`.
pub fn read_point(run: &Path, score_file: &str) -> Result<CurvePoint, CurveError> {
    let config = read_json(
        &run.join("config.json"),
        "is this an `advface attack --out` folder?",
    )?;
    let score_path = run.join(score_file);
    let score = read_json(
        &score_path,
        "score the run first: advface score ... --adv RUN --json RUN/score.json",
    )?;
    let bad = |what: &str| CurveError {
        path: score_path.clone(),
        reason: format!("no '{what}' field: not written by `advface score --json`"),
    };
    let f = |v: &Value, what: &str| v.as_f64().ok_or_else(|| bad(what));
    let mut method = config["method"]
        .as_str()
        .ok_or_else(|| CurveError {
            path: run.join("config.json"),
            reason: "no 'method' field: not written by `advface attack`".into(),
        })?
        .to_string();
    if config["white_box"].as_bool() == Some(true) && !method.starts_with("whitebox") {
        method.push_str(" (white-box)");
    }
    let attack = &score["attack"];
    Ok(CurvePoint {
        run: run.to_path_buf(),
        method,
        budget: config["budget_per_image"].as_u64(),
        queries_mean: attack["queries_mean"].as_f64().unwrap_or(0.0),
        queries_max: attack["queries_max"].as_u64().unwrap_or(0),
        score: f(&score["attacked"]["score"], "attacked.score")?,
        clean: f(&score["clean"]["score"], "clean.score")?,
        match_rate: f(&score["attacked"]["match_rate"], "attacked.match_rate")?,
        ssim_min: f(&score["ssim_min"], "ssim_min")?,
        violations: score["violations"].as_array().map_or(0, Vec::len),
        pairs: score["attacked"]["pairs"]
            .as_u64()
            .ok_or_else(|| bad("attacked.pairs"))?,
        attack_seconds: attack["pair_seconds"].as_f64().unwrap_or(0.0),
        floor: f(&score["floor"], "floor")?,
    })
}

/// The CSV table (header and one row per point, in the order given).
pub fn to_csv(points: &[CurvePoint]) -> String {
    let mut s = String::from(
        "method,budget,queries_mean,queries_max,score,clean,change_pct,match_rate,ssim_min,\
         violations,pairs,attack_seconds,floor,run\n",
    );
    for p in points {
        let change = 100.0 * (p.score - p.clean) / p.clean;
        s.push_str(&format!(
            "{},{},{:.1},{},{:.6},{:.6},{:.2},{:.4},{:.6},{},{},{:.1},{:.6},{}\n",
            csv_field(&p.method),
            p.budget.map_or_else(String::new, |b| b.to_string()),
            p.queries_mean,
            p.queries_max,
            p.score,
            p.clean,
            change,
            p.match_rate,
            p.ssim_min,
            p.violations,
            p.pairs,
            p.attack_seconds,
            p.floor,
            csv_field(&p.run.display().to_string()),
        ));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The chart: one line per method through its runs in order of queries per image, the
/// clean score and the floor as dashed lines (from the first run; every run should score
/// the same pairs). Runs without queries are left out of the lines.
pub fn chart(points: &[CurvePoint]) -> Chart {
    let mut series: Vec<Series> = Vec::new();
    for p in points.iter().filter(|p| p.queries_mean >= 1.0) {
        let x = p.budget.map_or(p.queries_mean, |b| b as f64);
        match series.iter_mut().find(|s| s.label == p.method) {
            Some(s) => s.points.push((x, p.score)),
            None => series.push(Series {
                label: p.method.clone(),
                points: vec![(x, p.score)],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let mut hlines = Vec::new();
    if let Some(p) = points.first() {
        hlines.push(HLine {
            label: "clean".into(),
            y: p.clean,
        });
        hlines.push(HLine {
            label: "floor".into(),
            y: p.floor,
        });
    }
    let pairs = points.first().map_or(0, |p| p.pairs);
    Chart {
        title: format!("score vs queries per image ({pairs} pairs, lower is better)"),
        x_label: "queries per image (budget)".into(),
        y_label: "score".into(),
        series,
        hlines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_run(dir: &Path, method: &str, budget: Option<u64>, score: f64) {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = serde_json::json!({"method": method, "white_box": false,
            "budget_per_image": budget});
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let s = serde_json::json!({
            "attacked": {"score": score, "match_rate": 0.1, "pairs": 10},
            "clean": {"score": 0.8, "match_rate": 0.02, "pairs": 10},
            "floor": 0.3, "ssim_min": 0.952, "violations": [],
            "attack": {"queries_mean": budget.unwrap_or(1) as f64,
                       "queries_max": budget.unwrap_or(1), "pair_seconds": 12.5}});
        std::fs::write(dir.join("score.json"), s.to_string()).unwrap();
    }

    #[test]
    fn runs_become_rows_and_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("nes-b1000");
        let b = tmp.path().join("nes-b100");
        let c = tmp.path().join("square-b100");
        let d = tmp.path().join("fgsm");
        write_run(&a, "nes", Some(1000), 0.6);
        write_run(&b, "nes", Some(100), 0.7);
        write_run(&c, "square", Some(100), 0.75);
        write_run(&d, "fgsm", None, 0.79);
        let pts: Vec<_> = [&a, &b, &c, &d]
            .iter()
            .map(|r| read_point(r, "score.json").unwrap())
            .collect();
        let csv = to_csv(&pts);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 5);
        assert!(lines[1].starts_with("nes,1000,1000.0,1000,0.600000,0.800000,-25.00,"));
        assert!(lines[4].starts_with("fgsm,,1.0,"), "{}", lines[4]);
        let ch = chart(&pts);
        assert_eq!(ch.series.len(), 3);
        assert_eq!(ch.series[0].points, vec![(100.0, 0.7), (1000.0, 0.6)]);
        assert_eq!(ch.hlines[0].y, 0.8);
    }

    #[test]
    fn a_missing_score_names_the_file_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("run");
        write_run(&a, "nes", Some(10), 0.6);
        std::fs::remove_file(a.join("score.json")).unwrap();
        let e = read_point(&a, "score.json").unwrap_err().to_string();
        assert!(
            e.contains("score.json") && e.contains("advface score"),
            "{e}"
        );
        let e = read_point(tmp.path(), "score.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains("config.json"), "{e}");
    }
}
