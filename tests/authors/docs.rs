//! The author's guide, run as written: every `sh` block of `docs/plugin-authors.md`, in order,
//! in one bash session, so the guide cannot drift from what the binary does.
//!
//! - A line ending in `# exits N` must exit with N; every other command must succeed.
//! - A fenced block right after an `<!-- file: PATH -->` line is written to PATH (relative to
//!   the session's folder at that point) before the next command runs, so the guide's config
//!   files and sources are the ones its commands use.
//! - The session starts in a scratch folder under `target/`, inside this checkout, so the Rust
//!   project the guide creates depends on this checkout's SDK by path.
//! - `warden` is the binary under test, first on PATH, with the componentize-py of
//!   [`toolchains`] next to it, so `warden plugin build` finds the pinned version there and
//!   installs nothing.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::common::{WARDEN, shared_cache_dir};
use crate::toolchains::{self, authors_dir, repo_root};

/// What the guide asks to run.
#[derive(Debug, PartialEq)]
enum Step {
    /// A shell command (continuation lines joined), and the exit code it must end with.
    Command { line: String, exits: i32 },
    /// A file the guide shows, written before the next command.
    File { path: String, text: String },
}

/// Reads the guide's steps from its Markdown.
fn steps(markdown: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut lines = markdown.lines().peekable();
    let mut file_for_next_block: Option<String> = None;
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if let Some(path) = trimmed
            .strip_prefix("<!-- file: ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            file_for_next_block = Some(path.trim().to_string());
            continue;
        }
        let Some(lang) = trimmed.strip_prefix("```") else {
            if !trimmed.is_empty() {
                file_for_next_block = None;
            }
            continue;
        };
        let mut body = Vec::new();
        for inner in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            body.push(inner);
        }
        if let Some(path) = file_for_next_block.take() {
            let mut text = body.join("\n");
            text.push('\n');
            steps.push(Step::File { path, text });
        } else if lang == "sh" {
            steps.extend(commands(&body));
        }
    }
    steps
}

/// The commands of one `sh` block: comments dropped, `\` continuations joined.
fn commands(body: &[&str]) -> Vec<Step> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in body {
        let line = raw.trim_end();
        if pending.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(line);
        let (command, exits) = split_expected_exit(&pending);
        out.push(Step::Command {
            line: command,
            exits,
        });
        pending.clear();
    }
    out
}

/// `cmd   # exits 3` → (`cmd   # exits 3`, 3); the comment stays, bash ignores it.
fn split_expected_exit(line: &str) -> (String, i32) {
    let exits = line
        .rsplit_once("# exits ")
        .and_then(|(_, code)| code.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (line.to_string(), exits)
}

/// One bash script that runs every step and stops at the first that does not end as the
/// guide says.
fn script(steps: &[Step]) -> String {
    let mut out = String::from("set -u\n");
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Command { line, exits } => {
                let quoted = shell_quote(line);
                let _ = writeln!(out, "printf '\\n$ %s\\n' {quoted}");
                let _ = writeln!(out, "{line}");
                let _ = writeln!(
                    out,
                    "code=$?; if [ \"$code\" -ne {exits} ]; then printf 'STEP FAILED: %s exited %s, the guide says {exits}\\n' {quoted} \"$code\"; exit 1; fi"
                );
            }
            Step::File { path, text } => {
                let marker = format!("WARDEN_GUIDE_FILE_{i}");
                assert!(!text.contains(&marker));
                let path = shell_quote(path);
                let _ = writeln!(
                    out,
                    "mkdir -p \"$(dirname {path})\" && cat > {path} <<'{marker}'\n{text}{marker}"
                );
                let _ = writeln!(out, "printf '\\n(wrote %s)\\n' {path}");
            }
        }
    }
    out.push_str("echo GUIDE-DONE\n");
    out
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[test]
fn the_guide_is_read_as_steps() {
    let markdown = "intro\n\n```sh\n# a comment\nwarden plugin new a \\\n  --lang rust\nwarden call x y   # exits 3\n```\n\n<!-- file: w.toml -->\n```toml\nk = 1\n```\n\n```toml\nnot = \"a file\"\n```\n";
    assert_eq!(
        steps(markdown),
        [
            Step::Command {
                line: "warden plugin new a   --lang rust".into(),
                exits: 0
            },
            Step::Command {
                line: "warden call x y   # exits 3".into(),
                exits: 3
            },
            Step::File {
                path: "w.toml".into(),
                text: "k = 1\n".into()
            },
        ]
    );
}

#[test]
fn every_command_in_the_authors_guide_does_what_the_guide_says() {
    let guide = repo_root().join("docs/plugin-authors.md");
    let markdown = std::fs::read_to_string(&guide).expect("read docs/plugin-authors.md");
    let steps = steps(&markdown);
    let commands = steps
        .iter()
        .filter(|s| matches!(s, Step::Command { .. }))
        .count();
    // The guide walks through a project in each language; far fewer commands means the
    // extraction broke, and this test would prove nothing.
    assert!(
        commands >= 15,
        "only {commands} commands in the guide: {steps:#?}"
    );

    let _lock = toolchains::Lock::acquire("docs");
    let scratch = authors_dir().join("guide-run");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).expect("clear the scratch folder");
    }
    std::fs::create_dir_all(&scratch).expect("create the scratch folder");
    let script = script(&steps);
    std::fs::write(scratch.join("guide.sh"), &script).expect("write the script");

    let warden_dir = Path::new(WARDEN).parent().expect("the binary's folder");
    let mut path = std::ffi::OsString::from(warden_dir);
    path.push(":");
    path.push(toolchains::path_with(&toolchains::componentize_py_bin()));
    // The guide builds projects with cargo: the variables `cargo test` sets for this crate's
    // build are taken out, as for any other project's build.
    let mut bash = Command::new("bash");
    toolchains::without_host_build_env(&mut bash);
    bash.arg("guide.sh")
        .current_dir(&scratch)
        .env("PATH", path)
        .env("WARDEN_CACHE_DIR", shared_cache_dir())
        .env("WARDEN_TOOLCHAINS_DIR", authors_dir().join("toolchains"))
        .env_remove("WARDEN_LOG");
    let out = bash.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("GUIDE-DONE"),
        "the guide's commands did not all do what it says ({}); the script is {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        scratch.join("guide.sh").display()
    );
}
