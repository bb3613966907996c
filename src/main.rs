//! `ossmount` binary: parse the command line, then hand over to `mount::run`.
//! Exit codes: 0 success, 1 could not mount / runtime failure, 2 bad command line.

use std::process::ExitCode;

fn main() -> ExitCode {
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
