//! Child processes measured from outside: the release binaries the harness runs, their peak
//! resident memory (from the kernel's accounting at exit), and their current memory.

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A release binary built beside this one (`cargo build --release -p …`).
pub fn sibling(name: &str) -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it first (see BENCHMARKS.md, `tests/bench/run.sh`)",
            path.display()
        );
    }
    Ok(path)
}

/// How a child ended.
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub wall: Duration,
    /// `ru_maxrss`: the most memory the process ever had resident, in bytes.
    pub peak_rss: u64,
    /// CPU time the process used, user and system together (`ru_utime + ru_stime`).
    pub cpu: Duration,
}

/// Runs `command` to completion, capturing stdout, and reads its peak RSS from `wait4`.
pub fn run_measured(mut command: Command) -> Result<Finished> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {command:?}"))?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.push_str(&line);
            out.push('\n');
        }
        out
    });
    let (status, usage) = wait_with_rusage(&child)?;
    let wall = started.elapsed();
    Ok(Finished {
        success: status == 0,
        stdout: reader.join().expect("reader thread"),
        wall,
        peak_rss: usage.peak_rss,
        cpu: usage.cpu,
    })
}

/// What `wait4` says a child used.
pub struct Usage {
    /// `ru_maxrss`, in bytes.
    pub peak_rss: u64,
    /// `ru_utime + ru_stime`.
    pub cpu: Duration,
}

/// `wait4` rather than `Child::wait`: the same call hands back the child's resource usage.
pub fn wait_with_rusage(child: &Child) -> Result<(i32, Usage)> {
    let mut status = 0;
    // SAFETY: plain syscall on our own child's pid with valid out-pointers.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if pid < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Ok((
        code,
        Usage {
            // Linux reports ru_maxrss in KiB.
            peak_rss: usage.ru_maxrss as u64 * 1024,
            cpu: time(usage.ru_utime) + time(usage.ru_stime),
        },
    ))
}

/// Resident memory of a running process now (`VmRSS`), in bytes.
pub fn current_rss(pid: u32) -> Result<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()?;
    Ok(kib * 1024)
}

/// A server process that prints its base URL on its first stdout line (the fixture binaries).
pub struct Server {
    pub child: Child,
    pub base_url: String,
}

impl Server {
    pub fn start(mut command: Command) -> Result<Server> {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {command:?}"))?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut first)?;
        let base_url = first.trim().to_string();
        if base_url.is_empty() {
            let _ = child.kill();
            bail!("{command:?} printed no base URL");
        }
        Ok(Server { child, base_url })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
