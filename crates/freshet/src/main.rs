//! `freshet`: the one binary. Each subcommand lives in its own module; `up` runs everything.

mod bench;
mod cli;
mod logdump;
mod run;
mod ts;

use clap::Parser;

/// Fetch responses and read buffers are large and short-lived; mimalloc keeps their pages
/// instead of returning them to the kernel after every request, which glibc's allocator did
/// (page faults and zeroing were the broker's top cost while serving consumers).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use crate::cli::{Cli, Command, LogCommand};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cli::init_tracing(&cli.global);
    match cli.command {
        Command::Up(args) => run::up(args),
        Command::Broker(args) => run::broker(args),
        Command::Log {
            command: LogCommand::Dump { segment },
        } => logdump::dump(&segment),
        Command::Ts { values } => ts::run(&values),
        Command::Bench { command } => bench::run(command),
    }
}
