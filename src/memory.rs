//! Giving freed memory back to the operating system between the phases of a long run.
//!
//! glibc's allocator raises its mmap threshold each time a large block is freed, so the buffers
//! of a layer-by-layer run (activations, Hessians, one layer's weights at a time) end up in its
//! heaps, where freed pages stay resident: on an LLM the process grew by the model's size while
//! holding less and less. `malloc_trim` hands the free pages back.

/// Returns the allocator's free pages to the system (glibc on Linux; elsewhere nothing).
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only inspects and trims the allocator's own free lists; it takes no
    // pointers from us and is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}
