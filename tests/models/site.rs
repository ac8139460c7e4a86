//! A throwaway operator workspace for model tests: a `warden.toml` that points model aliases at
//! local mock servers, the keys in the environment of every `warden` it runs, and an in-process
//! router over the same config.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;

use warden::capabilities::Capabilities;
use warden::config::WardenConfig;
use warden::models::{
    ChatMessage, ChatRequest, Completion, ModelCaller, ModelError, ModelGrants, Role, StreamEvent,
};
use warden::sandbox::{CallIdentity, new_call_id};

use crate::common::{Run, run_command, warden_command};

/// The OpenAI key the host holds in these tests; it must never reach a plugin.
pub const OPENAI_KEY: &str = "sk-test-openai-7f3a9c2e51d84b06";
/// The Anthropic key the host holds in these tests.
pub const ANTHROPIC_KEY: &str = "sk-ant-test-e4b8d1a0c9f27356";
/// A secret header value, read from the environment through `env:`.
pub const HEADER_SECRET: &str = "org-secret-93c1d7e2";

/// A folder with a config, run with the test keys in the environment.
pub struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    /// Writes `warden.toml`; `{plugins}` stands for the built plugins' folder, `{mock}`,
    /// `{mock2}`… are replaced by the caller first.
    pub fn new(config: &str) -> Site {
        let site = Site {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let plugins = Path::new(env!("WARDEN_BUILT_PLUGINS"))
            .display()
            .to_string();
        site.write("warden.toml", &config.replace("{plugins}", &plugins));
        site
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file, creating folders.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A `warden ARGS` command in the folder, with the keys in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = warden_command(args);
        cmd.current_dir(self.dir.path())
            .env_remove("WARDEN_CONFIG")
            .env("TEST_OPENAI_KEY", OPENAI_KEY)
            .env("TEST_ANTHROPIC_KEY", ANTHROPIC_KEY)
            .env("TEST_HEADER_SECRET", HEADER_SECRET);
        cmd
    }

    /// Runs `warden ARGS`.
    pub fn warden(&self, args: &[&str]) -> Run {
        run_command(self.command(args), None)
    }

    /// `warden call --config warden.toml --agent AGENT PLUGIN TOOL --input INPUT`.
    pub fn call(&self, agent: &str, plugin: &str, tool: &str, input: &str) -> Run {
        run_command(self.call_command(agent, plugin, tool, input), None)
    }

    /// The command of [`Site::call`], to spawn several at once.
    pub fn call_command(&self, agent: &str, plugin: &str, tool: &str, input: &str) -> Command {
        self.call_command_within(agent, plugin, tool, input, 30_000)
    }

    /// [`Site::call`] with the call's time limit set to `timeout_ms`.
    pub fn call_within(
        &self,
        agent: &str,
        (plugin, tool): (&str, &str),
        input: &str,
        timeout_ms: u64,
    ) -> Run {
        run_command(
            self.call_command_within(agent, plugin, tool, input, timeout_ms),
            None,
        )
    }

    fn call_command_within(
        &self,
        agent: &str,
        plugin: &str,
        tool: &str,
        input: &str,
        timeout_ms: u64,
    ) -> Command {
        let timeout = timeout_ms.to_string();
        self.command(&[
            "call",
            "--config",
            "warden.toml",
            "--agent",
            agent,
            plugin,
            tool,
            "--input",
            input,
            "--timeout-ms",
            &timeout,
        ])
    }

    /// Spawns a call without waiting for it.
    pub fn spawn_call(&self, agent: &str, plugin: &str, tool: &str, input: &str) -> Child {
        self.call_command(agent, plugin, tool, input)
            .spawn()
            .expect("spawn warden")
    }

    /// `model-probe`'s report for one call, as the agent `agent`.
    pub fn probe(&self, agent: &str, input: serde_json::Value) -> serde_json::Value {
        let run = self.call(agent, "model-probe", "probe", &input.to_string());
        run.assert_code(0);
        run.json()
    }

    /// The audit records (`warden audit tail --json`), oldest first.
    pub fn audit(&self) -> Vec<serde_json::Value> {
        let run = self.warden(&[
            "audit",
            "tail",
            "--config",
            "warden.toml",
            "--json",
            "-n",
            "1000",
        ]);
        run.assert_code(0);
        run.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("an audit record is JSON"))
            .collect()
    }

    /// The `model` records' details, oldest first: each call's outcome record, without the
    /// record written before its request went out (see [`Site::model_requests`]).
    pub fn model_calls(&self) -> Vec<serde_json::Value> {
        self.model_records()
            .into_iter()
            .filter(|d| d["phase"] != "request")
            .collect()
    }

    /// The records written before a model request went out, oldest first.
    pub fn model_requests(&self) -> Vec<serde_json::Value> {
        self.model_records()
            .into_iter()
            .filter(|d| d["phase"] == "request")
            .collect()
    }

    fn model_records(&self) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["capability"] == "model")
            .map(|r| {
                let mut detail: serde_json::Value =
                    serde_json::from_str(r["detail"].as_str().unwrap()).unwrap();
                detail["record"] = r;
                detail
            })
            .collect()
    }

    /// The capabilities of this config, in this process (no keys in its environment: use only
    /// aliases without `api_key_env`).
    pub fn capabilities(&self) -> Arc<Capabilities> {
        let config =
            WardenConfig::load(&self.path().join("warden.toml")).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(Capabilities::configure(Arc::new(config)).expect("configure"))
    }
}

/// Grants for in-process router calls: the listed aliases.
pub struct Granted(pub &'static [&'static str]);

impl ModelGrants for Granted {
    fn check_model(&self, alias: &str) -> Result<(), String> {
        if self.0.contains(&alias) {
            Ok(())
        } else {
            Err(format!(
                "model alias `{alias}` is not granted (add \"model:{alias}\")"
            ))
        }
    }
}

/// A one-message request.
pub fn ask(alias: &str, text: &str) -> ChatRequest {
    ChatRequest::new(alias, vec![ChatMessage::new(Role::User, text)])
}

/// Asks the router in-process, as agent `agent` through `model-probe`'s tool `probe`, with the
/// aliases in `granted`.
pub async fn complete_as(
    caps: &Capabilities,
    agent: &str,
    granted: &'static [&'static str],
    request: ChatRequest,
) -> Result<Completion, ModelError> {
    complete_streaming_as(caps, agent, granted, request, &mut |_| {}).await
}

/// [`complete_as`], telling `on_event` what streams in.
pub async fn complete_streaming_as(
    caps: &Capabilities,
    agent: &str,
    granted: &'static [&'static str],
    request: ChatRequest,
    on_event: &mut (dyn FnMut(StreamEvent<'_>) + Send),
) -> Result<Completion, ModelError> {
    let identity = CallIdentity {
        agent: agent.to_string(),
        call_id: new_call_id(),
        ..CallIdentity::default()
    };
    let caller = ModelCaller {
        identity: &identity,
        plugin: "model-probe",
        tool: "probe",
        grants: &Granted(granted),
    };
    caps.models
        .complete_streaming(&caller, request, on_event)
        .await
}
