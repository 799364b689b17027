//! The process's own gauges at `/metrics`: resident and virtual memory,
//! the peak of its resident memory since it started, and its open files
//! against their limit, read from Linux's `/proc/self` ([`crate::process`])
//! at each scrape. A full pull's memory grows with the tenant
//! (BENCHMARKS.md, "Scale"), so an admin of a large tenant watches the
//! peak across a full pull; the open files count the database connections
//! and the IdPs' sockets.
//!
//! Where `/proc/self` cannot be read (another system), the gauges are not
//! set: absent from `/metrics` rather than 0.

use crate::process::{Memory, open_files, open_files_limit};

/// Sets the process gauges from `/proc/self`; a part it cannot read is
/// left unset.
pub fn export() {
    if let Some(memory) = Memory::now() {
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
    if let Some(open) = open_files() {
        metrics::gauge!("process_open_fds").set(open as f64);
    }
    if let Some(limit) = open_files_limit() {
        metrics::gauge!("process_max_fds").set(limit as f64);
    }
}
