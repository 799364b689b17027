//! The process allocator, shared by the `idpsync` and `idpsync-bench`
//! binaries (the bench includes this file): mimalloc, told to hand freed
//! memory back to the OS sooner than its default.
//!
//! mimalloc was chosen because a big sync allocates and frees millions of
//! small strings: glibc's malloc spent a quarter of the CPU of a
//! 1M-membership pull on it (perf) and kept freed memory. mimalloc 3 keeps
//! freed pages for a second before purging them, so memory a pull's diff
//! had just freed was still resident while its apply allocated: the peak
//! RSS of the 1M-membership Entra pull was 268–298 MiB across runs. Purged
//! after 100 ms it is 253–260 MiB, at the same speed (0 ms, purging at
//! once, cost 2 s of the pull; see BENCHMARKS.md, eighth pass).
//!
//! It is the process's `malloc` too (libmimalloc-sys's `override`
//! feature), so the C code in it, SQLite above all, allocates through it.
//! With glibc's malloc, the memory SQLite freed after sorting a 1M-user
//! first sync's index stayed with the process: ~560 MiB resident between
//! runs, under the next run's own peak (`malloc_trim` gave back 109 MiB of
//! it at 300k users; with mimalloc as `malloc` it is purged like the rest).

#![allow(unsafe_code)] // one call into mimalloc's C library, see `configure`

use std::ffi::c_long;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the sys crate has
/// no constant for it); a test checks it is the option whose default is
/// mimalloc 3's purge delay.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory stays with the process before mimalloc purges it.
const PURGE_AFTER_MS: c_long = 100;

/// Sets the allocator's options. Call it first thing in `main`, before any
/// other thread starts.
pub fn configure() {
    // SAFETY: `mi_option_set` writes a plain option value and is not thread
    // safe; `main` calls this before it starts any thread.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, PURGE_AFTER_MS) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_is_mimallocs_option_and_is_set_to_100_ms() {
        // SAFETY: the only test that reads or writes mimalloc's options.
        let read = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(read(), 1000, "mimalloc 3's default purge delay");
        }
        configure();
        assert_eq!(read(), 100);
    }

    unsafe extern "C" {
        fn malloc(size: usize) -> *mut std::ffi::c_void;
        fn free(block: *mut std::ffi::c_void);
    }

    #[test]
    fn c_code_allocates_through_mimalloc() {
        // SAFETY: one block of C's malloc, asked about and freed once.
        let owned = unsafe {
            let block = malloc(4096);
            assert!(!block.is_null());
            let owned = libmimalloc_sys::mi_is_in_heap_region(block);
            free(block);
            owned
        };
        assert!(owned, "malloc is glibc's, not mimalloc's");
    }
}
