//! A table of text cells, printed aligned on the terminal and as Markdown
//! in the report, so both show the same figures.

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: impl Into<String>, headers: &[&str]) -> Table {
        Table {
            title: title.into(),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        (0..self.headers.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([self.headers[i].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Whether every cell of column `i` is a number (then it aligns right).
    fn numeric(&self, i: usize) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|r| is_number(&r[i]))
    }

    /// Aligned columns: numbers to the right, text to the left.
    pub fn to_text(&self) -> String {
        let widths = self.widths();
        let right: Vec<bool> = (0..self.headers.len()).map(|i| self.numeric(i)).collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .zip(widths.iter().zip(&right))
                .map(|(c, (w, right))| {
                    if *right {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:<w$}")
                    }
                })
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        };
        let mut out = format!("{}\n{}\n", self.title, line(&self.headers));
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }

    pub fn to_markdown(&self) -> String {
        let mut out = format!("### {}\n\n| {} |\n|", self.title, self.headers.join(" | "));
        for i in 0..self.headers.len() {
            out.push_str(if self.numeric(i) { "---:|" } else { "---|" });
        }
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }
}

/// `12.5`, `-3 %`, `1.95x`, `+4.0 %`: right-aligned.
fn is_number(cell: &str) -> bool {
    let core = cell
        .trim_end_matches(" %")
        .trim_end_matches('x')
        .trim_start_matches(['+', '-']);
    !core.is_empty() && core.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// A float with `digits` decimals.
pub fn num(value: f64, digits: usize) -> String {
    format!("{value:.digits$}")
}

/// Milliseconds, with decimals enough for sub-millisecond figures (`0.213`,
/// `15.8`, `4649`).
pub fn ms(value: f64) -> String {
    if value >= 1000.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// A change in percent with its sign (`-37.0 %`).
pub fn pct(value: f64) -> String {
    format!("{value:+.1} %")
}

/// Bytes in GiB with one decimal (`9.8 GiB`), `-` for unknown.
pub fn gib(bytes: u64) -> String {
    if bytes == 0 {
        return "-".into();
    }
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_aligns_numbers_right_and_markdown_marks_numeric_columns() {
        let mut t = Table::new("T", &["profile", "tok/s", "change"]);
        t.row(vec!["cpu-1c".into(), num(9.5, 1), pct(-37.0)]);
        t.row(vec!["cpu-2c".into(), num(19.25, 2), pct(0.0)]);
        assert_eq!(
            t.to_text(),
            "T\nprofile  tok/s   change\ncpu-1c     9.5  -37.0 %\ncpu-2c   19.25   +0.0 %\n"
        );
        let md = t.to_markdown();
        assert!(
            md.contains("| profile | tok/s | change |\n|---|---:|---:|\n"),
            "{md}"
        );
        assert!(md.contains("| cpu-1c | 9.5 | -37.0 % |"), "{md}");
    }
}
