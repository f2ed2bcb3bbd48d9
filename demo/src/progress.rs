//! Live progress while the job runs: one `indicatif` bar per collection under a job status line.
//!
//! When stderr is not a terminal (output piped to a file), bars would not draw, so a plain status
//! block is printed every few seconds instead.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::{CollectionView, JobView};

/// Seconds between plain status blocks when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// The bars of one job.
pub struct JobProgress {
    multi: MultiProgress,
    header: ProgressBar,
    bars: Vec<ProgressBar>,
    /// Whether bars are drawn; otherwise plain lines go to stderr.
    interactive: bool,
    last_plain: Option<Instant>,
}

impl JobProgress {
    /// Creates a bar for every collection of `job`.
    pub fn new(job: &JobView) -> Self {
        let interactive = std::io::stderr().is_terminal();
        let multi = if interactive {
            MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4))
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };

        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        header.enable_steady_tick(Duration::from_millis(200));

        let name_width = job
            .collections
            .iter()
            .map(|c| c.source.chars().count())
            .max()
            .unwrap_or(10);
        let template = format!(
            "  {{prefix:<{name_width}}} [{{bar:32.cyan/blue}}] {{percent:>3}}% {{human_pos:>9}}/{{human_len:<9}} {{msg}}"
        );
        let style = ProgressStyle::with_template(&template)
            .expect("valid template")
            .progress_chars("=> ");
        let bars = job
            .collections
            .iter()
            .map(|collection| {
                let bar = multi.add(ProgressBar::new(collection.documents_estimated.max(1)));
                bar.set_style(style.clone());
                bar.set_prefix(collection.source.clone());
                bar
            })
            .collect();

        JobProgress {
            multi,
            header,
            bars,
            interactive,
            last_plain: None,
        }
    }

    /// Shows `job`'s latest figures, with `throttled` source reads so far and the workload's
    /// `workload_writes` while it runs.
    pub fn update(&mut self, job: &JobView, throttled: u64, workload_writes: Option<u64>) {
        let header = format!(
            "job {} {}: {:.1}% of {} documents, {:.0} docs/s, concurrency {}, {} throttled reads",
            job.name,
            job.state.as_str(),
            job.percent,
            job.documents_estimated,
            job.documents_per_second,
            job.concurrency,
            throttled
        );
        let header = match &job.verification {
            Some(verification) => format!(
                "{header}, verification {} {}/{} chunks",
                verification.state, verification.chunks_verified, verification.chunks_total
            ),
            None => header,
        };
        let header = match &job.replication {
            Some(_) => format!("{header}, {}", replication_line(job)),
            None => header,
        };
        let header = match workload_writes {
            Some(writes) => format!("{header}, workload {writes} writes"),
            None => header,
        };
        self.header.set_message(header.clone());

        for (bar, collection) in self.bars.iter().zip(&job.collections) {
            let length = collection
                .documents_estimated
                .max(collection.documents_copied)
                .max(1);
            bar.set_length(length);
            bar.set_position(collection.documents_copied);
            bar.set_message(collection_message(collection));
        }

        if !self.interactive
            && self
                .last_plain
                .is_none_or(|t| t.elapsed() >= PLAIN_INTERVAL)
        {
            self.last_plain = Some(Instant::now());
            eprintln!("{header}");
            for collection in &job.collections {
                eprintln!(
                    "  {:<24} {:>5.1}% {:>8}/{:<8} {}",
                    collection.source,
                    collection.percent,
                    collection.documents_copied,
                    collection.documents_estimated,
                    collection_message(collection)
                );
            }
        }
    }

    /// Prints a line above the bars.
    pub fn println(&self, line: &str) {
        if self.interactive {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }

    /// Stops the spinner and leaves the bars as they are.
    pub fn finish(&self) {
        self.header.finish();
        for bar in &self.bars {
            bar.finish();
        }
    }
}

/// Describes a job's replication in one line: largest lag, events applied, and reconciliation.
pub fn replication_line(job: &JobView) -> String {
    let Some(replication) = &job.replication else {
        return "no replication yet".to_string();
    };
    let lag = replication
        .lag_seconds
        .map_or("unknown".to_string(), |s| format!("{s:.1} s"));
    let reconciling: Vec<String> = job
        .collections
        .iter()
        .filter_map(|c| {
            let pass = &c.replication.as_ref()?.reconciliation;
            pass.running
                .then(|| format!("{} {:.0}%", c.source, pass.percent.unwrap_or(0.0)))
        })
        .collect();
    let reconciliation = if reconciling.is_empty() {
        String::new()
    } else {
        format!(", reconciling {}", reconciling.join(", "))
    };
    format!(
        "lag {lag}, {} events applied, {} deletes found by reconciliation{reconciliation}",
        replication.events_applied, replication.deletes_found_by_reconciliation
    )
}

/// Describes one collection's copy and, once it replicates, its change stream.
fn collection_message(collection: &CollectionView) -> String {
    let copy = format!(
        "{} · chunks {}/{} · {:.0} docs/s",
        collection.state,
        collection.chunks_completed,
        collection.chunks_total,
        collection.documents_per_second
    );
    let Some(stream) = &collection.replication else {
        return copy;
    };
    let lag = stream
        .lag_seconds
        .map_or("-".to_string(), |s| format!("{s:.1} s"));
    let reconciliation = if stream.reconciliation.running {
        format!(
            " · reconciling {:.0}%",
            stream.reconciliation.percent.unwrap_or(0.0)
        )
    } else {
        String::new()
    };
    format!(
        "{copy} · stream {} · {} events · lag {lag}{reconciliation}",
        stream.state, stream.events_applied
    )
}
