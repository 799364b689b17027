//! The process's own gauges: resident and virtual memory, the peak of its
//! resident memory since it started, and its open files against their
//! limit, read from Linux's `/proc/self` at each scrape. A full pull's
//! memory grows with the tenant (BENCHMARKS.md, "Scale"), so an admin of a
//! large tenant watches the peak across a full pull; the open files count
//! the database connections and the IdPs' sockets.
//!
//! Where `/proc/self` cannot be read (another system), the gauges are not
//! set: absent from `/metrics` rather than 0.

use std::path::Path;

/// What `/proc/self/status` says of the process's memory, in bytes; a
/// field the file lacks is `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub resident: Option<u64>,
    /// `VmHWM`: the most resident at once since the process started.
    pub resident_peak: Option<u64>,
    /// `VmSize`: the address space mapped.
    pub virtual_size: Option<u64>,
}

impl Memory {
    /// Reads the `Vm*` lines of a `/proc/<pid>/status` text ("VmRSS:  1234
    /// kB"; the kernel always writes kB).
    pub fn parse(status: &str) -> Memory {
        let mut memory = Memory::default();
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let field = match key {
                "VmRSS" => &mut memory.resident,
                "VmHWM" => &mut memory.resident_peak,
                "VmSize" => &mut memory.virtual_size,
                _ => continue,
            };
            *field = value
                .trim()
                .strip_suffix("kB")
                .and_then(|kib| kib.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024);
        }
        memory
    }
}

/// The soft limit on open files from a `/proc/<pid>/limits` text; `None`
/// when the line is missing or the limit is "unlimited".
pub fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Sets the process gauges from `/proc/self`; a part it cannot read is
/// left unset.
pub fn export() {
    let proc_self = Path::new("/proc/self");
    if let Ok(status) = std::fs::read_to_string(proc_self.join("status")) {
        let memory = Memory::parse(&status);
        if let Some(bytes) = memory.resident {
            metrics::gauge!("process_resident_memory_bytes").set(bytes as f64);
        }
        if let Some(bytes) = memory.resident_peak {
            metrics::gauge!("idpsync_resident_memory_peak_bytes").set(bytes as f64);
        }
        if let Some(bytes) = memory.virtual_size {
            metrics::gauge!("process_virtual_memory_bytes").set(bytes as f64);
        }
    }
    if let Ok(entries) = std::fs::read_dir(proc_self.join("fd")) {
        // The listing's own descriptor is among them, as in every
        // Prometheus client that counts this way.
        metrics::gauge!("process_open_fds").set(entries.count() as f64);
    }
    if let Some(limit) = std::fs::read_to_string(proc_self.join("limits"))
        .ok()
        .and_then(|limits| max_open_files(&limits))
    {
        metrics::gauge!("process_max_fds").set(limit as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of a real `/proc/self/status` (Linux 6.1), abridged.
    const STATUS: &str = "Name:\tidpsync\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  812344 kB\nVmSize:\t  745912 kB\nVmLck:\t       0 kB\n\
        VmHWM:\t  318440 kB\nVmRSS:\t  134212 kB\nRssAnon:\t  120004 kB\n\
        Threads:\t9\n";

    #[test]
    fn memory_is_read_in_bytes_from_the_status_lines() {
        assert_eq!(
            Memory::parse(STATUS),
            Memory {
                resident: Some(134_212 * 1024),
                resident_peak: Some(318_440 * 1024),
                virtual_size: Some(745_912 * 1024),
            }
        );
    }

    #[test]
    fn a_missing_or_unreadable_line_leaves_its_figure_unknown() {
        // A kernel thread's status has no Vm lines at all.
        assert_eq!(
            Memory::parse("Name:\tkthreadd\nThreads:\t1\n"),
            Memory::default()
        );
        let odd = Memory::parse("VmRSS:\t  12 MB\nVmHWM:\t  x kB\nVmSize:\t 8 kB\n");
        assert_eq!(odd.resident, None);
        assert_eq!(odd.resident_peak, None);
        assert_eq!(odd.virtual_size, Some(8 * 1024));
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one_and_unlimited_is_none() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             95385                95385                processes \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let unlimited = limits.replace(
            "1024                 524288",
            "unlimited            unlimited",
        );
        assert_eq!(max_open_files(&unlimited), None);
        assert_eq!(max_open_files("Limit Soft Limit\n"), None);
    }
}
