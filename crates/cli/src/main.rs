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
    AccessCommand, AdapterCommand, AuthCommand, Cli, Command, GrantCommand, PolicyCommand,
    SentinelCommand, ServerCommand, SessionCommand, TeamCommand, TeamMemberCommand, TokenCommand,
};
use crate::commands::cluster::{self, Kind};
use crate::commands::registry::RegistryCommand;
use crate::commands::{
    access, adapter, auth, dev, policy, registry, sentinel, server, team, token,
};

fn run(cli: Cli) -> error::Result<u8> {
    match cli.command {
        Command::Server(ServerCommand::Init(args)) => server::init(args).map(|()| 0),
        Command::Server(ServerCommand::Generate(args)) => server::generate(args).map(|()| 0),
        Command::Server(ServerCommand::Apply(args)) => {
            cluster::apply(Kind::Server, args).map(|()| 0)
        }
        Command::Server(ServerCommand::List(args)) => cluster::list(Kind::Server, args).map(|()| 0),
        Command::Server(ServerCommand::Get(args)) => cluster::server_get(args).map(|()| 0),
        Command::Server(ServerCommand::Status(args)) => cluster::server_status(args).map(|()| 0),
        Command::Server(ServerCommand::Delete(args)) => {
            cluster::delete(Kind::Server, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::Apply(args))) => {
            cluster::apply(Kind::Grant, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::List(args))) => {
            cluster::list(Kind::Grant, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Grant(GrantCommand::Delete(args))) => {
            cluster::delete(Kind::Grant, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Apply(args))) => {
            cluster::apply(Kind::Session, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::List(args))) => {
            cluster::list(Kind::Session, args).map(|()| 0)
        }
        Command::Access(AccessCommand::Session(SessionCommand::Revoke(args))) => {
            cluster::session_revoke(args).map(|()| 0)
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
