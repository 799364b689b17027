//! This process as Linux reports it under `/proc/self`: its memory and
//! its open files. The parsing is pure; the readers return `None` where
//! `/proc/self` cannot be read (another system). Read by `/metrics`
//! (`api::metrics::process`) and by the reconciler's phase log.

use std::path::Path;

const PROC_SELF: &str = "/proc/self";

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
    /// This process's memory now, if `/proc/self/status` can be read.
    pub fn now() -> Option<Memory> {
        let status = std::fs::read_to_string(Path::new(PROC_SELF).join("status")).ok()?;
        Some(Memory::parse(&status))
    }

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
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many files this process has open now: the entries of
/// `/proc/self/fd`, the listing's own descriptor among them, as every
/// Prometheus client that counts this way counts it.
pub fn open_files() -> Option<usize> {
    Some(
        std::fs::read_dir(Path::new(PROC_SELF).join("fd"))
            .ok()?
            .count(),
    )
}

/// This process's soft limit on open files, if known and not unlimited.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string(Path::new(PROC_SELF).join("limits")).ok()?;
    max_open_files(&limits)
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
    fn this_process_is_read_where_linux_reports_it() {
        if !Path::new(PROC_SELF).exists() {
            return;
        }
        let memory = Memory::now().expect("a readable /proc/self/status");
        let resident = memory.resident.expect("VmRSS");
        assert!(resident > 0 && memory.resident_peak >= Some(resident));
        // The listing's own descriptor at least; other tests open and
        // close files beside this one, so no exact count.
        assert!(open_files().expect("a readable /proc/self/fd") >= 1);
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
