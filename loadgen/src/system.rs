//! The few facts the load generator reads from the operating system: another
//! process's CPU time and resident memory (`--server-pid`), pinning itself to
//! a core (`--cpu`), and the open-file limit (the conns scenario opens
//! thousands of sockets).

use std::time::Duration;

use anyhow::{bail, Context, Result};

/// User plus system CPU time of process `pid` so far.
pub fn process_cpu_time(pid: u32) -> Result<Duration> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; the fields after its ')' are plain.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: u64 =
        fields.get(11..13).context("short /proc/PID/stat")?.iter().map(|v| v.parse::<u64>().unwrap_or(0)).sum();
    let ticks_per_second = rustix::param::clock_ticks_per_second();
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_second as f64))
}

/// Resident memory of process `pid`, in KiB.
pub fn process_rss_kib(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("read /proc/{pid}/status"))?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).context("no VmRSS in /proc/PID/status")?;
    line.split_whitespace().nth(1).context("malformed VmRSS")?.parse().context("VmRSS is not a number")
}

/// Parses `--cpu 1` or `--cpu 1,3` or `--cpu 2-3`.
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|part| !part.is_empty()) {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last): (usize, usize) = (first.trim().parse()?, last.trim().parse()?);
                if first > last {
                    bail!("cpu range {part} runs backwards");
                }
                cpus.extend(first..=last);
            }
            None => cpus.push(part.trim().parse().with_context(|| format!("`{part}` is not a cpu number"))?),
        }
    }
    if cpus.is_empty() {
        bail!("empty cpu list");
    }
    Ok(cpus)
}

/// Pins the calling thread to `cpu`.
pub fn pin_to(cpu: usize) -> Result<()> {
    let core = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .find(|core| core.id == cpu)
        .with_context(|| format!("cpu {cpu} is not available to this process"))?;
    if !core_affinity::set_for_current(core) {
        bail!("could not pin to cpu {cpu}");
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one; returns the new soft limit.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        let spin_until = std::time::Instant::now() + Duration::from_millis(30);
        while std::time::Instant::now() < spin_until {
            std::hint::spin_loop();
        }
        assert!(process_cpu_time(pid).expect("cpu time") > Duration::ZERO);
        assert!(process_rss_kib(pid).expect("rss") > 0);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("1").expect("one"), vec![1]);
        assert_eq!(parse_cpu_list("0,2-3").expect("list"), vec![0, 2, 3]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
    }
}
