//! `cgi2wsgi --generate man|bash|zsh|fish`: the man page (clap_mangen) and shell completions
//! (clap_complete) from the same clap definitions the binary parses, so they never drift.
//! `dev/package` puts them in the .deb; a pip user can write them wherever the shell looks.
//! Not in `--help` (a packaging tool, not a serving option).

use crate::bench::BenchArgs;
use crate::cli::Cli;
use clap::CommandFactory;
use clap_complete::Shell;
use std::ffi::OsString;
use std::io::Write;

/// The whole command as a user sees it: the serving options plus the `bench` and `check`
/// subcommands.
fn command() -> clap::Command {
    Cli::command()
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand(BenchArgs::command().name("bench").about("Measure per-request CGI, accelerated CGI and persistent FastCGI for an app"))
        .subcommand(
            super::check::CheckArgs::command()
                .name("check")
                .about("Run APP once as a web server would and say what would go wrong")
                .mut_args(|a| a.env(None::<&str>)),
        )
}

/// Write what `what` names to stdout; returns the exit status.
pub fn main(args: &[OsString]) -> i32 {
    let what = args.get(2).and_then(|a| a.to_str()).unwrap_or("");
    let mut out = std::io::stdout().lock();
    let written = match what {
        "man" => clap_mangen::Man::new(command()).render(&mut out),
        shell => match shell.parse::<Shell>() {
            Ok(shell) if args.len() == 3 => {
                clap_complete::generate(shell, &mut command(), "cgi2wsgi", &mut out);
                Ok(())
            }
            _ => {
                eprintln!("cgi2wsgi: --generate {what:?}: expected one of man, bash, zsh, fish, elvish, powershell");
                return 2;
            }
        },
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("cgi2wsgi: --generate {what}: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_documents_the_flags_and_bench() {
        let mut buf = Vec::new();
        clap_mangen::Man::new(command()).render(&mut buf).unwrap();
        let page = String::from_utf8(buf).unwrap();
        for needle in [".TH cgi2wsgi", "\\-\\-venv", "CGI2WSGI_VENV", "bench", "check"] {
            assert!(page.contains(needle), "man page lacks {needle}");
        }
    }

    #[test]
    fn bash_completion_defines_the_function() {
        let mut buf = Vec::new();
        clap_complete::generate(Shell::Bash, &mut command(), "cgi2wsgi", &mut buf);
        let script = String::from_utf8(buf).unwrap();
        assert!(script.contains("complete -F _cgi2wsgi"), "{script}");
        assert!(script.contains("--persist-idle-timeout"));
    }
}
