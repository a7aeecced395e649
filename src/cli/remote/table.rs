//! Plain-text tables and the ways times are shown in them.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Spaces between columns, as kubectl prints them.
const GAP: usize = 3;

/// Shown where a value is absent.
pub const NONE: &str = "<none>";

/// Rows under a header, printed with every column as wide as its widest cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; missing cells print empty.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The width of each column: its widest cell, header included.
    pub fn widths(&self) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            grow_widths(&mut widths, row);
        }
        widths
    }

    /// The header and every row, one line each.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            out.push_str(&format_row(row, &widths));
            out.push('\n');
        }
        out
    }
}

/// Widens `widths` so that every cell of `row` fits.
pub fn grow_widths(widths: &mut Vec<usize>, row: &[String]) {
    if widths.len() < row.len() {
        widths.resize(row.len(), 0);
    }
    for (width, cell) in widths.iter_mut().zip(row) {
        *width = (*width).max(cell.chars().count());
    }
}

/// One line of a table: each cell padded to its column's width, no trailing spaces.
pub fn format_row(row: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (index, cell) in row.iter().enumerate() {
        if index > 0 {
            line.push_str(&" ".repeat(GAP));
        }
        line.push_str(cell);
        let width = widths.get(index).copied().unwrap_or(0);
        line.push_str(&" ".repeat(width.saturating_sub(cell.chars().count())));
    }
    line.truncate(line.trim_end().len());
    line
}

/// An age in kubectl's short style: `45s`, `12m`, `3h`, `5d`, `2y`.
///
/// A negative age (the server's clock ahead of ours) shows as `0s`.
pub fn age(seconds: f64) -> String {
    if seconds.is_nan() {
        return "<unknown>".to_string();
    }
    // Whole seconds are all an age shows; the cast saturates for absurd values.
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        86_400..31_536_000 => format!("{}d", s / 86_400),
        _ => format!("{}y", s / 31_536_000),
    }
}

/// The age of `time` at `now` (both unix seconds), or [`NONE`] when unknown.
pub fn age_since(time: Option<f64>, now: f64) -> String {
    time.map_or_else(|| NONE.to_string(), |t| age(now - t))
}

/// A unix time as a wall-clock time in `tz`: `2020-04-15 08:33:13`.
pub fn wall_clock(unix: f64, tz: &TimeZone) -> String {
    // Milliseconds are far finer than what is shown; the cast saturates out of range.
    match Timestamp::from_millisecond((unix * 1000.0) as i64) {
        Ok(ts) => tz.to_datetime(ts).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => format!("{unix}"),
    }
}

/// A unix time both as wall-clock time and as an age: `2020-04-15 08:33:13 (5d ago)`.
pub fn when(unix: Option<f64>, now: f64, tz: &TimeZone) -> String {
    match unix {
        Some(t) => format!("{} ({} ago)", wall_clock(t, tz), age(now - t)),
        None => NONE.to_string(),
    }
}

/// An RFC 3339 time (`2024-05-01T10:00:00.5Z`) as unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<f64> {
    let ts: Timestamp = text.parse().ok()?;
    Some(ts.as_millisecond() as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(row: &[&str]) -> Vec<String> {
        row.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_have_no_trailing_spaces() {
        let mut table = Table::new(&["NAME", "PHASE", "IMAGE"]);
        table.push(cells(&["carls_model", "Available", "img:1"]));
        table.push(cells(&["a", "Pending", ""]));
        assert_eq!(
            table.render(),
            "NAME          PHASE       IMAGE\n\
             carls_model   Available   img:1\n\
             a             Pending\n"
        );
    }

    #[test]
    fn wide_characters_are_counted_as_one_column_each() {
        let mut table = Table::new(&["A", "B"]);
        table.push(cells(&["é", "x"]));
        assert_eq!(table.render(), "A   B\né   x\n");
    }

    #[test]
    fn rows_printed_later_use_the_widths_of_the_first_table() {
        let mut table = Table::new(&["NAME", "PHASE"]);
        table.push(cells(&["carls_model", "Available"]));
        let mut widths = table.widths();
        let later = cells(&["b", "Progressing"]);
        grow_widths(&mut widths, &later);
        assert_eq!(format_row(&later, &widths), "b             Progressing");
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(0.4), "0s");
        assert_eq!(age(45.0), "45s");
        assert_eq!(age(59.9), "59s");
        assert_eq!(age(60.0), "1m");
        assert_eq!(age(12.0 * 60.0 + 30.0), "12m");
        assert_eq!(age(3.0 * 3600.0 + 59.0 * 60.0), "3h");
        assert_eq!(age(5.0 * 86_400.0 + 7.0), "5d");
        assert_eq!(age(800.0 * 86_400.0), "2y");
        assert_eq!(age(-5.0), "0s");
        assert_eq!(age(f64::NAN), "<unknown>");
        assert_eq!(age_since(None, 100.0), "<none>");
        assert_eq!(age_since(Some(40.0), 100.0), "1m");
    }

    #[test]
    fn times_show_as_wall_clock_and_age() {
        let utc = TimeZone::UTC;
        assert_eq!(wall_clock(1586932393.268678, &utc), "2020-04-15 06:33:13");
        assert_eq!(
            when(Some(1586932393.0), 1586932393.0 + 7200.0, &utc),
            "2020-04-15 06:33:13 (2h ago)"
        );
        let plus_two = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(wall_clock(1586932393.0, &plus_two), "2020-04-15 08:33:13");
    }

    #[test]
    fn rfc3339_times_parse_to_unix_seconds() {
        assert_eq!(parse_rfc3339("2020-04-15T06:33:13.5Z"), Some(1586932393.5));
        assert_eq!(
            parse_rfc3339("2020-04-15T08:33:13+02:00"),
            Some(1586932393.0)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
