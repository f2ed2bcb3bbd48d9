//! Copy benchmark: copies N documents of about 1 KB from one MongoDB emulator process to another,
//! first with a plain driver loop (the raw pipe: read the source cursor, bulk-insert into the
//! target), then through the service in standalone mode, single-stream and with parallel chunks.
//! Reports documents and MB per second and the service's peak resident memory.
//!
//! Run with `scripts/bench.sh` (it builds the release binaries and starts Azurite).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bson::{doc, Document, RawDocumentBuf};
use clap::Parser;
use futures::TryStreamExt;
use mongodb::Client;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Documents to copy.
    #[arg(long, default_value_t = 1_000_000)]
    documents: u64,
    /// Directory holding the release binaries `mongo-emulator` and `vcore-migrate`.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Azure Storage connection string for the service (Azurite).
    #[arg(long, env = "VCM_BENCH_STORAGE")]
    storage: String,
    /// Parallel chunks for the parallel run.
    #[arg(long, default_value_t = 4)]
    parallel: u32,
    /// Rounds of the three runs; the summary gives each run's median.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

/// Returns the median of some measurements (the mean of the middle two for an even count).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[middle],
        _ => (values[middle - 1] + values[middle]) / 2.0,
    }
}

/// A child process that is killed when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_emulator(
    bin_dir: &std::path::Path,
    personality: &str,
) -> anyhow::Result<(ChildGuard, String)> {
    let port = free_port()?;
    let child = Command::new(bin_dir.join("mongo-emulator"))
        .args(["--port", &port.to_string(), "--personality", personality])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context(
            "starting mongo-emulator; build it with cargo build --release -p mongo-emulator",
        )?;
    Ok((
        ChildGuard(child),
        format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
    ))
}

/// Returns the CPU time (user and system, all threads) a process has used so far, in seconds,
/// from /proc (Linux only).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain spaces, so fields are counted after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// The CPU seconds the source emulator, the target emulator and the copier used in one run.
#[derive(Clone, Copy, Default)]
struct CpuUse {
    source: f64,
    target: f64,
    copier: f64,
}

/// Reads the CPU time of the two emulators and the copier, to subtract one reading from another.
fn cpu_now(emulators: (u32, u32), copier: u32) -> CpuUse {
    CpuUse {
        source: cpu_seconds(emulators.0).unwrap_or(f64::NAN),
        target: cpu_seconds(emulators.1).unwrap_or(f64::NAN),
        copier: cpu_seconds(copier).unwrap_or(f64::NAN),
    }
}

impl std::ops::Sub for CpuUse {
    type Output = CpuUse;
    fn sub(self, earlier: CpuUse) -> CpuUse {
        CpuUse {
            source: self.source - earlier.source,
            target: self.target - earlier.target,
            copier: self.copier - earlier.copier,
        }
    }
}

/// Checks that a run left every document in the target, then drops its database so the next
/// run starts with an empty target.
async fn check_and_drop(target: &str, database: &str, expected: u64) -> anyhow::Result<()> {
    let client = Client::with_uri_str(target).await?;
    let db = client.database(database);
    let found = db
        .collection::<Document>("docs")
        .count_documents(doc! {})
        .await?;
    if found != expected {
        bail!("the {database} run left {found} documents in the target, not {expected}");
    }
    db.drop().await?;
    Ok(())
}

/// Peak resident set size of a process in MiB, from /proc (Linux only).
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn document(i: u64) -> Document {
    // About 1 KB of BSON: a few typed fields and a padded string.
    doc! {
        "_id": i as i64,
        "name": format!("customer-{i:08}"),
        "amount": (i % 10_000) as f64 / 100.0,
        "created": bson::DateTime::from_millis(1_600_000_000_000 + i as i64),
        "tags": ["alpha", "beta", "gamma"],
        "address": { "street": "1 Long Road", "city": "Springfield", "zip": format!("{:05}", i % 99_999) },
        "pad": "x".repeat(820),
    }
}

async fn load(uri: &str, total: u64) -> anyhow::Result<u64> {
    let client = Client::with_uri_str(uri).await?;
    let coll = client.database("bench").collection::<Document>("docs");
    let mut bytes = 0u64;
    let mut start = 0;
    let mut pending = Vec::new();
    while start < total {
        let end = (start + 1_000).min(total);
        let batch: Vec<Document> = (start..end).map(document).collect();
        for d in &batch {
            bytes += bson::to_vec(d)?.len() as u64;
        }
        let coll = coll.clone();
        pending.push(tokio::spawn(async move {
            coll.insert_many(batch).await.map(|_| ())
        }));
        if pending.len() >= 8 {
            for task in pending.drain(..) {
                task.await??;
            }
        }
        start = end;
    }
    for task in pending {
        task.await??;
    }
    Ok(bytes)
}

/// The raw pipe: one cursor, one bulk insert per batch of 1,000, nothing else.
async fn raw_pipe(source: &str, target: &str) -> anyhow::Result<(u64, Duration)> {
    let source = Client::with_uri_str(source).await?;
    let target = Client::with_uri_str(target).await?;
    let from = source
        .database("bench")
        .collection::<RawDocumentBuf>("docs");
    let to = target.database("raw").collection::<RawDocumentBuf>("docs");
    let started = Instant::now();
    let mut cursor = from
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .batch_size(1_000)
        .await?;
    let mut batch = Vec::with_capacity(1_000);
    let mut count = 0;
    while let Some(doc) = cursor.try_next().await? {
        batch.push(doc);
        if batch.len() == 1_000 {
            count += batch.len() as u64;
            to.insert_many(std::mem::take(&mut batch))
                .ordered(false)
                .await?;
        }
    }
    if !batch.is_empty() {
        count += batch.len() as u64;
        to.insert_many(batch).ordered(false).await?;
    }
    Ok((count, started.elapsed()))
}

/// One timed copy: the raw pipe or a service run.
struct CopyRun {
    seconds: f64,
    documents: u64,
    peak_rss_mib: f64,
    cpu: CpuUse,
}

async fn service_run(
    args: &Args,
    source: &str,
    target: &str,
    target_db: &str,
    parallel: u32,
    emulators: (u32, u32),
) -> anyhow::Result<CopyRun> {
    let port = free_port()?;
    let prefix = format!(
        "bench{}",
        std::process::id() % 100_000 + u32::from(port) % 1000
    );
    let key = "bench-key";
    let child = Command::new(args.bin_dir.join("vcore-migrate"))
        .arg("standalone")
        .env("AzureWebJobsStorage", &args.storage)
        .env("VCM_STORAGE_PREFIX", &prefix)
        .env("VCM_API_KEY", key)
        .env("VCM_LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("VCM_WORKER_CONCURRENCY", parallel.to_string())
        .env("VCM_SCHEDULER_INTERVAL_SECONDS", "1")
        .env("BENCH_SOURCE", source)
        .env("BENCH_TARGET", target)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting vcore-migrate; build it with cargo build --release")?;
    let pid = child.id();
    let _guard = ChildGuard(child);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if http.get(format!("{base}/api/health")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let request = json!({
        "name": format!("bench-{target_db}"),
        "mode": "offline",
        "source": { "setting": "BENCH_SOURCE" },
        "target": { "setting": "BENCH_TARGET" },
        "collections": [{ "database": "bench", "collection": "docs", "targetDatabase": target_db }],
        "options": {
            "chunkDocuments": 50_000,
            "batchSize": 1_000,
            "maxParallelChunks": parallel,
            "verification": "off"
        }
    });
    let cpu_before = cpu_now(emulators, pid);
    let started = Instant::now();
    let response = http
        .post(format!("{base}/api/jobs"))
        .header("x-api-key", key)
        .json(&request)
        .send()
        .await?;
    if response.status() != 201 {
        bail!("creating the job failed: {}", response.text().await?);
    }
    let job: Value = response.json().await?;
    let id = job["id"].as_str().unwrap_or_default().to_string();
    loop {
        let job: Value = http
            .get(format!("{base}/api/jobs/{id}"))
            .header("x-api-key", key)
            .send()
            .await?
            .json()
            .await?;
        match job["state"].as_str() {
            Some("completed") => {
                return Ok(CopyRun {
                    seconds: started.elapsed().as_secs_f64(),
                    documents: job["documentsCopied"].as_u64().unwrap_or(0),
                    peak_rss_mib: peak_rss_mib(pid).unwrap_or(f64::NAN),
                    cpu: cpu_now(emulators, pid) - cpu_before,
                })
            }
            Some("failed") | Some("cancelled") => bail!("the job ended {}: {job}", job["state"]),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (source_guard, source) = start_emulator(&args.bin_dir, "mongodb")?;
    let (target_guard, target) = start_emulator(&args.bin_dir, "vcore")?;
    let emulators = (source_guard.0.id(), target_guard.0.id());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let load_started = Instant::now();
    let bytes = load(&source, args.documents).await?;
    let mb = bytes as f64 / 1_000_000.0;
    eprintln!(
        "loaded {} documents ({mb:.0} MB) in {:.1} s",
        args.documents,
        load_started.elapsed().as_secs_f64()
    );

    if std::env::var("BENCH_SCAN_ONLY").is_ok() {
        let client = Client::with_uri_str(&source).await?;
        let coll = client.database("bench").collection::<Document>("docs");
        let raw = client
            .database("bench")
            .collection::<bson::RawDocumentBuf>("docs");
        for (projected, batch) in [
            (true, 10_000u32),
            (true, 1_000),
            (true, 5_000),
            (false, 10_000),
        ] {
            let started = Instant::now();
            let projection = if projected {
                doc! { "_id": 1 }
            } else {
                doc! {}
            };
            let mut cursor = raw
                .find(doc! {})
                .projection(projection)
                .sort(doc! { "_id": 1 })
                .batch_size(batch)
                .await?;
            let mut n = 0u64;
            while cursor.advance().await? {
                n += 1;
            }
            let scan = if projected { "id scan" } else { "full scan" };
            eprintln!(
                "{scan}, batch {batch}: {n} documents in {:.2} s",
                started.elapsed().as_secs_f64()
            );
        }
        // The planner's scan as it was: each row parsed into a `Document`.
        let started = Instant::now();
        let mut cursor = coll
            .find(doc! {})
            .projection(doc! { "_id": 1 })
            .sort(doc! { "_id": 1 })
            .batch_size(10_000)
            .await?;
        let mut n = 0u64;
        while cursor.try_next().await?.is_some() {
            n += 1;
        }
        eprintln!(
            "id scan into Document, batch 10000: {n} documents in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mut rounds: Vec<[CopyRun; 3]> = Vec::new();
    for round in 1..=args.rounds {
        let cpu_before = cpu_now(emulators, std::process::id());
        let (raw_count, raw_time) = raw_pipe(&source, &target).await?;
        let raw = CopyRun {
            seconds: raw_time.as_secs_f64(),
            documents: raw_count,
            peak_rss_mib: f64::NAN,
            cpu: cpu_now(emulators, std::process::id()) - cpu_before,
        };
        check_and_drop(&target, "raw", args.documents).await?;
        let single = service_run(&args, &source, &target, "single", 1, emulators).await?;
        check_and_drop(&target, "single", args.documents).await?;
        let parallel = service_run(
            &args,
            &source,
            &target,
            "parallel",
            args.parallel,
            emulators,
        )
        .await?;
        check_and_drop(&target, "parallel", args.documents).await?;
        eprintln!(
            "round {round}: raw {:.1} s, single {:.1} s, parallel {:.1} s",
            raw.seconds, single.seconds, parallel.seconds
        );
        rounds.push([raw, single, parallel]);
    }

    let names = [
        "raw driver pipe (1 stream)".to_string(),
        "service, 1 chunk at a time".to_string(),
        format!("service, {} chunks at a time", args.parallel),
    ];
    println!(
        "| round | run | seconds | documents/s | MB/s | vs raw pipe | service peak RSS | \
         CPU s: source, target, copier |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|");
    for (round, runs) in rounds.iter().enumerate() {
        let raw_rate = runs[0].documents as f64 / runs[0].seconds;
        for (name, run) in names.iter().zip(runs) {
            let rate = run.documents as f64 / run.seconds;
            let rss = if run.peak_rss_mib.is_nan() {
                "-".to_string()
            } else {
                format!("{:.0} MiB", run.peak_rss_mib)
            };
            println!(
                "| {} | {name} | {:.1} | {rate:.0} | {:.1} | {:.2}x | {rss} | {:.1}, {:.1}, {:.1} |",
                round + 1,
                run.seconds,
                mb / run.seconds,
                rate / raw_rate,
                run.cpu.source,
                run.cpu.target,
                run.cpu.copier
            );
        }
    }
    println!();
    println!("| run | median seconds | median documents/s | median of the rounds' ratios to the raw pipe |");
    println!("|---|---:|---:|---:|");
    for (kind, name) in names.iter().enumerate() {
        let seconds = median(rounds.iter().map(|r| r[kind].seconds).collect());
        let rate = median(
            rounds
                .iter()
                .map(|r| r[kind].documents as f64 / r[kind].seconds)
                .collect(),
        );
        let ratio = median(
            rounds
                .iter()
                .map(|r| r[0].seconds / r[kind].seconds)
                .collect(),
        );
        println!("| {name} | {seconds:.1} | {rate:.0} | {ratio:.2}x |");
    }
    Ok(())
}
