//! A Herald server the bench starts itself: this same executable as a child `herald serve`,
//! on a fresh SQLite data directory or a fresh PostgreSQL schema, listening on a free
//! loopback port. It can be stopped (SIGTERM or SIGKILL) and started again on the same data
//! to time a restart, and its resident memory is read from `/proc/<pid>/status`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// Where the spawned server keeps its data.
#[derive(Debug, Clone)]
pub enum SpawnStore {
    Sqlite,
    /// A base `postgres://` URL; the bench creates a fresh schema in it.
    Postgres(String),
}

#[derive(Debug, Clone)]
pub struct SpawnOptions {
    pub store: SpawnStore,
    pub workers: usize,
    /// Extra arguments for `herald serve`.
    pub extra_args: Vec<String>,
    /// Keep the data directory / schema afterwards.
    pub keep: bool,
}

/// A running child server.
pub struct Spawned {
    child: Option<Child>,
    pub base: String,
    /// Data directory (SQLite) and log files live here.
    pub dir: PathBuf,
    args: Vec<String>,
    pg: Option<(String, String)>,
    keep: bool,
    starts: u32,
}

/// The resident memory of a process: now, and its peak.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

/// Reads `VmRSS` and `VmHWM` of a process from `/proc/<pid>/status` (Linux only).
pub fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&status)
}

fn parse_status(status: &str) -> Option<Memory> {
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: f64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    };
    Some(Memory {
        rss_mb: field("VmRSS:")?,
        peak_rss_mb: field("VmHWM:").unwrap_or(0.0),
    })
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl Spawned {
    /// Starts a server on fresh data and waits until it is ready. Returns it and how long it
    /// took to become ready.
    pub async fn start(opts: &SpawnOptions) -> anyhow::Result<(Spawned, Duration)> {
        let dir = std::env::temp_dir().join(format!("herald-bench-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let port = free_port()?;
        let mut args = vec![
            "serve".to_string(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--workers".into(),
            opts.workers.to_string(),
            "--log".into(),
            "warn".into(),
        ];
        let mut pg = None;
        match &opts.store {
            SpawnStore::Sqlite => {
                args.push("--data-dir".into());
                args.push(dir.join("data").display().to_string());
            }
            SpawnStore::Postgres(base) => {
                let schema = format!("herald_bench_{}", uuid::Uuid::now_v7().simple());
                let pool = sqlx::PgPool::connect(base)
                    .await
                    .with_context(|| format!("connecting to {base}"))?;
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&pool)
                    .await
                    .context("creating the bench schema")?;
                pool.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                args.push("--database-url".into());
                args.push(format!("{base}{sep}options=-c%20search_path%3D{schema}"));
                pg = Some((base.clone(), schema));
            }
        }
        args.extend(opts.extra_args.iter().cloned());
        let mut s = Spawned {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            args,
            pg,
            keep: opts.keep,
            starts: 0,
        };
        match s.launch().await {
            Ok(ready) => Ok((s, ready)),
            Err(e) => {
                // Leave nothing behind: the data directory, the schema.
                if let Err(cleanup) = s.finish().await {
                    eprintln!("bench: cleaning up after a failed start: {cleanup:#}");
                }
                Err(e)
            }
        }
    }

    pub fn store_name(&self) -> &'static str {
        if self.pg.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    pub fn memory(&self) -> Option<Memory> {
        memory_of(self.pid()?)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("server-{}.log", self.starts))
    }

    /// Starts the child and waits for `/readyz`; returns the time from spawn to ready.
    async fn launch(&mut self) -> anyhow::Result<Duration> {
        self.starts += 1;
        let exe = std::env::current_exe().context("finding this executable")?;
        let log = std::fs::File::create(self.log_path())?;
        let started = Instant::now();
        let child = Command::new(exe)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting herald serve")?;
        self.child = Some(child);
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return Ok(started.elapsed());
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "herald serve exited with {status} before it was ready; its log:\n{}",
                        self.log_tail()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "herald serve was not ready after 120 s; its log:\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The last lines of the current server log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stops the server, with SIGTERM (graceful) or SIGKILL, and waits for it to exit.
    /// Returns how long it took to exit.
    pub async fn stop(&mut self, graceful: bool) -> anyhow::Result<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let started = Instant::now();
        #[cfg(unix)]
        if graceful {
            if let Some(pid) = child.id() {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                )
                .context("sending SIGTERM")?;
            }
        }
        #[cfg(not(unix))]
        let _ = graceful;
        if !graceful || cfg!(not(unix)) {
            child.start_kill()?;
        }
        match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
            Ok(r) => {
                r?;
            }
            Err(_) => {
                child.start_kill()?;
                child.wait().await?;
                bail!("herald serve did not exit within 60 s of SIGTERM");
            }
        }
        Ok(started.elapsed())
    }

    /// Stops the server and starts it again on the same data. Returns (time to exit, time
    /// from spawn to ready).
    pub async fn restart(&mut self, graceful: bool) -> anyhow::Result<(Duration, Duration)> {
        let stopped = self.stop(graceful).await?;
        let ready = self.launch().await?;
        Ok((stopped, ready))
    }

    /// Stops the server and removes its data, unless asked to keep it.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        let _ = self.stop(false).await;
        if self.keep {
            eprintln!("kept the bench data in {}", self.dir.display());
            if let Some((_, schema)) = &self.pg {
                eprintln!("kept the PostgreSQL schema {schema}");
            }
            return Ok(());
        }
        if let Some((base, schema)) = self.pg.take() {
            let pool = sqlx::PgPool::connect(&base).await?;
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&pool)
                .await?;
            pool.close().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rss_from_proc_status() {
        let status = "Name:\therald\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n";
        let m = parse_status(status).unwrap();
        assert_eq!(m.rss_mb, 100.0);
        assert_eq!(m.peak_rss_mb, 200.0);
        assert!(parse_status("Name:\tx\n").is_none());
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_own_memory() {
        let m = memory_of(std::process::id()).unwrap();
        assert!(m.rss_mb > 0.0 && m.peak_rss_mb >= m.rss_mb);
    }
}
