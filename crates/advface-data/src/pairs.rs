//! The MCS2018 `pairs_list.csv` format: header `source_imgs,target_imgs`, then one line a
//! pair, each cell the image paths (relative to the crops folder) joined by `|`.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Header line of a pairs file.
pub const PAIRS_HEADER: &str = "source_imgs,target_imgs";

/// One attack: change `sources` to look like `targets` to the black box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Crops-relative paths of the source images (5 in the protocol).
    pub sources: Vec<String>,
    /// Crops-relative paths of the target images (5 in the protocol).
    pub targets: Vec<String>,
}

/// Errors of a pairs file.
#[derive(Debug, Error)]
pub enum PairsError {
    #[error("cannot read pairs file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: first line must be `{PAIRS_HEADER}`, got `{got}`")]
    Header { path: PathBuf, got: String },
    #[error("{path}, line {line}: {reason}")]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// The text of a pairs file (`\n` line ends, trailing newline).
pub fn format_pairs(pairs: &[Pair]) -> String {
    let mut out = String::from(PAIRS_HEADER);
    out.push('\n');
    for p in pairs {
        out.push_str(&p.sources.join("|"));
        out.push(',');
        out.push_str(&p.targets.join("|"));
        out.push('\n');
    }
    out
}

/// Writes a pairs file atomically.
pub fn write_pairs(path: &Path, pairs: &[Pair]) -> Result<(), advface_image::ImageError> {
    advface_image::write_atomic(path, format_pairs(pairs).as_bytes())
}

/// Reads a pairs file. Every line must have a source and a target cell with at least one
/// path each; paths must be relative and must not leave the crops folder.
pub fn read_pairs(path: &Path) -> Result<Vec<Pair>, PairsError> {
    let text = std::fs::read_to_string(path).map_err(|source| PairsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_pairs(&text, path)
}

/// Parses the text of a pairs file; `path` is for messages.
pub fn parse_pairs(text: &str, path: &Path) -> Result<Vec<Pair>, PairsError> {
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or("");
    if header != PAIRS_HEADER {
        return Err(PairsError::Header {
            path: path.to_path_buf(),
            got: header.chars().take(80).collect(),
        });
    }
    let mut pairs = Vec::new();
    for (i, line) in lines {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let err = |reason: String| PairsError::Line {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != 2 {
            return Err(err(format!(
                "expected 2 comma-separated cells, got {}",
                cells.len()
            )));
        }
        let split = |cell: &str, what: &str| -> Result<Vec<String>, PairsError> {
            let paths: Vec<String> = cell.split('|').map(|s| s.trim().to_string()).collect();
            if paths.iter().any(|p| p.is_empty()) {
                return Err(err(format!("empty path in the {what} cell")));
            }
            for p in &paths {
                let pp = Path::new(p);
                if pp.is_absolute()
                    || pp
                        .components()
                        .any(|c| matches!(c, std::path::Component::ParentDir))
                {
                    return Err(err(format!(
                        "path `{p}` must be relative to the crops folder and stay inside it"
                    )));
                }
            }
            Ok(paths)
        };
        pairs.push(Pair {
            sources: split(cells[0], "source")?,
            targets: split(cells[1], "target")?,
        });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs = vec![Pair {
            sources: vec!["A/A_0001.png".into(), "A/A_0002.png".into()],
            targets: vec!["B/B_0001.png".into()],
        }];
        let text = format_pairs(&pairs);
        assert_eq!(
            text,
            "source_imgs,target_imgs\nA/A_0001.png|A/A_0002.png,B/B_0001.png\n"
        );
        assert_eq!(parse_pairs(&text, Path::new("p.csv")).unwrap(), pairs);
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = parse_pairs("nope\n", Path::new("p.csv")).unwrap_err();
        assert!(e.to_string().contains("p.csv"));
        let e = parse_pairs("source_imgs,target_imgs\na.png\n", Path::new("p.csv")).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse_pairs(
            "source_imgs,target_imgs\n../a.png,b.png\n",
            Path::new("p.csv"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("inside"), "{e}");
    }
}
