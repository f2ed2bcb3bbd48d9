//! The tables the demo prints when the job ends: what each collection copied and how fast, what
//! the workload wrote and the streams applied (online jobs), and how each target collection
//! compares with its source.

use std::fmt::Write as _;
use std::time::Duration;

use crate::compare::Comparison;
use crate::workload::{KindCounts, WriteKind};

/// One collection's copy figures, as the job reported them.
pub struct CopyRow {
    pub source: String,
    pub target: String,
    pub documents: u64,
    pub bytes: u64,
    /// Time from the collection's first copied batch to its last; `None` when the job did not
    /// report both ends.
    pub duration: Option<Duration>,
    /// Source or target round trips that were throttled and retried.
    pub throttled: u64,
}

/// Renders the per-collection copy table with a total line.
pub fn copy_table(rows: &[CopyRow]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<40} {:>10} {:>11} {:>10} {:>11} {:>9} {:>9}",
        "collection (source -> target)",
        "documents",
        "bytes",
        "docs/s",
        "bytes/s",
        "duration",
        "throttled"
    );
    for row in rows {
        let name = if row.source == row.target {
            row.source.clone()
        } else {
            format!("{} -> {}", row.source, row.target)
        };
        write_copy_line(&mut table, &name, row);
    }

    let total = CopyRow {
        source: String::new(),
        target: String::new(),
        documents: rows.iter().map(|r| r.documents).sum(),
        bytes: rows.iter().map(|r| r.bytes).sum(),
        // Collections copy in parallel, so the job's span is the longest duration, not their sum.
        duration: rows.iter().filter_map(|r| r.duration).max(),
        throttled: rows.iter().map(|r| r.throttled).sum(),
    };
    write_copy_line(&mut table, "total", &total);
    table
}

fn write_copy_line(table: &mut String, name: &str, row: &CopyRow) {
    let CopyRow {
        documents,
        bytes,
        duration,
        throttled,
        ..
    } = *row;
    let seconds = duration.map(|d| d.as_secs_f64()).filter(|s| *s > 0.0);
    let documents_per_second =
        seconds.map_or("-".to_string(), |s| format!("{:.0}", documents as f64 / s));
    let bytes_per_second = seconds.map_or("-".to_string(), |s| {
        format!("{}/s", human_bytes((bytes as f64 / s) as u64))
    });
    let duration = duration.map_or("-".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
    let _ = writeln!(
        table,
        "{name:<40} {documents:>10} {:>11} {documents_per_second:>10} {bytes_per_second:>11} {duration:>9} {throttled:>9}",
        human_bytes(bytes)
    );
}

/// Renders the workload's writes per collection and kind, with a total line.
pub fn workload_table(namespaces: &[String], counts: &[KindCounts]) -> String {
    let mut table = String::new();
    let _ = write!(table, "{:<40}", "collection");
    for kind in WriteKind::ALL {
        let _ = write!(table, " {:>9}", kind.label());
    }
    let _ = writeln!(table, " {:>9}", "total");

    let mut total = KindCounts::default();
    for (namespace, row) in namespaces.iter().zip(counts) {
        write_workload_line(&mut table, namespace, row);
        for (sum, count) in total.0.iter_mut().zip(row.0) {
            *sum += count;
        }
    }
    write_workload_line(&mut table, "total", &total);
    table
}

fn write_workload_line(table: &mut String, name: &str, counts: &KindCounts) {
    let _ = write!(table, "{name:<40}");
    for kind in WriteKind::ALL {
        let _ = write!(table, " {:>9}", counts.get(kind));
    }
    let _ = writeln!(table, " {:>9}", counts.total());
}

/// One collection's change stream, as the job reported it at the end.
pub struct ReplicationRow {
    pub source: String,
    pub target: String,
    pub state: String,
    pub events_applied: u64,
    pub upserts: u64,
    /// Deletes the stream applied (delete events, or updates of documents deleted since).
    pub deletes: u64,
    /// Target documents reconciliation deleted because the source no longer had them.
    pub reconciled_deletes: u64,
    pub reconcile_passes: u32,
}

/// Renders the replication table with a total line.
pub fn replication_table(rows: &[ReplicationRow]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "collection (source -> target)",
        "stream",
        "events",
        "upserts",
        "deletes",
        "reconciled",
        "passes"
    );
    for row in rows {
        let name = if row.source == row.target {
            row.source.clone()
        } else {
            format!("{} -> {}", row.source, row.target)
        };
        let _ = writeln!(
            table,
            "{name:<40} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
            row.state,
            row.events_applied,
            row.upserts,
            row.deletes,
            row.reconciled_deletes,
            row.reconcile_passes
        );
    }
    let _ = writeln!(
        table,
        "{:<40} {:>9} {:>9} {:>9} {:>9} {:>11} {:>7}",
        "total",
        "",
        rows.iter().map(|r| r.events_applied).sum::<u64>(),
        rows.iter().map(|r| r.upserts).sum::<u64>(),
        rows.iter().map(|r| r.deletes).sum::<u64>(),
        rows.iter().map(|r| r.reconciled_deletes).sum::<u64>(),
        rows.iter().map(|r| r.reconcile_passes).sum::<u32>()
    );
    table
}

/// Renders the comparison table: counts per side, identical documents, and the verdict, with
/// the first difference under any collection that differs.
pub fn comparison_table(comparisons: &[Comparison]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<40} {:>10} {:>10} {:>10}  result",
        "target collection", "source", "target", "identical"
    );
    for comparison in comparisons {
        let verdict = if comparison.is_identical() {
            "identical"
        } else {
            "DIFFERENT"
        };
        let _ = writeln!(
            table,
            "{:<40} {:>10} {:>10} {:>10}  {verdict}",
            comparison.target_namespace,
            comparison.source_documents,
            comparison.target_documents,
            comparison.identical_documents,
        );
        if let Some(difference) = &comparison.first_difference {
            let _ = writeln!(table, "    first difference: {difference}");
        }
    }
    table
}

/// Formats a byte count with binary units (KiB, MiB, GiB).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn copy_table_computes_rates_and_total() {
        let rows = [
            CopyRow {
                source: "aviation.flights".into(),
                target: "aviation.flights".into(),
                documents: 200_000,
                bytes: 10 * 1024 * 1024,
                duration: Some(Duration::from_secs(100)),
                throttled: 40,
            },
            CopyRow {
                source: "cinema.movies".into(),
                target: "films.movies".into(),
                documents: 3_201,
                bytes: 1024 * 1024,
                duration: None,
                throttled: 2,
            },
        ];
        let table = copy_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("aviation.flights "), "{table}");
        assert!(lines[1].contains(" 2000 "), "{table}");
        assert!(lines[1].contains("102.4 KiB/s"), "{table}");
        assert!(lines[1].contains("100.0 s"), "{table}");
        assert!(
            lines[2].starts_with("cinema.movies -> films.movies"),
            "{table}"
        );
        assert!(lines[2].contains(" - "), "{table}");
        assert!(lines[2].trim_end().ends_with(" 2"), "{table}");
        assert!(lines[3].starts_with("total"), "{table}");
        assert!(lines[3].contains(" 203201 "), "{table}");
        assert!(lines[3].contains("11.0 MiB"), "{table}");
        assert!(lines[3].trim_end().ends_with(" 42"), "{table}");
    }

    #[test]
    fn comparison_table_shows_difference() {
        let comparisons = [
            Comparison {
                source_namespace: "geo.earthquakes".into(),
                target_namespace: "geo.earthquakes".into(),
                source_documents: 2,
                target_documents: 2,
                identical_documents: 2,
                ..Comparison::default()
            },
            Comparison {
                source_namespace: "fidelity.bsonTypes".into(),
                target_namespace: "fidelity.bsonTypes".into(),
                source_documents: 2,
                target_documents: 2,
                identical_documents: 1,
                differing_documents: 1,
                first_difference: Some("_id 1: field 1 differs".into()),
            },
        ];
        let table = comparison_table(&comparisons);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].ends_with("identical"), "{table}");
        assert!(lines[2].ends_with("DIFFERENT"), "{table}");
        assert_eq!(lines[3], "    first difference: _id 1: field 1 differs");
    }

    #[test]
    fn workload_table_sums_kinds_and_collections() {
        let namespaces = [
            "aviation.flights".to_string(),
            "geo.earthquakes".to_string(),
        ];
        let counts = [KindCounts([1, 2, 3, 4, 5]), KindCounts([10, 0, 0, 0, 7])];
        let table = workload_table(&namespaces, &counts);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "collection",
                "inserts",
                "$set",
                "$inc",
                "replaces",
                "deletes",
                "total"
            ]
        );
        let flights: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(flights, ["aviation.flights", "1", "2", "3", "4", "5", "15"]);
        let total: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(total, ["total", "11", "2", "3", "4", "12", "32"]);
    }

    #[test]
    fn replication_table_sums_streams() {
        let row = |source: &str, target: &str, events: u64, reconciled: u64| ReplicationRow {
            source: source.into(),
            target: target.into(),
            state: "finished".into(),
            events_applied: events,
            upserts: events,
            deletes: 0,
            reconciled_deletes: reconciled,
            reconcile_passes: 1,
        };
        let rows = [
            row("aviation.flights", "aviation.flights", 100, 7),
            row("cinema.movies", "media.movies", 20, 3),
        ];
        let table = replication_table(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[2].starts_with("cinema.movies -> media.movies"),
            "{table}"
        );
        let total: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(total, ["total", "120", "120", "0", "10", "2"]);
    }
}
