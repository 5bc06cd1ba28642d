//! The integration tests of the `advface` binary, one test binary (one link on 2 cores):
//! real files, the real embedded black box, real students written to disk.

mod attack;
mod commands;
mod distill;
mod score_golden;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use advface_models::{StudentConfig, StudentTrainer};

/// The `advface` binary built for these tests.
fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_advface"))
}

/// The repository root.
fn repo() -> PathBuf {
    advface_testkit::repo_root()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("advface runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A width-4 student (random weights) saved as a .weights file.
fn tiny_student(dir: &Path, descriptor_len: usize) -> PathBuf {
    let cfg = StudentConfig {
        width: 4,
        descriptor_len,
        ..StudentConfig::default()
    };
    let t = StudentTrainer::new(cfg, 5).unwrap();
    let p = dir.join(format!("tiny{descriptor_len}.weights"));
    t.save(&p).unwrap();
    p
}

#[test]
fn bench_moved_out_and_says_the_new_command_line() {
    let o = run(bin().args(["bench", "student", "--no-peers", "--steps", "3"]));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("cargo run --release -p advface-bench -- student --no-peers --steps 3"),
        "{err}"
    );
    // Hidden from the help.
    let help = stdout(&run(bin().arg("--help")));
    assert!(
        !help.lines().any(|l| l.trim_start().starts_with("bench")),
        "{help}"
    );
}

/// The value of `key = "..."` on its own line in a Cargo.toml.
fn toml_string(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix(key)?.trim_start().strip_prefix('=')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

/// `1.95` as `[1, 95, 0]`.
fn version_tuple(v: &str) -> Vec<u32> {
    let mut t: Vec<u32> = v.split('.').map(|p| p.parse().unwrap()).collect();
    t.resize(3, 0);
    t
}

/// Regression: the workspace declared `rust-version = "1.86"`, which no crate inherited and
/// which was below what the build needs (burn 0.22.1 declares 1.95). Every crate must
/// inherit the workspace's value, and it must not be below the `rust-version` of any
/// dependency whose sources are in the local cargo registry (those of this platform's
/// build; others are skipped).
#[test]
fn rust_version_says_1_86_while_the_code_needs_newer() {
    let root = repo();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let declared = toml_string(&workspace, "rust-version").expect("workspace rust-version");
    for e in std::fs::read_dir(root.join("crates")).unwrap() {
        let manifest = e.unwrap().path().join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim() == "rust-version.workspace = true"),
            "{} does not inherit the workspace rust-version",
            manifest.display()
        );
    }

    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        eprintln!("no cargo home: dependencies not checked");
        return;
    };
    let registries: Vec<PathBuf> = std::fs::read_dir(&src)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    let mut checked = 0;
    let mut highest = (Vec::new(), String::new());
    for block in lock.split("[[package]]").skip(1) {
        let (Some(name), Some(version)) =
            (toml_string(block, "name"), toml_string(block, "version"))
        else {
            continue;
        };
        let Some(manifest) = registries
            .iter()
            .map(|r| r.join(format!("{name}-{version}/Cargo.toml")))
            .find(|p| p.is_file())
        else {
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(&manifest).unwrap();
        if let Some(v) = toml_string(&text, "rust-version") {
            let t = version_tuple(&v);
            if t > highest.0 {
                highest = (t, format!("{name} {version} needs {v}"));
            }
        }
    }
    if checked == 0 {
        eprintln!("no dependency sources under {}: not checked", src.display());
        return;
    }
    assert!(
        version_tuple(&declared) >= highest.0,
        "workspace rust-version {declared} is below what the build needs: {}",
        highest.1
    );
}
