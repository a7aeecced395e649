//! The `mlmodel` command line: clap definitions turned into plain calls into the library.
//!
//! Three kinds of command, one module each, because each needs different parts:
//!
//! - [`serve`]: `mlmodel serve`, the daemon; it wires the sources, the reconciler and the
//!   API together over a real Docker engine. Its flags are in `serve/flags.rs`.
//! - `offline`: `validate` and `render`, the [`crate::desired`] stage alone: no Docker, no
//!   server.
//! - [`remote`]: the kubectl-like commands that talk to a running server over HTTP; its
//!   flags are in [`remote::flags`].

mod offline;
pub mod remote;
pub mod serve;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::desired::manifest::Fill;
use crate::desired::naming::DomainFormat;
use crate::desired::render::Instance;

/// Keeps machine-learning model images served on Docker Swarm exactly as declared.
#[derive(Debug, Parser)]
#[command(name = "mlmodel", version, about, long_about = None, after_help = crate::cli::remote::EXIT_CODES_HELP)]
pub struct Cli {
    #[command(flatten)]
    client: remote::flags::ClientArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reconciler: keep the swarm converged to the declared models.
    ///
    /// Watches the manifests directory, keeps the deployment history in the store, follows
    /// Docker's events and converges every model's services, repairing drift and removing
    /// what is no longer declared. Needs a Docker engine that is a swarm manager (DOCKER_HOST
    /// or the local socket). Stops cleanly on SIGINT/SIGTERM.
    ///
    /// Example: mlmodel serve --manifests ./manifests --data-dir ./mlmodel-data
    Serve(serve::ServeArgs),
    /// Check manifests offline: every error in every file, one line each.
    ///
    /// Reads manifest files (*.yml, *.yaml; directories recursively), checks every field,
    /// renders each model's template and converts it to Swarm service specs, all without
    /// Docker. Prints `FILE[#DOC]: FIELD: problem` for each error and exits 1 if there was
    /// any, 0 otherwise.
    ///
    /// Example: mlmodel validate manifests/
    Validate {
        /// Manifest files or directories.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        instance: InstanceArgs,
    },
    /// Print the stack one manifest renders to, offline.
    ///
    /// `--format compose` (the default) prints the rendered compose file, which deploys
    /// as-is with `docker stack deploy -c - <instance>_<name>`; `--format services` prints
    /// the Swarm service specs as JSON exactly as mlmodel would send them to Docker,
    /// ownership labels included.
    ///
    /// Example: mlmodel render manifests/demo_model.yml --format services
    Render {
        /// A manifest file (or a directory holding one model).
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Which model, when the manifests hold several.
        #[arg(long)]
        name: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RenderFormat::Compose)]
        format: RenderFormat,
        /// Deployment id to render with (default: derived from the spec, so repeated
        /// renders are identical).
        #[arg(long, value_name = "ID")]
        deployment_id: Option<String>,
        #[command(flatten)]
        instance: InstanceArgs,
    },
    #[command(flatten)]
    Client(remote::flags::ClientCommand),
}

/// What `mlmodel render` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RenderFormat {
    /// The rendered compose file.
    Compose,
    /// The Swarm service specs as JSON.
    Services,
}

/// Options that name this mlmodel instance and where its templates are.
#[derive(Debug, Clone, Args)]
pub struct InstanceArgs {
    /// Instance (team) name: the owner label on every service and the stack name prefix.
    #[arg(
        long,
        env = "MLMODEL_INSTANCE",
        default_value = "mlmodel",
        value_name = "NAME"
    )]
    pub instance: String,
    /// Environment name passed to templates (the original's ENVIRONMENT).
    #[arg(
        long,
        env = "MLMODEL_ENVIRONMENT",
        default_value = "production",
        value_name = "ENV"
    )]
    pub environment: String,
    /// Shared overlay network the models attach to.
    #[arg(
        long,
        env = "MLMODEL_NETWORK",
        default_value = "mlmodel",
        value_name = "NAME"
    )]
    pub network: String,
    /// Directory of templates; its files override the built-in ones of the same name.
    #[arg(long, env = "MLMODEL_TEMPLATES", value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Domain of a model that declares none, with {model_name} for its name (such as
    /// {model_name}.models.example.com); also read from the original's
    /// MLMODEL_ENDPOINT_DOMAIN_FORMAT. Without it, `domain` is required.
    #[arg(long, env = crate::desired::manifest::DOMAIN_FORMAT_ENV, value_name = "FORMAT", value_parser = parse_domain_format)]
    pub domain_format: Option<DomainFormat>,
}

fn parse_domain_format(text: &str) -> Result<DomainFormat, String> {
    DomainFormat::parse(text).map_err(|e| e.to_string())
}

impl InstanceArgs {
    fn instance(&self) -> anyhow::Result<Instance> {
        Ok(Instance {
            name: self.instance.clone(),
            environment: self.environment.clone(),
            network: self.network.clone(),
            fill: Fill {
                domain_format: match &self.domain_format {
                    Some(format) => Some(format.clone()),
                    None => Fill::domain_format_from_env().map_err(anyhow::Error::msg)?,
                },
            },
        })
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    use clap::CommandFactory;
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Client(remote::flags::ClientCommand::Completion { shell }) => {
            Ok(remote::flags::completion(shell, &mut Cli::command()))
        }
        Command::Client(command) => remote::flags::run(cli.client, command),
        Command::Serve(args) => serve::run(args),
        Command::Validate { paths, instance } => offline::validate(&paths, &instance),
        Command::Render {
            path,
            name,
            format,
            deployment_id,
            instance,
        } => offline::render(&path, name.as_deref(), format, deployment_id, &instance),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
