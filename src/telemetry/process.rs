//! The standard process metrics (`process_resident_memory_bytes`, `process_cpu_seconds_total`,
//! `process_open_fds`, ...), named as every Prometheus client library names them, so that an
//! operator's dashboards and the scale tier read Ferry's memory, CPU and file descriptors from
//! `/metrics`. Read from `/proc/self` at each scrape; on a system without it (or a field that
//! cannot be read) that metric is left out rather than reported wrong.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// Clock ticks per second of the times in `/proc/<pid>/stat`: Linux reports them in USER_HZ,
/// which is 100 on every architecture (the kernel's own HZ is not visible there).
const USER_HZ: f64 = 100.0;

/// Reads the process metrics of this process at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of the process.
#[derive(Debug, Default, PartialEq)]
pub struct Sample {
    pub cpu_seconds: Option<f64>,
    pub start_time_seconds: Option<f64>,
    pub resident_bytes: Option<i64>,
    pub virtual_bytes: Option<i64>,
    pub threads: Option<i64>,
    pub open_fds: Option<i64>,
    pub max_fds: Option<i64>,
}

impl Sample {
    /// This process now.
    pub fn now() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut sample = Sample::default();
        if let Some(stat) = read("/proc/self/stat") {
            let boot = read("/proc/stat").and_then(|s| boot_time(&s));
            sample.cpu_seconds = cpu_seconds(&stat);
            sample.start_time_seconds = start_ticks(&stat)
                .zip(boot)
                .map(|(ticks, boot)| boot + ticks / USER_HZ);
        }
        if let Some(status) = read("/proc/self/status") {
            sample.resident_bytes = kib(&status, "VmRSS:").map(|k| k * 1024);
            sample.virtual_bytes = kib(&status, "VmSize:").map(|k| k * 1024);
            sample.threads = kib(&status, "Threads:");
        }
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .and_then(|entries| i64::try_from(entries.count()).ok());
        sample.max_fds = read("/proc/self/limits").and_then(|l| max_open_files(&l));
        sample
    }
}

/// The fields of `/proc/<pid>/stat` after the command name, which may hold spaces and
/// parentheses: the first of them is field 3 (`state`).
fn after_command(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default()
}

/// `utime` + `stime` (fields 14 and 15), in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let fields = after_command(stat);
    let ticks = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / USER_HZ)
}

/// `starttime` (field 22): clock ticks after boot.
fn start_ticks(stat: &str) -> Option<f64> {
    let fields = after_command(stat);
    fields.get(22 - 3)?.parse::<u64>().ok().map(|t| t as f64)
}

/// `btime` of `/proc/stat`: the boot time, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<f64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|v| v as f64)
}

/// The number after `key` in `/proc/<pid>/status` (`VmRSS:   1234 kB` gives 1234).
fn kib(status: &str, key: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
fn max_open_files(limits: &str) -> Option<i64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = Sample::now();
        if let Some(seconds) = sample.cpu_seconds {
            let counter = ConstCounter::new(seconds);
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        // Counts as floats too: one loop for every gauge (Prometheus reads all values as floats).
        let count = |n: Option<i64>| n.map(|n| n as f64);
        let gauges: [(&str, &str, Option<Unit>, Option<f64>); 6] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                count(sample.resident_bytes),
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                count(sample.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                count(sample.open_fds),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                count(sample.max_fds),
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                count(sample.threads),
            ),
            (
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(Unit::Seconds),
                sample.start_time_seconds,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            let metric =
                encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read_field_by_field_and_a_command_name_cannot_shift_them() {
        // A command name with a space and a parenthesis, as a process may choose.
        let stat = "4242 (fer ry) x) S 1 4242 4242 0 -1 4194560 12000 0 0 0 250 125 0 0 20 0 \
                    17 0 98765 123456789 2048 18446744073709551615";
        assert_eq!(cpu_seconds(stat), Some(3.75));
        assert_eq!(start_ticks(stat), Some(98765.0));
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1800000000\n"),
            Some(1_800_000_000.0)
        );
        let status = "Name:\tferry\nVmSize:\t  123456 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n";
        assert_eq!(kib(status, "VmRSS:"), Some(20480));
        assert_eq!(kib(status, "Threads:"), Some(9));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1_048_576));
        // Unreadable input is left out, not reported as zero.
        assert_eq!(cpu_seconds("garbage"), None);
        assert_eq!(kib("", "VmRSS:"), None);
    }

    #[test]
    fn this_process_is_described_with_the_standard_names() {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_virtual_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "process_threads ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
        let resident = Sample::now().resident_bytes.unwrap_or_default();
        assert!(
            resident > 1024 * 1024,
            "a test process holds over 1 MiB: {resident}"
        );
    }
}
