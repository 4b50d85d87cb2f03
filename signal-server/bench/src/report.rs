//! The bench's output: a two-column table per section for people, and one JSON line holding
//! the same figures for scripts.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

/// Sections of results, in the order they ran.
#[derive(Default)]
pub struct Report {
    sections: Vec<(String, Vec<(String, String)>)>,
    json: Map<String, Value>,
}

impl Report {
    pub fn add(&mut self, key: &str, title: String, rows: Vec<(String, String)>, json: Value) {
        self.sections.push((title, rows));
        self.json.insert(key.to_owned(), json);
    }

    /// The table, headed by the machine and the date.
    pub fn table(&self) -> String {
        let machine = machine();
        let mut out = format!(
            "signal-bench {} on {} ({} cores), {} UTC\n",
            env!("CARGO_PKG_VERSION"),
            machine.cpu,
            machine.cores,
            machine.date
        );
        let width = self.sections.iter().flat_map(|(_, rows)| rows.iter().map(|(k, _)| k.len())).max().unwrap_or(0);
        for (title, rows) in &self.sections {
            out.push_str(&format!("\n{title}\n"));
            for (key, value) in rows {
                out.push_str(&format!("  {key:<width$}  {value}\n"));
            }
        }
        out
    }

    /// Every figure as one JSON object on one line.
    pub fn json_line(&self) -> String {
        let machine = machine();
        let mut all = self.json.clone();
        all.insert("machine".into(), json!({ "cpu": machine.cpu, "cores": machine.cores, "date": machine.date }));
        Value::Object(all).to_string()
    }
}

struct Machine {
    cpu: String,
    cores: usize,
    date: String,
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Machine { cpu, cores, date: utc_date(secs) }
}

/// "YYYY-MM-DD" for a Unix time (the civil-from-days algorithm of H. Hinnant).
fn utc_date(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
        assert_eq!(utc_date(1_796_083_200), "2026-12-01");
    }

    #[test]
    fn table_aligns_values() {
        let mut r = Report::default();
        r.add("a", "A".into(), vec![("short".into(), "1".into()), ("much longer".into(), "2".into())], json!(1));
        let table = r.table();
        assert!(table.contains("  short        1\n"));
        assert!(table.contains("  much longer  2\n"));
        assert!(r.json_line().starts_with('{'));
    }
}
