//! A throwaway operator workspace: a folder with a `warden.toml`, data sources beside it, and a
//! way to run `warden` against it.

use crate::common::{Run, plugin_path, run_command, warden_command};
use std::path::{Path, PathBuf};

/// A temporary folder holding a config and its sources.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// An empty workspace.
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The workspace folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating folders), relative to the workspace.
    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Writes `warden.toml`. `{plugins}` in the text stands for the built plugins' folder.
    pub fn config(&self, text: &str) -> PathBuf {
        let plugins = Path::new(env!("WARDEN_BUILT_PLUGINS"))
            .display()
            .to_string();
        self.write("warden.toml", &text.replace("{plugins}", &plugins))
    }

    /// Runs `warden ARGS` in the workspace, with the shared compile cache.
    pub fn warden(&self, args: &[&str]) -> Run {
        self.warden_with_env(args, &[])
    }

    /// Runs `warden ARGS` in the workspace with `env` set, as an operator's secrets would be.
    pub fn warden_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = warden_command(args);
        cmd.current_dir(self.dir.path())
            .env_remove("WARDEN_CONFIG")
            .envs(env.iter().copied());
        run_command(cmd, None)
    }

    /// As [`Workspace::call`], with the input on stdin (`--input -`), for inputs too large for
    /// a command line.
    pub fn call_stdin(&self, agent: &str, plugin: &str, tool: &str, input: &str) -> Run {
        let mut cmd = warden_command(&call_args(agent, plugin, tool, "-"));
        cmd.current_dir(self.dir.path()).env_remove("WARDEN_CONFIG");
        run_command(cmd, Some(input.as_bytes()))
    }

    /// `warden call --config warden.toml --agent AGENT PLUGIN TOOL --input INPUT`.
    pub fn call(&self, agent: &str, plugin: &str, tool: &str, input: &str) -> Run {
        self.warden(&call_args(agent, plugin, tool, input))
    }
}

/// The arguments of `warden call --config warden.toml --agent AGENT PLUGIN TOOL --input INPUT`.
fn call_args<'a>(agent: &'a str, plugin: &'a str, tool: &'a str, input: &'a str) -> [&'a str; 9] {
    [
        "call",
        "--config",
        "warden.toml",
        "--agent",
        agent,
        plugin,
        tool,
        "--input",
        input,
    ]
}

/// The arguments of `warden audit tail` that print the last 1000 records, one JSON object a line.
pub const AUDIT_TAIL_JSON: [&str; 7] = [
    "audit",
    "tail",
    "--config",
    "warden.toml",
    "--json",
    "-n",
    "1000",
];

/// The records printed by a successful `warden audit tail --json`, oldest first.
pub fn audit_records(run: &Run) -> Vec<serde_json::Value> {
    run.assert_code(0);
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("an audit record is JSON"))
        .collect()
}

/// Makes sure a plugin was built, and returns its path.
pub fn built(name: &str) -> PathBuf {
    plugin_path(name)
}

impl Workspace {
    /// Runs `warden ARGS` in the workspace with `env` set, under `/usr/bin/time -v`, and
    /// returns the run and the `warden` process's peak resident set size in KiB.
    pub fn warden_peak_rss(&self, args: &[&str], env: &[(&str, &str)]) -> (Run, u64) {
        let reference = warden_command(args);
        let mut cmd = std::process::Command::new("/usr/bin/time");
        cmd.arg("-v")
            .arg(reference.get_program())
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("WARDEN_CONFIG")
            .envs(
                reference
                    .get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .env_remove("WARDEN_LOG")
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let run = run_command(cmd, None);
        let peak = run
            .stderr
            .lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix("Maximum resident set size (kbytes):")
                    .map(|kib| kib.trim().parse::<u64>().expect("a number of KiB"))
            })
            .unwrap_or_else(|| panic!("/usr/bin/time -v printed no peak RSS: {run:#?}"));
        (run, peak)
    }
}
