//! `ossmount` binary: parse the command line, then hand over to `mount::run`.
//! Exit codes: 0 success, 1 could not mount / runtime failure, 2 bad command line.

use std::process::ExitCode;

/// Allocations at or above this size are served by mmap and returned to the kernel on free.
/// Fixed, because glibc otherwise moves its threshold with the sizes it sees freed. Set above
/// the part and block buffers (1-8 MiB) so they are reused from the heap: mapping them fresh
/// each time cost a fifth of the read path's CPU in page faults (perf), and with the arena cap
/// below the heap stays close to the memory the data actually needs.
const MMAP_THRESHOLD_BYTES: i32 = 32 * 1024 * 1024;
/// At most this many malloc arenas: one per thread (glibc's default, up to 8 per core) keeps a
/// freed buffer per arena and multiplies resident memory across the FUSE and I/O threads.
const MALLOC_ARENAS_MAX: i32 = 2;

fn main() -> ExitCode {
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS_MAX);
    }
    let args = match ossmount::cli::parse(std::env::args_os()) {
        Ok(args) => args,
        Err(ossmount::cli::CliError::Parse(e)) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
        Err(e) => {
            eprintln!("ossmount: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match args.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ossmount: {e}");
            return ExitCode::from(2);
        }
    };
    match ossmount::mount::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ossmount: {e}");
            ExitCode::from(1)
        }
    }
}
