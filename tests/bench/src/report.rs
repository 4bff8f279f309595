//! Formatting: numbers with units, and a plain-text table with aligned
//! columns.

use std::time::Duration;

/// Bytes in decimal units (MB = 10^6 bytes, GB = 10^9), as `ls -h --si`
/// and disk vendors count.
pub fn bytes(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.3} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{n} B")
    }
}

/// Memory in MiB (2^20 bytes), as `ps` and `top` count.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
}

/// A duration in seconds, or minutes and seconds from one minute.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 59.5 {
        let total = s.round() as u64;
        format!("{} min {:02} s", total / 60, total % 60)
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else {
        format!("{s:.2} s")
    }
}

/// `a / b` as a factor with two decimals, or `-` when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

/// A table of strings: the first column left-aligned, the others right.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Add a row (header rows included).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, with a rule under the first `header_rows` rows.
    pub fn render(&self, header_rows: usize) -> String {
        let ncols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let width = |c: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..ncols).map(width).collect();
        let mut out = String::new();
        for (i, row) in self.rows.iter().enumerate() {
            let mut line = String::new();
            for (c, w) in widths.iter().enumerate() {
                let cell = row.get(c).map(String::as_str).unwrap_or("");
                if c == 0 {
                    line.push_str(&format!("{cell:<w$}"));
                } else {
                    line.push_str(&format!("  {cell:>w$}"));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
            if i + 1 == header_rows {
                let total: usize = widths.iter().sum::<usize>() + 2 * ncols.saturating_sub(1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_naturally() {
        assert_eq!(bytes(262_100_000), "262.1 MB");
        assert_eq!(bytes(1_142_000_000), "1.142 GB");
        assert_eq!(mib(18 << 20), "18.0 MiB");
        assert_eq!(secs(Duration::from_millis(3_456)), "3.46 s");
        assert_eq!(secs(Duration::from_millis(52_340)), "52.3 s");
        assert_eq!(secs(Duration::from_secs(125)), "2 min 05 s");
        assert_eq!(ratio(1.0, 4.0), "0.25");
        assert_eq!(ratio(1.0, 0.0), "-");
    }

    #[test]
    fn columns_line_up() {
        let mut t = Table::default();
        t.row(["what", "a", "b"]);
        t.row(["wall time", "1.0 s", "12.0 s"]);
        let s = t.render(1);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "what           a       b");
        assert_eq!(lines[1], "-".repeat(24));
        assert_eq!(lines[2], "wall time  1.0 s  12.0 s");
    }
}
