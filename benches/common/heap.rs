//! A counting allocator: the system allocator, counting the bytes live on the heap.
//!
//! Resident memory (VmRSS) says what the process holds from the OS; the live heap says
//! what its data needs. Freed memory the allocator keeps for reuse shows in RSS only, so
//! the two together tell data from the allocator's slack. A benchmark that wants the
//! figure installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: common::heap::Counting = common::heap::Counting;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator with a count of live bytes.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes allocated and not yet freed, in MB (10^6 bytes); 0 unless [`Counting`] is the
/// global allocator.
pub fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1e6
}

/// Resident memory after glibc gives its free memory back (`malloc_trim(0)`), in MB:
/// what the process would hold without the allocator's slack.
pub fn trimmed_rss_mb() -> f64 {
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe { libc::malloc_trim(0) };
    super::rss_mb()
}
