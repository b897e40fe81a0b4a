//! `mcp-runtime`: the command line of mcp-runtime.

mod cli;
mod commands;
mod distribution;
mod error;
mod files;
mod output;
mod platform;
mod profiles;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{
    AccessCommand, AccessListArgs, AccessNameArgs, AdapterCommand, AuthCommand, Cli, Command,
    GrantApplyArgs, GrantCommand, PolicyCommand, SentinelCommand, ServerApplyArgs, ServerCommand,
    ServerGetArgs, ServerListArgs, ServerNameArgs, SessionCommand, TeamCommand, TeamMemberCommand,
    TokenCommand,
};
use crate::commands::cluster::{self, Kind, Switch};
use crate::commands::image::BuildCommand;
use crate::commands::pipeline::PipelineCommand;
use crate::commands::registry::RegistryCommand;
use crate::commands::status::ClusterCommand;
use crate::commands::team_access::{self, TeamTarget};
use crate::commands::{
    access, adapter, auth, dev, image, pipeline, policy, provision, registry, sentinel, server,
    setup, status, team, team_servers, token,
};
use crate::error::CliError;

fn run(cli: Cli) -> error::Result<u8> {
    match cli.command {
        Command::Server(ServerCommand::Init(args)) => server::init(args).map(|()| 0),
        Command::Server(ServerCommand::Generate(args)) => server::generate(args).map(|()| 0),
        Command::Server(ServerCommand::Apply(args)) => server_apply(args).map(|()| 0),
        Command::Server(ServerCommand::List(args)) => server_list(args).map(|()| 0),
        Command::Server(ServerCommand::Get(args)) => server_get(args).map(|()| 0),
        Command::Server(ServerCommand::Status(args)) => cluster::server_status(args).map(|()| 0),
        Command::Server(ServerCommand::Delete(args)) => server_delete(args).map(|()| 0),
        Command::Access(AccessCommand::Grant(GrantCommand::Apply(args))) => {
            grant_apply(args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::List(args))) => {
            list(Kind::Grant, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::Delete(args))) => {
            delete(Kind::Grant, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::Disable(args))) => {
            switch(Switch::Disable, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::Enable(args))) => {
            switch(Switch::Enable, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Apply(args))) => {
            cluster::apply(Kind::Session, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::List(args))) => {
            list(Kind::Session, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Revoke(args))) => {
            switch(Switch::Revoke, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Unrevoke(args))) => {
            switch(Switch::Unrevoke, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Delete(args))) => {
            delete(Kind::Session, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::Init(args))) => {
            access::grant_init(args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Init(args))) => {
            access::session_init(args).map(|()| 0)
        }
        Command::Policy(PolicyCommand::Render(args)) => policy::render(args).map(|()| 0),
        Command::Policy(PolicyCommand::Explain(args)) => policy::explain(args),
        Command::Token(TokenCommand::Keygen(args)) => token::keygen(args).map(|()| 0),
        Command::Token(TokenCommand::Mint(args)) => token::mint(args).map(|()| 0),
        Command::Sentinel(SentinelCommand::Events(args)) => sentinel::events(args).map(|()| 0),
        Command::Sentinel(SentinelCommand::Stats(args)) => sentinel::stats(args).map(|()| 0),
        Command::Sentinel(SentinelCommand::Usage(args)) => sentinel::usage(args).map(|()| 0),
        Command::Sentinel(SentinelCommand::Tail(args)) => sentinel::tail(args).map(|()| 0),
        Command::Sentinel(SentinelCommand::Status(args)) => sentinel::status(args),
        Command::Dev(args) => dev::run(args),
        Command::Adapter(AdapterCommand::Stdio(args)) => adapter::stdio(args),
        Command::Adapter(AdapterCommand::Proxy(args)) => adapter::proxy(args),
        Command::Auth(AuthCommand::Login(args)) => auth::login(args).map(|()| 0),
        Command::Auth(AuthCommand::Logout(args)) => auth::logout(args).map(|()| 0),
        Command::Auth(AuthCommand::Status(args)) => auth::status(args).map(|()| 0),
        Command::Team(TeamCommand::Create(args)) => team::create(args).map(|()| 0),
        Command::Team(TeamCommand::List(args)) => team::list(args).map(|()| 0),
        Command::Team(TeamCommand::Show(args)) => team::show(args).map(|()| 0),
        Command::Team(TeamCommand::Member(TeamMemberCommand::Add(args))) => {
            team::member_add(args).map(|()| 0)
        }
        Command::Team(TeamCommand::Member(TeamMemberCommand::Remove(args))) => {
            team::member_remove(args).map(|()| 0)
        }
        Command::Registry(RegistryCommand::Push(args)) => registry::push(args),
        Command::Registry(RegistryCommand::Status(args)) => registry::status(args),
        Command::Registry(RegistryCommand::Info(args)) => registry::info(args),
        Command::Registry(RegistryCommand::Provision(args)) => provision::provision(args),
        Command::Server(ServerCommand::Build(BuildCommand::Image(args))) => {
            image::build_image(args).map(|()| 0)
        }
        Command::Pipeline(PipelineCommand::Generate(args)) => pipeline::generate(args),
        Command::Pipeline(PipelineCommand::Deploy(args)) => pipeline::deploy(args),
        Command::Setup(args) => setup::run(args),
        Command::Status(args) => status::status(args),
        Command::Cluster(ClusterCommand::Doctor(args)) => status::doctor(args),
    }
}

/// `--team SLUG` and `--profile` of a `server` or `access` command: the platform instead of the
/// kubeconfig. `clashes` are the kubeconfig options given with it, which are a usage error:
/// the team decides the namespace.
fn target<'a>(
    slug: &'a str,
    profile: &'a Option<String>,
    clashes: &[(&str, bool)],
) -> error::Result<TeamTarget<'a>> {
    if let Some((option, _)) = clashes.iter().find(|(_, given)| *given) {
        return Err(CliError::Usage {
            message: format!(
                "--team and {option} cannot be used together: --team goes through the platform, \
                 on the objects of team {slug} in its own namespace"
            ),
            hint: format!(
                "leave out {option} (or leave out --team to work on the cluster of the kubeconfig)"
            ),
        });
    }
    Ok(TeamTarget {
        slug,
        profile: profile.as_deref(),
    })
}

fn server_apply(args: ServerApplyArgs) -> error::Result<()> {
    match &args.platform.team {
        Some(slug) => {
            let clashes = [
                ("--namespace", args.cluster.namespace.namespace.is_some()),
                ("--force-conflicts", args.cluster.force_conflicts),
            ];
            team_servers::apply(
                &args.cluster.files,
                target(slug, &args.platform.profile, &clashes)?,
            )
        }
        None => cluster::apply(Kind::Server, args.cluster),
    }
}

fn server_list(args: ServerListArgs) -> error::Result<()> {
    match &args.platform.team {
        Some(slug) => {
            let clashes = [
                ("--namespace", args.cluster.namespace.namespace.is_some()),
                ("--all-namespaces", args.cluster.all_namespaces),
            ];
            team_servers::list(
                target(slug, &args.platform.profile, &clashes)?,
                args.cluster.output,
            )
        }
        None => cluster::list(Kind::Server, args.cluster),
    }
}

fn server_get(args: ServerGetArgs) -> error::Result<()> {
    match &args.platform.team {
        Some(slug) => {
            let clashes = [("--namespace", args.cluster.namespace.namespace.is_some())];
            team_servers::get(
                &args.cluster.name,
                target(slug, &args.platform.profile, &clashes)?,
                args.cluster.output,
            )
        }
        None => cluster::server_get(args.cluster),
    }
}

fn server_delete(args: ServerNameArgs) -> error::Result<()> {
    match &args.platform.team {
        Some(slug) => {
            let clashes = [("--namespace", args.cluster.namespace.namespace.is_some())];
            team_access::delete(
                Kind::Server,
                &args.cluster.name,
                target(slug, &args.platform.profile, &clashes)?,
            )
        }
        None => cluster::delete(Kind::Server, args.cluster),
    }
}

fn grant_apply(args: GrantApplyArgs) -> error::Result<()> {
    match &args.team {
        Some(slug) => {
            let clashes = [
                ("--namespace", args.cluster.namespace.namespace.is_some()),
                ("--force-conflicts", args.cluster.force_conflicts),
            ];
            team_access::grant_apply(&args.cluster.files, target(slug, &args.profile, &clashes)?)
        }
        None => cluster::apply(Kind::Grant, args.cluster),
    }
}

fn list(kind: Kind, args: AccessListArgs) -> error::Result<()> {
    match &args.team {
        Some(slug) => {
            let clashes = [
                ("--namespace", args.cluster.namespace.namespace.is_some()),
                ("--all-namespaces", args.cluster.all_namespaces),
            ];
            team_access::list(
                kind,
                target(slug, &args.profile, &clashes)?,
                args.cluster.output,
            )
        }
        None => cluster::list(kind, args.cluster),
    }
}

fn delete(kind: Kind, args: AccessNameArgs) -> error::Result<()> {
    match &args.team {
        Some(slug) => {
            let clashes = [("--namespace", args.cluster.namespace.namespace.is_some())];
            team_access::delete(
                kind,
                &args.cluster.name,
                target(slug, &args.profile, &clashes)?,
            )
        }
        None => cluster::delete(kind, args.cluster),
    }
}

fn switch(switch: Switch, args: AccessNameArgs) -> error::Result<()> {
    match &args.team {
        Some(slug) => {
            let clashes = [("--namespace", args.cluster.namespace.namespace.is_some())];
            team_access::switch(
                switch,
                &args.cluster.name,
                target(slug, &args.profile, &clashes)?,
            )
        }
        None => cluster::switch(switch, args.cluster),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
