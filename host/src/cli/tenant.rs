//! `warden tenant token NAME`: makes a bearer token and prints the config line that admits it.
//! Only the token's sha256 goes into the config; the token itself is shown once.

use clap::{Args, Subcommand};
use serde_json::json;

use super::print_stdout;
use crate::api::tenants::{new_token, token_digest};
use crate::error::{CallError, ErrorKind};

#[derive(Debug, Subcommand)]
pub(super) enum TenantCommand {
    /// Make a new bearer token for tenant NAME and print the lines to add to warden.toml.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub(super) struct TokenArgs {
    /// The tenant's name in `[tenants.NAME]`.
    name: String,
    /// Print `{"tenant", "token", "token_sha256"}` as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(command: TenantCommand) -> Result<(), CallError> {
    match command {
        TenantCommand::Token(args) => token(args),
    }
}

fn token(args: TokenArgs) -> Result<(), CallError> {
    let name = &args.name;
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(CallError::invalid_input(format!(
            "`{}` is not a tenant name: use 1 to 64 letters, digits, `-` or `_`",
            name.escape_debug()
        )));
    }
    let token = new_token().map_err(|e| {
        CallError::new(
            ErrorKind::Internal,
            format!("cannot read random bytes from /dev/urandom: {e}"),
        )
    })?;
    let digest = token_digest(&token);
    if args.json {
        return print_stdout(
            &json!({ "tenant": name, "token": token, "token_sha256": digest }).to_string(),
        );
    }
    print_stdout(&format!(
        "token for tenant `{name}` (shown once; give it to the client as \
         `Authorization: Bearer TOKEN`):\n  {token}\n\nadd to warden.toml (a list keeps older \
         tokens working while clients move over):\n\n[tenants.{name}]\ntoken_sha256 = \
         \"{digest}\"\nagents = []  # the agents this tenant may use"
    ))
}
