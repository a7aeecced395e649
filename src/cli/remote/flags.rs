//! Flags of the API client commands (`get`, `describe`, `apply`, `delete`, `history`,
//! `rollback`, `diff`, `completion`), turned into calls of [`crate::cli::remote::commands`].
//!
//! Wiring: flatten [`ClientArgs`] into the top-level parser (its flags are global, so
//! `mlmodel get --server URL` works), flatten [`ClientCommand`] into the top-level
//! subcommands, send `Completion` to [`completion`] with the top-level `clap::Command`
//! and every other variant to [`run`]. [`crate::cli::remote::EXIT_CODES_HELP`] is meant for
//! the top level's `after_help`.

use crate::cli::remote::api::ApiClient;
use crate::cli::remote::commands::{self, Output};
use crate::cli::remote::exit;
use crate::desired::units;
use clap::{Args, Subcommand, ValueEnum};
use reqwest::Url;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Where the mlmodel API is and how to authenticate to it.
#[derive(Clone, Args)]
pub struct ClientArgs {
    /// Address of the mlmodel API that `mlmodel serve` listens on.
    #[arg(
        long,
        global = true,
        env = "MLMODEL_SERVER",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL",
        value_parser = parse_server
    )]
    pub server: Url,
    /// Bearer token sent with every request, required for writes when the server has
    /// one. Never printed.
    #[arg(
        long,
        global = true,
        env = "MLMODEL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientArgs")
            .field("server", &self.server.as_str())
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// The API client's subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// List models with their readiness and phase, like `kubectl get`.
    ///
    /// One row per model: NAME, VALID (a valid declaration exists), ACTIVE (its services
    /// exist), READY (running/desired replicas), SYNCED (the swarm matches the
    /// declaration), PHASE, IMAGE and AGE of the current deployment. `-o wide` adds
    /// SOURCE and MESSAGE; `-o json|yaml` prints the status objects. `-w` keeps watching
    /// and prints a row whenever a model changes (from the server's watch stream,
    /// reconnecting when it drops), until Ctrl-C.
    ///
    /// Example: mlmodel get -o wide
    Get {
        /// Only this model.
        name: Option<String>,
        /// Output format (default: a table).
        #[arg(short, long, value_enum, value_name = "FORMAT")]
        output: Option<OutputFormat>,
        /// Keep watching: print a row each time a model changes, until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
    },
    /// Show everything about one model: state, deployment, services, tasks, history.
    ///
    /// Tasks are listed with Swarm's error (a missing image, no node with enough
    /// memory), and the last five deployments with their ids, for `rollback --to`.
    ///
    /// Example: mlmodel describe carls_model
    Describe {
        /// The model.
        name: String,
    },
    /// Deploy the models declared in manifest files, checked locally first.
    ///
    /// Reads manifest files (*.yml, *.yaml; directories recursively) and checks every
    /// field before sending anything: each problem prints as `FILE[#DOC]: FIELD: message`
    /// and nothing is sent. Then records each model on the server and prints `NAME
    /// configured (deployment ID)`. With --wait, follows each rollout until it is
    /// Available (exit 0), Failed or out of time (exit 1).
    ///
    /// Example: mlmodel apply -f manifests/demo_model.yml --wait --timeout 2m
    Apply {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Wait until every model runs its new deployment.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits (Go duration: 90s, 5m, 1h).
        #[arg(long, default_value = "5m", value_parser = parse_timeout, value_name = "DURATION")]
        timeout: Duration,
    },
    /// Stop serving a model; its history is kept unless --clear-all-records.
    ///
    /// A model declared by a manifest file cannot be deleted here: remove the file.
    ///
    /// Example: mlmodel delete carls_model --clear-all-records
    Delete {
        /// The model.
        name: String,
        /// Also erase every deployment record of the model.
        #[arg(long)]
        clear_all_records: bool,
    },
    /// List a model's deployments, newest first.
    ///
    /// Columns: DEPLOYMENT ID, TIME (local), IMAGE, SCALE, BUILD, RUN.
    ///
    /// Example: mlmodel history carls_model -n 20
    History {
        /// The model.
        name: String,
        /// How many deployments to list.
        #[arg(short = 'n', long = "limit", default_value_t = 10, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
    },
    /// Print a model's output: every task of its services, each line prefixed with
    /// its task (service.slot.task@node), as `docker service logs` prints it.
    ///
    /// Example: mlmodel logs carls_model --tail 50 -f
    Logs {
        /// The model.
        name: String,
        /// Lines per task (at most 10000, the default).
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
        /// Keep printing new lines as they come, until interrupted or the tasks stop.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only lines since then: a duration back from now (10m, 1h30m) or an RFC 3339
        /// time.
        #[arg(long, value_name = "DURATION|TIME")]
        since: Option<String>,
        /// Start each line with its time.
        #[arg(long)]
        timestamps: bool,
    },
    /// List what happened to a model (or to every model) and why, oldest first.
    ///
    /// Columns: LAST SEEN, TYPE (Normal or Warning), REASON, MODEL (without NAME),
    /// COUNT (repeats are collapsed), MESSAGE. `-w` keeps printing new events as they
    /// happen, from the server's watch stream, until Ctrl-C.
    ///
    /// Example: mlmodel events carls_model -w
    Events {
        /// Only this model.
        name: Option<String>,
        /// Keep watching: print each new event until Ctrl-C.
        #[arg(short, long)]
        watch: bool,
    },
    /// Redeploy an earlier deployment of a model (the previous one by default).
    ///
    /// The rollback is recorded as a new deployment with the earlier one's fields.
    ///
    /// Example: mlmodel rollback carls_model --to 839e2353728e476d9a6da2f5f781e908
    Rollback {
        /// The model.
        name: String,
        /// Deployment id to go back to (see `mlmodel history`).
        #[arg(long, value_name = "DEPLOYMENT_ID")]
        to: Option<String>,
    },
    /// Show what applying manifest files would change, field by field.
    ///
    /// Per model: `- field: current` / `+ field: declared` lines, or "not deployed yet".
    /// Exits 0 when nothing would change, 1 when something would, 2 on error, like
    /// `kubectl diff`.
    ///
    /// Example: mlmodel diff -f manifests/
    Diff {
        /// Manifest files or directories.
        #[arg(short = 'f', long = "filename", required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Print a shell completion script.
    ///
    /// Example: mlmodel completion bash > /etc/bash_completion.d/mlmodel
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

/// Output formats of `mlmodel get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// The table plus SOURCE and MESSAGE.
    Wide,
    /// The status objects as JSON.
    Json,
    /// The status objects as YAML.
    Yaml,
}

/// Shells `mlmodel completion` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// Runs a client command against the server in `args`; the exit code is documented in
/// [`crate::cli::remote`]. Errors are printed here, so `Err` means the client could not start.
///
/// `Completion` is best sent to [`completion`] with the top-level command; given here,
/// it completes only the client commands.
pub fn run(args: ClientArgs, command: ClientCommand) -> anyhow::Result<ExitCode> {
    if let ClientCommand::Completion { shell } = command {
        let mut client_only = ClientCommand::augment_subcommands(ClientArgs::augment_args(
            clap::Command::new("mlmodel"),
        ));
        return Ok(completion(shell, &mut client_only));
    }
    // One thread is plenty for a command line that waits on one server at a time.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = ApiClient::new(args.server, args.token)?;
    let code = runtime.block_on(dispatch(&client, command));
    Ok(ExitCode::from(code))
}

async fn dispatch(client: &ApiClient, command: ClientCommand) -> u8 {
    match command {
        ClientCommand::Get {
            name,
            output,
            watch,
        } => {
            let output = match output {
                None => Output::Table,
                Some(OutputFormat::Wide) => Output::Wide,
                Some(OutputFormat::Json) => Output::Json,
                Some(OutputFormat::Yaml) => Output::Yaml,
            };
            commands::get(client, name.as_deref(), output, watch).await
        }
        ClientCommand::Describe { name } => commands::describe(client, &name).await,
        ClientCommand::Apply {
            paths,
            wait,
            timeout,
        } => commands::apply(client, &paths, wait.then_some(timeout)).await,
        ClientCommand::Delete {
            name,
            clear_all_records,
        } => commands::delete(client, &name, clear_all_records).await,
        ClientCommand::History { name, limit } => commands::history(client, &name, limit).await,
        ClientCommand::Logs {
            name,
            tail,
            follow,
            since,
            timestamps,
        } => {
            let mut query = vec![
                ("follow", follow.to_string()),
                ("timestamps", timestamps.to_string()),
            ];
            query.extend(tail.map(|n| ("tail", n.to_string())));
            query.extend(since.map(|since| ("since", since)));
            commands::logs(client, &name, &query, follow).await
        }
        ClientCommand::Events { name, watch } => {
            commands::events(client, name.as_deref(), watch).await
        }
        ClientCommand::Rollback { name, to } => {
            commands::rollback(client, &name, to.as_deref()).await
        }
        ClientCommand::Diff { paths } => commands::diff(client, &paths).await,
        // Handled before the runtime starts.
        ClientCommand::Completion { .. } => exit::USAGE,
    }
}

/// Prints the completion script of `cmd` (the top-level `mlmodel` command) for `shell`.
pub fn completion(shell: CompletionShell, cmd: &mut clap::Command) -> ExitCode {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, cmd, name, &mut std::io::stdout());
    ExitCode::SUCCESS
}

/// An http URL of the API; this build speaks plain HTTP only.
fn parse_server(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| {
        format!(
            "{text:?} is not a URL ({e}): expected http://HOST:PORT, such as http://127.0.0.1:8080"
        )
    })?;
    match url.scheme() {
        "http" if url.host().is_some() => Ok(url),
        "http" => Err(format!("{text:?} has no host: expected http://HOST:PORT")),
        "https" => Err(format!(
            "{text:?}: this build speaks plain HTTP only: use http://, behind a TLS proxy if needed"
        )),
        other => Err(format!(
            "{text:?}: scheme {other:?} is not supported: expected http://HOST:PORT"
        )),
    }
}

/// A positive Go duration for `--timeout`.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout = units::parse_duration(text).map_err(|e| e.to_string())?;
    if timeout.is_zero() {
        return Err("must be longer than 0s".to_string());
    }
    Ok(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The client's flags and commands under a parser of their own.
    #[derive(Debug, Parser)]
    #[command(name = "mlmodel")]
    struct ClientOnly {
        #[command(flatten)]
        args: ClientArgs,
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(line: &[&str]) -> Result<ClientOnly, clap::Error> {
        ClientOnly::try_parse_from(std::iter::once("mlmodel").chain(line.iter().copied()))
    }

    #[test]
    fn the_definitions_are_consistent() {
        ClientOnly::command().debug_assert();
    }

    #[test]
    fn server_and_token_may_follow_the_subcommand() {
        let parsed = parse(&[
            "get",
            "carls_model",
            "--server",
            "http://10.0.0.1:9000",
            "--token",
            "t",
        ])
        .unwrap();
        assert_eq!(parsed.args.server.as_str(), "http://10.0.0.1:9000/");
        assert_eq!(parsed.args.token.as_deref(), Some("t"));
        assert!(!format!("{parsed:?}").contains("\"t\""));
    }

    #[test]
    fn only_http_urls_are_servers() {
        assert!(parse_server("http://127.0.0.1:8080").is_ok());
        assert!(
            parse_server("https://example.test")
                .unwrap_err()
                .contains("plain HTTP")
        );
        assert!(parse_server("127.0.0.1:8080").is_err());
        assert!(parse(&["get", "--server", "nonsense"]).is_err());
    }

    #[test]
    fn apply_takes_several_paths_and_a_go_duration_timeout() {
        let parsed = parse(&[
            "apply",
            "-f",
            "a.yml",
            "-f",
            "dir",
            "--wait",
            "--timeout",
            "90s",
        ])
        .unwrap();
        let ClientCommand::Apply {
            paths,
            wait,
            timeout,
        } = parsed.command
        else {
            panic!("not apply: {parsed:?}");
        };
        assert_eq!(paths, [PathBuf::from("a.yml"), PathBuf::from("dir")]);
        assert!(wait);
        assert_eq!(timeout, Duration::from_secs(90));
        assert!(parse(&["apply", "-f", "a.yml", "--timeout", "0s"]).is_err());
        assert!(parse(&["apply"]).is_err());
    }

    #[test]
    fn history_limits_default_to_ten_and_must_be_positive() {
        let parsed = parse(&["history", "m"]).unwrap();
        assert!(matches!(
            parsed.command,
            ClientCommand::History { limit: 10, .. }
        ));
        assert!(parse(&["history", "m", "-n", "0"]).is_err());
    }

    #[test]
    fn completion_scripts_name_the_commands() {
        let mut cmd = ClientOnly::command();
        let mut script = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "mlmodel", &mut script);
        let script = String::from_utf8(script).unwrap();
        assert!(script.contains("rollback"));
    }
}
