//! `freshet`: the one binary. Each subcommand lives in its own module; `up` runs everything.

mod acls;
mod cli;
mod generate;
mod guard;
mod health;
mod logdump;
mod metrics;
mod principals;
mod run;
mod serve;
mod ts;
mod users;

use clap::Parser;

/// Fetch responses and read buffers are large and short-lived; mimalloc keeps their pages
/// instead of returning them to the kernel after every request, which glibc's allocator did
/// (page faults and zeroing were the broker's top cost while serving consumers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{Cli, Command, LogCommand};

fn main() -> std::process::ExitCode {
    // Fixes the start the uptime metric counts from.
    freshet_api::metrics::process_started();
    let cli = Cli::parse();
    cli::init_tracing(&cli.global);
    match run(cli.command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with the cause chain; a backtrace is for bugs, not for user errors.
            eprintln!("error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, skipping a cause whose text the message already
/// carries (error types that print their source inside their own message).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn run(command: Command) -> anyhow::Result<()> {
    let long_running = matches!(
        command,
        Command::Up(_) | Command::Tracker(_) | Command::Guard(_) | Command::Broker(_)
    );
    if long_running {
        freshet_os::heap::map_large_blocks_individually();
        freshet_os::heap::spawn_trimmer();
    }
    match command {
        Command::Up(args) => run::up(args),
        Command::Tracker(args) => run::tracker(args),
        Command::Guard(args) => guard::node(args),
        Command::Broker(args) => run::broker(args),
        Command::Log {
            command: LogCommand::Dump { segment },
        } => logdump::dump(&segment),
        Command::Generate(args) => generate::run(args),
        Command::Ts { values } => ts::run(&values),
        Command::Bench { command } => freshet_bench::run(command),
        Command::Users { command } => users::run(command),
        Command::Acls { command } => acls::run(command),
    }
}
