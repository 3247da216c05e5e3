//! `stagger agent`: the long-running process on each node.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use tokio::sync::watch;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::agent::Agent;
use crate::clock::SystemClock;
use crate::{api, config, control};

/// Default configuration file of the agent and of `stagger ctl`.
pub const DEFAULT_CONFIG: &str = "/etc/stagger/agent.toml";

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Configuration file (TOML); every key is described in docs/configuration.md.
    #[arg(long, short = 'c', value_name = "FILE", default_value = DEFAULT_CONFIG)]
    config: PathBuf,

    /// After the first poll, apply every service's newest release at once, regardless of
    /// timeslots (a manual redeploy of the node).
    #[arg(long)]
    redeploy: bool,

    /// Validate the configuration, print a summary and exit without starting the agent.
    #[arg(long)]
    check: bool,

    /// Log format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Log filter, such as `info` or `stagger=debug`; `RUST_LOG` overrides it.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    log_level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// Runs `stagger agent` until SIGTERM or SIGINT.
pub fn run(args: AgentArgs) -> anyhow::Result<ExitCode> {
    let config = config::load(&args.config)?;
    if args.check {
        print_summary(&config);
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(args.log_format, &args.log_level)?;

    // One thread is plenty for a process that sleeps between polls, and keeps it small.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    runtime.block_on(run_agent(config, args.redeploy))?;
    Ok(ExitCode::SUCCESS)
}

async fn run_agent(config: config::AgentConfig, redeploy: bool) -> anyhow::Result<()> {
    info!(
        config = %config.path.display(),
        node = %config.node,
        services = config.services.len(),
        strategy = config.strategy.name(),
        interval_secs = config.interval.as_secs(),
        "agent starting"
    );
    let listen = config.listen;
    let socket = config.socket.clone();
    let agent = Agent::new(config, Arc::new(SystemClock))?.redeploy_on_start(redeploy);
    let handle = agent.handle();

    let (stop_sender, stop_receiver) = watch::channel(false);
    let stopped = move || {
        let mut receiver = stop_receiver.clone();
        async move {
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    };

    let api_task = tokio::spawn(api::serve(listen, handle.clone(), stopped()));
    let control_task = {
        let handle = handle.clone();
        let stopped = stopped();
        tokio::spawn(async move { control::serve(&socket, handle, stopped).await })
    };
    tokio::spawn(async move {
        wait_for_signal().await;
        let _ = stop_sender.send(true);
    });
    let mut agent_task = tokio::spawn(agent.run(stopped()));

    // The listeners end on their own only when they fail (a busy port, say), or at shutdown.
    let listeners = async {
        tokio::select! {
            result = api_task => result,
            result = control_task => result,
        }
    };
    tokio::select! {
        result = &mut agent_task => result?,
        result = listeners => {
            result??;
            agent_task.await?;
        }
    }
    Ok(())
}

fn print_summary(config: &config::AgentConfig) {
    println!("configuration {} is valid", config.path.display());
    println!("node:     {}", config.node);
    println!("strategy: {}", config.strategy.name());
    println!(
        "windows:  normal {}s, hotfix {}s",
        config.windows.normal_secs, config.windows.hotfix_secs
    );
    println!(
        "polls:    every {} plus up to {}",
        humantime::format_duration(config.interval),
        humantime::format_duration(config.splay)
    );
    println!("state:    {}", config.state_file().display());
    println!("api:      http://{}", config.listen);
    println!("control:  {}", config.socket.display());
    for service in config.services.values() {
        let executor = match &service.executor {
            config::ExecutorConfig::Hook { command, .. } => format!("hook {command:?}"),
            config::ExecutorConfig::Orchestrator => "orchestrator".to_string(),
        };
        println!(
            "service:  {} [{}] image {} (a descriptor's image takes precedence), {executor}",
            service.name, service.group, service.image
        );
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            warn!(error = %error, "failed to watch SIGTERM; only SIGINT stops the agent");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => info!(signal = "SIGTERM", "stopping"),
        _ = tokio::signal::ctrl_c() => info!(signal = "SIGINT", "stopping"),
    }
}

fn init_logging(format: LogFormat, level: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(value) if !value.is_empty() => EnvFilter::new(value),
        _ => EnvFilter::try_new(level).with_context(|| {
            format!("invalid --log-level \"{level}\": use a level such as info or debug")
        })?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}
