//! A small line-chart renderer for reports (score against queries per image), drawn into an
//! [`RgbImage`] with a built-in 5 x 7 bitmap font: no font files, no system libraries.

use advface_core::RgbImage;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points `(x, y)`; drawn in the given order.
    pub points: Vec<(f64, f64)>,
}

/// A horizontal reference line (clean score, floor).
#[derive(Debug, Clone)]
pub struct HLine {
    /// Legend label.
    pub label: String,
    /// Its height.
    pub y: f64,
}

/// A chart: lines over a logarithmic x axis.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title at the top.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// Dashed reference lines.
    pub hlines: Vec<HLine>,
}

const W: u32 = 900;
const H: u32 = 560;
const LEFT: i64 = 90;
const RIGHT: i64 = 230;
const TOP: i64 = 50;
const BOTTOM: i64 = 70;

const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [23, 190, 207],
];

impl Chart {
    /// Renders the chart; x must be positive (log axis). Points with a non-positive or
    /// non-finite coordinate are skipped.
    pub fn render(&self) -> RgbImage {
        // The canvas widens so the longest legend label fits beside the plot.
        let longest = self
            .series
            .iter()
            .map(|s| text_width(&s.label, 2))
            .chain(self.hlines.iter().map(|h| text_width(&h.label, 2)))
            .max()
            .unwrap_or(0);
        let pw = i64::from(W) - LEFT - RIGHT;
        let width = (LEFT + pw + 16 + 30 + longest + 12).max(i64::from(W));
        let width = u32::try_from(width).unwrap_or(W);
        let mut c = Canvas::new(width, H);
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|p| ok(*p))
            .collect();
        let ys = pts
            .iter()
            .map(|p| p.1)
            .chain(self.hlines.iter().map(|h| h.y))
            .filter(|v| v.is_finite());
        let (mut y0, mut y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        if !y0.is_finite() {
            (y0, y1) = (0.0, 1.0);
        }
        if y1 - y0 < 1e-9 {
            y0 -= 0.5;
            y1 += 0.5;
        }
        let pad = 0.06 * (y1 - y0);
        let (y0, y1) = (y0 - pad, y1 + pad);
        let (mut lx0, mut lx1) = pts
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.0.log10()), b.max(p.0.log10()))
            });
        if !lx0.is_finite() {
            (lx0, lx1) = (1.0, 4.0);
        }
        let (lx0, lx1) = (lx0.floor(), lx1.ceil().max(lx0.floor() + 1.0));
        // Decade ticks from lx0 to lx1; the axis reaches a little beyond them so that a
        // point on a decade (a budget of 100 or 1,000) is not drawn on the frame.
        let margin = 0.04 * (lx1 - lx0);
        let (ax0, ax1) = (lx0 - margin, lx1 + margin);
        let ph = i64::from(H) - TOP - BOTTOM;
        let px = |x: f64| LEFT + ((x.log10() - ax0) / (ax1 - ax0) * pw as f64).round() as i64;
        let py = |y: f64| TOP + ph - ((y - y0) / (y1 - y0) * ph as f64).round() as i64;
        let grey = [225, 225, 225];
        let black = [0, 0, 0];
        // grid and ticks
        let mut d = lx0 as i32;
        while f64::from(d) <= lx1 {
            let x = px(10f64.powi(d));
            c.vline(x, TOP, TOP + ph, grey);
            let label = fmt_count(10f64.powi(d));
            c.text(
                x - text_width(&label, 2) / 2,
                TOP + ph + 10,
                &label,
                2,
                black,
            );
            d += 1;
        }
        let step = nice_step((y1 - y0) / 6.0);
        let mut t = (y0 / step).ceil() * step;
        while t <= y1 {
            let y = py(t);
            c.hline(LEFT, LEFT + pw, y, grey);
            let label = format!("{t:.prec$}", prec = decimals(step));
            c.text(LEFT - 8 - text_width(&label, 2), y - 7, &label, 2, black);
            t += step;
        }
        c.rect(LEFT, TOP, LEFT + pw, TOP + ph, black);
        // reference lines
        let mut legend: Vec<(String, [u8; 3], bool)> = Vec::new();
        for (k, h) in self.hlines.iter().enumerate() {
            let col = [110 + 40 * (k as u8 % 3), 110, 110];
            let y = py(h.y);
            let mut x = LEFT;
            while x < LEFT + pw {
                c.hline(x, (x + 8).min(LEFT + pw), y, col);
                x += 14;
            }
            legend.push((h.label.clone(), col, true));
        }
        // series
        for (k, s) in self.series.iter().enumerate() {
            let col = PALETTE[k % PALETTE.len()];
            let p: Vec<(i64, i64)> = s
                .points
                .iter()
                .filter(|p| ok(**p))
                .map(|&(x, y)| (px(x), py(y)))
                .collect();
            for w in p.windows(2) {
                c.line(w[0], w[1], col, 2);
            }
            for &q in &p {
                c.square(q, 4, col);
            }
            legend.push((s.label.clone(), col, false));
        }
        // legend, title, axis labels
        let lx = LEFT + pw + 16;
        for (k, (label, col, dashed)) in legend.iter().enumerate() {
            let y = TOP + 10 + 22 * k as i64;
            if *dashed {
                c.hline(lx, lx + 8, y + 6, *col);
                c.hline(lx + 14, lx + 22, y + 6, *col);
            } else {
                c.line((lx, y + 6), (lx + 22, y + 6), *col, 2);
                c.square((lx + 11, y + 6), 4, *col);
            }
            c.text(lx + 30, y, label, 2, black);
        }
        c.text(LEFT, 16, &self.title, 2, black);
        c.text(
            LEFT + pw / 2 - text_width(&self.x_label, 2) / 2,
            i64::from(H) - 30,
            &self.x_label,
            2,
            black,
        );
        c.text(8, TOP - 22, &self.y_label, 2, black);
        c.image
    }
}

fn ok(p: (f64, f64)) -> bool {
    p.0 > 0.0 && p.0.is_finite() && p.1.is_finite()
}

fn fmt_count(v: f64) -> String {
    let v = v.round() as u64;
    let s = v.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        // digits left before this one, in groups of three (`is_multiple_of` needs Rust 1.87)
        #[allow(clippy::manual_is_multiple_of)]
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A round tick step near `raw` (1, 2 or 5 times a power of ten).
fn nice_step(raw: f64) -> f64 {
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn decimals(step: f64) -> usize {
    (-step.log10().floor()).max(0.0) as usize
}

struct Canvas {
    image: RgbImage,
}

impl Canvas {
    fn new(w: u32, h: u32) -> Self {
        Self {
            image: RgbImage::filled(w, h, [255, 255, 255]),
        }
    }

    fn put(&mut self, x: i64, y: i64, col: [u8; 3]) {
        let (w, h) = (
            i64::from(self.image.width()),
            i64::from(self.image.height()),
        );
        if (0..w).contains(&x) && (0..h).contains(&y) {
            let at = ((y * w + x) * 3) as usize;
            self.image.as_bytes_mut()[at..at + 3].copy_from_slice(&col);
        }
    }

    fn hline(&mut self, x0: i64, x1: i64, y: i64, col: [u8; 3]) {
        for x in x0.min(x1)..=x0.max(x1) {
            self.put(x, y, col);
        }
    }

    fn vline(&mut self, x: i64, y0: i64, y1: i64, col: [u8; 3]) {
        for y in y0.min(y1)..=y0.max(y1) {
            self.put(x, y, col);
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, col: [u8; 3]) {
        self.hline(x0, x1, y0, col);
        self.hline(x0, x1, y1, col);
        self.vline(x0, y0, y1, col);
        self.vline(x1, y0, y1, col);
    }

    fn square(&mut self, (x, y): (i64, i64), r: i64, col: [u8; 3]) {
        for dy in -r..=r {
            for dx in -r..=r {
                self.put(x + dx, y + dy, col);
            }
        }
    }

    /// A line `thick` pixels wide (Bresenham, thickened).
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), col: [u8; 3], thick: i64) {
        let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
        let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
        let (mut x, mut y, mut err) = (x0, y0, dx + dy);
        loop {
            for t in 0..thick {
                self.put(x, y + t - thick / 2, col);
                self.put(x + t - thick / 2, y, col);
            }
            if x == x1 && y == y1 {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    /// Text in the 5 x 7 font, `scale` pixels per font pixel, top-left at `(x, y)`.
    /// Letters are drawn upper case.
    fn text(&mut self, x: i64, y: i64, s: &str, scale: i64, col: [u8; 3]) {
        let mut cx = x;
        for ch in s.chars() {
            let g = glyph(ch.to_ascii_uppercase());
            for (row, bits) in g.iter().enumerate() {
                for colx in 0..5 {
                    if bits >> (4 - colx) & 1 == 1 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.put(cx + colx * scale + sx, y + row as i64 * scale + sy, col);
                            }
                        }
                    }
                }
            }
            cx += 6 * scale;
        }
    }
}

fn text_width(s: &str, scale: i64) -> i64 {
    s.chars().count() as i64 * 6 * scale - scale
}

/// The 5 x 7 glyph of `c` (rows top to bottom, 5 bits each, high bit left); unknown
/// characters are a box.
fn glyph(c: char) -> [u8; 7] {
    match c {
        ' ' => [0; 7],
        '0' => [14, 17, 19, 21, 25, 17, 14],
        '1' => [4, 12, 4, 4, 4, 4, 14],
        '2' => [14, 17, 1, 2, 4, 8, 31],
        '3' => [31, 2, 4, 2, 1, 17, 14],
        '4' => [2, 6, 10, 18, 31, 2, 2],
        '5' => [31, 16, 30, 1, 1, 17, 14],
        '6' => [6, 8, 16, 30, 17, 17, 14],
        '7' => [31, 1, 2, 4, 8, 8, 8],
        '8' => [14, 17, 17, 14, 17, 17, 14],
        '9' => [14, 17, 17, 15, 1, 2, 12],
        'A' => [14, 17, 17, 31, 17, 17, 17],
        'B' => [30, 17, 17, 30, 17, 17, 30],
        'C' => [14, 17, 16, 16, 16, 17, 14],
        'D' => [28, 18, 17, 17, 17, 18, 28],
        'E' => [31, 16, 16, 30, 16, 16, 31],
        'F' => [31, 16, 16, 30, 16, 16, 16],
        'G' => [14, 17, 16, 23, 17, 17, 15],
        'H' => [17, 17, 17, 31, 17, 17, 17],
        'I' => [14, 4, 4, 4, 4, 4, 14],
        'J' => [7, 2, 2, 2, 2, 18, 12],
        'K' => [17, 18, 20, 24, 20, 18, 17],
        'L' => [16, 16, 16, 16, 16, 16, 31],
        'M' => [17, 27, 21, 21, 17, 17, 17],
        'N' => [17, 17, 25, 21, 19, 17, 17],
        'O' => [14, 17, 17, 17, 17, 17, 14],
        'P' => [30, 17, 17, 30, 16, 16, 16],
        'Q' => [14, 17, 17, 17, 21, 18, 13],
        'R' => [30, 17, 17, 30, 20, 18, 17],
        'S' => [15, 16, 16, 14, 1, 1, 30],
        'T' => [31, 4, 4, 4, 4, 4, 4],
        'U' => [17, 17, 17, 17, 17, 17, 14],
        'V' => [17, 17, 17, 17, 17, 10, 4],
        'W' => [17, 17, 17, 21, 21, 21, 10],
        'X' => [17, 17, 10, 4, 10, 17, 17],
        'Y' => [17, 17, 17, 10, 4, 4, 4],
        'Z' => [31, 1, 2, 4, 8, 16, 31],
        '.' => [0, 0, 0, 0, 0, 12, 12],
        ',' => [0, 0, 0, 0, 12, 4, 8],
        '-' => [0, 0, 0, 31, 0, 0, 0],
        '+' => [0, 4, 4, 31, 4, 4, 0],
        '%' => [24, 25, 2, 4, 8, 19, 3],
        '(' => [2, 4, 8, 8, 8, 4, 2],
        ')' => [8, 4, 2, 2, 2, 4, 8],
        '/' => [0, 1, 2, 4, 8, 16, 0],
        ':' => [0, 12, 12, 0, 12, 12, 0],
        '=' => [0, 0, 31, 0, 31, 0, 0],
        '@' => [14, 17, 1, 13, 21, 21, 14],
        '_' => [0, 0, 0, 0, 0, 0, 31],
        _ => [31, 17, 17, 17, 17, 17, 31],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_its_series_in_their_colours() {
        let chart = Chart {
            title: "score vs queries".into(),
            x_label: "queries per image".into(),
            y_label: "score".into(),
            series: vec![
                Series {
                    label: "nes".into(),
                    points: vec![(100.0, 0.7), (1000.0, 0.6), (10000.0, 0.5)],
                },
                Series {
                    label: "square".into(),
                    points: vec![(100.0, 0.75), (1000.0, 0.72)],
                },
            ],
            hlines: vec![HLine {
                label: "clean".into(),
                y: 0.77,
            }],
        };
        let im = chart.render();
        assert_eq!((im.width(), im.height()), (W, H));
        let count = |col: [u8; 3]| im.as_bytes().chunks(3).filter(|p| *p == col).count();
        // both lines and their markers are there, the first colour more (3 points, 2 segments)
        let (a, b) = (count(PALETTE[0]), count(PALETTE[1]));
        assert!(a > 300 && b > 150 && a > b, "{a} {b}");
        // the lowest point of the first series is drawn near the bottom of the plot area
        let ph = i64::from(H) - TOP - BOTTOM;
        let low_y = (0..H)
            .rev()
            .find(|&y| (0..W).any(|x| (0..3).all(|c| im.get(x, y, c) == PALETTE[0][c])))
            .unwrap() as i64;
        assert!(low_y > TOP + ph * 3 / 4 && low_y <= TOP + ph + 5, "{low_y}");
    }

    #[test]
    fn a_long_legend_label_widens_the_canvas_to_fit() {
        let label = "hybrid-nes (white-box) with a long name of forty-odd letters";
        let chart = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![Series {
                label: label.into(),
                points: vec![(100.0, 0.7), (1000.0, 0.6)],
            }],
            hlines: vec![],
        };
        let im = chart.render();
        let pw = i64::from(W) - LEFT - RIGHT;
        let text_end = LEFT + pw + 16 + 30 + text_width(label, 2);
        assert!(
            i64::from(im.width()) > text_end,
            "{} <= {text_end}",
            im.width()
        );
        // the label's last glyph is drawn: black pixels in its last 12 columns
        let black = (text_end - 12..text_end).any(|x| {
            (0..i64::from(H)).any(|y| {
                let i = 3 * (y as usize * im.width() as usize + x as usize);
                im.as_bytes()[i..i + 3] == [0, 0, 0]
            })
        });
        assert!(black);
        // the marker of the point on the last decade (1,000) is inside the frame: none of
        // its colour between the frame's right edge and the legend
        let col = PALETTE[0];
        let outside = (LEFT + pw..LEFT + pw + 12).any(|x| {
            (0..i64::from(H)).any(|y| {
                let i = 3 * (y as usize * im.width() as usize + x as usize);
                im.as_bytes()[i..i + 3] == col
            })
        });
        assert!(!outside);
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(nice_step(0.037), 0.05);
        assert_eq!(nice_step(0.012), 0.02);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(decimals(0.05), 2);
        assert_eq!(fmt_count(10000.0), "10,000");
        assert_eq!(fmt_count(100.0), "100");
    }

    #[test]
    fn empty_and_degenerate_charts_render() {
        let mut chart = Chart {
            title: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![],
            hlines: vec![],
        };
        let _ = chart.render();
        chart.series.push(Series {
            label: "one".into(),
            points: vec![(100.0, 0.5), (-1.0, f64::NAN)],
        });
        let im = chart.render();
        assert!(im.as_bytes().chunks(3).any(|p| p == PALETTE[0]));
    }
}
