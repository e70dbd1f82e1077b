//! Rendering the rows as one Markdown table, aligned for the terminal.

use super::rows::{Figure, Row};

/// Column headers; the first two are left-aligned, the rest right-aligned.
const HEADERS: [&str; 11] = [
    "scenario",
    "server",
    "throughput",
    "MB/s",
    "p50 µs",
    "p99 µs",
    "server cost",
    "thr eddy/tokio",
    "thr eddy/epoll",
    "cost eddy/tokio",
    "cost eddy/epoll",
];

/// Renders `rows` as a Markdown table (one line per row, header first).
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 11]> = rows.iter().map(cells).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let header = HEADERS.map(str::to_owned);
    let mut rule = widths.map(|w| format!("{}:", "-".repeat(w - 1)));
    for (cell, w) in rule.iter_mut().zip(widths).take(2) {
        *cell = format!(":{}", "-".repeat(w - 1));
    }
    let mut out = line(&header, &widths);
    out.push_str(&line(&rule, &widths));
    for row in &cells {
        out.push_str(&line(row, &widths));
    }
    out
}

fn line(cells: &[String; 11], widths: &[usize; 11]) -> String {
    let mut out = String::from("|");
    for (i, (cell, &w)) in cells.iter().zip(widths).enumerate() {
        if i < 2 {
            out.push_str(&format!(" {cell:<w$} |"));
        } else {
            out.push_str(&format!(" {cell:>w$} |"));
        }
    }
    out.push('\n');
    out
}

fn cells(row: &Row) -> [String; 11] {
    let mut c: [String; 11] = Default::default();
    c[0] = row.scenario.clone();
    c[1] = row.server.clone();
    if let Some(note) = &row.note {
        c[2] = note.clone();
        return c;
    }
    c[2] = figure(row.throughput);
    c[3] = opt(row.mb_per_sec);
    c[4] = opt(row.p50_us);
    c[5] = opt(row.p99_us);
    c[6] = figure(row.cost);
    if let Some(r) = row.ratios {
        let ratios = [
            r.throughput_vs_tokio,
            r.throughput_vs_epoll,
            r.cost_vs_tokio,
            r.cost_vs_epoll,
        ];
        for (cell, ratio) in c[7..].iter_mut().zip(ratios) {
            *cell = ratio.map_or_else(|| "—".to_owned(), |x| format!("{x:.2}×"));
        }
    }
    c
}

fn figure(f: Option<Figure>) -> String {
    f.map_or_else(
        || "—".to_owned(),
        |f| format!("{} {}", number(f.value), f.unit),
    )
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "—".to_owned(), number)
}

/// About three significant digits; thousands separated by commas.
pub fn number(x: f64) -> String {
    let a = x.abs();
    if a >= 1000.0 {
        let digits = format!("{:.0}", a);
        let mut grouped = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(ch);
        }
        if x < 0.0 {
            grouped.insert(0, '-');
        }
        grouped
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::rows::Ratios;

    #[test]
    fn numbers_are_grouped_and_rounded() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(-4_096.0), "-4,096");
        assert_eq!(number(512.4), "512");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.0), "0.00");
    }

    #[test]
    fn renders_figures_ratios_and_notes() {
        let eddy = Row {
            throughput: Some(Figure::new(150_000.0, "packets/s")),
            mb_per_sec: Some(10.2),
            cost: Some(Figure::new(6.5, "µs CPU/packet")),
            ratios: Some(Ratios {
                throughput_vs_tokio: Some(1.5),
                ..Ratios::default()
            }),
            ..Row::new("ping-pong", "eddy fd")
        };
        let na = Row::noted("broadcast", "eddy", "n/a (not implemented yet)");
        let text = render(&[eddy, na]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("| :-") && lines[1].ends_with(": |"));
        assert!(lines[2].contains("150,000 packets/s") && lines[2].contains("1.50×"));
        assert!(lines[2].contains("6.50 µs CPU/packet"));
        assert!(lines[3].contains("n/a (not implemented yet)"));
        let widths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{text}");
    }
}
