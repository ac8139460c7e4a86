//! The host service (`warden::host`): built once from a config, every plugin loaded once, one
//! call path for every front end, and a new generation swapped in while calls are in flight.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use warden::config::WardenConfig;
use warden::error::{CallError, ErrorKind, Limit};
use warden::host::{CallId, CallRequest, HostOptions, PluginStatus, WardenHost};

use crate::common::{engine, metric, plugin_path, warden};

/// A folder with a config in it; `{plugins}` in the text is the built plugins' folder.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().expect("a temp dir"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write_config(&self, name: &str, text: &str) -> PathBuf {
        let plugins = Path::new(env!("WARDEN_BUILT_PLUGINS"))
            .display()
            .to_string();
        let path = self.path(name);
        std::fs::write(&path, text.replace("{plugins}", &plugins)).expect("write the config");
        path
    }

    fn config(&self, name: &str, text: &str) -> (Arc<WardenConfig>, PathBuf) {
        let path = self.write_config(name, text);
        let config = WardenConfig::load(&path).unwrap_or_else(|e| panic!("the config: {e}"));
        (Arc::new(config), path)
    }

    async fn host(&self, text: &str) -> WardenHost {
        let (config, path) = self.config("warden.toml", text);
        WardenHost::start(engine(), config, &path, HostOptions::default())
            .await
            .unwrap_or_else(|e| panic!("start the host: {e}"))
    }
}

fn request(agent: &str, plugin: &str, tool: &str, input: &str) -> CallRequest {
    CallRequest {
        tenant: "local".into(),
        agent: agent.into(),
        session: "test".into(),
        call_id: CallId::new(),
        plugin: plugin.into(),
        tool: tool.into(),
        input: input.into(),
    }
}

/// Calls that must fail: the error.
async fn refused(
    host: &WardenHost,
    agent: &str,
    plugin: &str,
    tool: &str,
    input: &str,
) -> CallError {
    match host.call(request(agent, plugin, tool, input)).await {
        Ok(out) => panic!("{agent} calling {plugin}/{tool} should fail, but got {out}"),
        Err(e) => e,
    }
}

/// A config serving text-tools (and spin-forever), with a state store and `agents` after it.
fn serving(agents: &str) -> String {
    format!(
        r#"
        [state]
        url = "sqlite://state.db"
        [plugins.text-tools]
        path = "{{plugins}}/text-tools.wasm"
        [plugins.spin-forever]
        path = "{{plugins}}/spin-forever.wasm"
        {agents}
        "#
    )
}

const TEXT_TOOLS: &str = r#"
[state]
url = "sqlite://state.db"
[plugins.text-tools]
path = "{plugins}/text-tools.wasm"
[agents.writer]
tools = ["text-tools/*"]
"#;

#[tokio::test]
async fn a_plugin_that_fails_to_load_is_reported_and_the_others_serve() {
    let site = Site::new();
    std::fs::write(site.path("corrupt.wasm"), b"\0asm\x0d\x00\x01\x00garbage").unwrap();
    let pinned = "0".repeat(64);
    let host = site
        .host(&format!(
            r#"
            [state]
            url = "sqlite://state.db"
            [plugins.text-tools]
            path = "{{plugins}}/text-tools.wasm"
            [plugins.gone]
            path = "missing.wasm"
            [plugins.corrupt]
            path = "corrupt.wasm"
            [plugins.pinned]
            path = "{{plugins}}/text-tools.wasm"
            sha256 = "{pinned}"
            [agents.writer]
            tools = ["text-tools/*", "gone/*", "corrupt/*", "pinned/*"]
            "#
        ))
        .await;
    let statuses = host.plugins();
    let failed = |name: &str| -> String {
        statuses
            .iter()
            .find_map(|s| match s {
                PluginStatus::Failed { name: n, error } if n == name => Some(error.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("plugin {name} should have failed: {statuses:?}"))
    };
    assert!(
        failed("gone").contains("cannot read plugin file"),
        "{}",
        failed("gone")
    );
    assert!(
        failed("corrupt").contains("plugin `corrupt`"),
        "{}",
        failed("corrupt")
    );
    assert!(
        failed("pinned").contains("plugins.pinned.sha256 pins"),
        "{}",
        failed("pinned")
    );
    assert!(
        statuses
            .iter()
            .any(|s| matches!(s, PluginStatus::Ready { name, .. } if name == "text-tools")),
        "{statuses:?}"
    );

    // The one that loaded serves; the others answer with the cause they failed with.
    let out = host
        .call(request(
            "writer",
            "text-tools",
            "echo",
            r#"{"text":"still here"}"#,
        ))
        .await
        .expect("text-tools serves");
    assert_eq!(out, r#"{"text":"still here"}"#);
    let err = host
        .call(request("writer", "gone", "anything", "{}"))
        .await
        .expect_err("gone is not served");
    assert_eq!(err.kind(), ErrorKind::Unusable);
    assert!(err.to_string().contains("cannot read plugin file"), "{err}");
}

#[test]
fn plugin_list_reports_every_plugin_and_fails_when_one_did_not_load() {
    let site = Site::new();
    let config = site.write_config(
        "warden.toml",
        r#"
        [state]
        url = "sqlite://state.db"
        [plugins.text-tools]
        path = "{plugins}/text-tools.wasm"
        [plugins.gone]
        path = "missing.wasm"
        "#,
    );
    let run = warden(&[
        "plugin",
        "list",
        "--config",
        config.to_str().unwrap(),
        "--json",
    ]);
    run.assert_code(6);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert_eq!(lines.len(), 2, "{run:#?}");
    let by_name = |name: &str| lines.iter().find(|l| l["plugin"] == name).unwrap().clone();
    assert_eq!(by_name("text-tools")["status"], "ready");
    assert_eq!(
        by_name("text-tools")["tools"],
        serde_json::json!(["echo", "word-count", "regex-extract"])
    );
    assert_eq!(by_name("gone")["status"], "failed");
    assert!(
        by_name("gone")["error"]
            .as_str()
            .unwrap()
            .contains("cannot read plugin file"),
        "{run:#?}"
    );
    assert!(
        run.error_line()
            .contains("1 of 2 plugins did not load: gone"),
        "{run:#?}"
    );

    // With every plugin loading, it lists them and succeeds.
    let good = site.write_config("good.toml", TEXT_TOOLS);
    let run = warden(&["plugin", "list", "--config", good.to_str().unwrap()]);
    run.assert_code(0);
    assert!(run.stdout.contains("text-tools"), "{run:#?}");
    assert!(run.stdout.contains("1 of 1 plugins serve"), "{run:#?}");
}

#[tokio::test]
async fn the_call_path_refuses_unknown_agents_plugins_and_ungranted_tools() {
    let site = Site::new();
    let host = site
        .host(&serving(
            "[agents.writer]\ntools = [\"text-tools/word-count\"]",
        ))
        .await;
    let err = refused(&host, "nobody", "text-tools", "echo", "{}").await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("the agents are: writer"), "{err}");

    let err = refused(&host, "writer", "nothing", "echo", "{}").await;
    assert_eq!(err.kind(), ErrorKind::Unusable);
    assert!(
        err.to_string()
            .contains("the plugins are: spin-forever, text-tools"),
        "{err}"
    );

    let err = refused(&host, "writer", "text-tools", "echo", r#"{"text":"x"}"#).await;
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    // The refused tool is in the audit log, committed before the refusal came back.
    let tail = warden(&[
        "audit",
        "tail",
        "--json",
        "--config",
        site.path("warden.toml").to_str().unwrap(),
    ]);
    tail.assert_code(0);
    assert!(
        tail.stdout.lines().any(|line| {
            let r: serde_json::Value = serde_json::from_str(line).expect("a JSON record");
            r["capability"] == "call"
                && r["target"] == "text-tools/echo"
                && r["outcome"] == "denied"
        }),
        "{tail:#?}"
    );

    // Input is checked against the tool's schema before any wasm runs.
    let err = refused(&host, "writer", "text-tools", "word-count", r#"{"text":1}"#).await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let out = host
        .call(request(
            "writer",
            "text-tools",
            "word-count",
            r#"{"text":"one two"}"#,
        ))
        .await
        .expect("a granted tool runs");
    assert!(out.contains('2'), "{out}");
}

#[tokio::test]
async fn every_call_is_timed_and_a_denied_tool_counts_as_a_call_denial() {
    let site = Site::new();
    // A plugin name of its own: the suite's other tests run in this process at the same time.
    let host = site
        .host(
            r#"
            [state]
            url = "sqlite://state.db"
            [plugins.metered]
            path = "{plugins}/text-tools.wasm"
            [agents.writer]
            tools = ["metered/echo"]
            "#,
        )
        .await;
    let calls = |tool: &str, outcome: &str| {
        metric(&format!(
            "warden_tool_call_duration_seconds_count{{plugin=\"metered\",tool=\"{tool}\",outcome=\"{outcome}\"}}"
        ))
    };
    let call_denials = || metric(r#"warden_denials_total{capability="call"}"#);

    let out = host
        .call(request("writer", "metered", "echo", r#"{"text":"hi"}"#))
        .await
        .expect("a granted tool runs");
    assert_eq!(out, r#"{"text":"hi"}"#);
    assert_eq!(calls("echo", "ok"), 1.0);

    let before = call_denials();
    let err = refused(
        &host,
        "writer",
        "metered",
        "word-count",
        r#"{"text":"a b"}"#,
    )
    .await;
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    assert!(call_denials() > before, "the denial is not counted");
    assert_eq!(calls("word-count", "denied"), 1.0);

    // Names the host does not serve make no series of their own.
    refused(&host, "writer", "metered", "made-up-tool", "{}").await;
    refused(&host, "writer", "made-up-plugin", "echo", "{}").await;
    assert_eq!(calls("(unknown)", "denied"), 1.0);
    let text = warden::metrics::render();
    assert!(
        !text.contains("made-up"),
        "a caller's name became a label: {text}"
    );
}

#[tokio::test]
async fn names_from_the_caller_are_bounded_and_escaped_in_errors() {
    let site = Site::new();
    let host = site
        .host(&serving("[agents.writer]\ntools = [\"text-tools/*\"]"))
        .await;
    // A tool name no plugin can have is refused before any lookup.
    let huge = "a".repeat(1 << 20);
    let err = refused(&host, "writer", "text-tools", &huge, "{}").await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("is not a tool name"), "{err}");
    assert!(err.to_string().len() < 300, "{}", err.to_string().len());
    // An agent or plugin name cannot forge a line in the error, or stretch it.
    let forged = format!("x\nerror: forged{}", "b".repeat(1 << 20));
    for err in [
        refused(&host, &forged, "text-tools", "echo", "{}").await,
        refused(&host, "writer", &forged, "echo", "{}").await,
    ] {
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.len() < 400, "{}", text.len());
    }
}

#[tokio::test]
async fn an_agent_with_an_impossible_limit_is_refused_and_the_others_serve() {
    let site = Site::new();
    let host = site
        .host(&serving(
            r#"
            [agents.greedy]
            tools = ["text-tools/*"]
            limits = { max_output_kb = 1000000 }
            [agents.writer]
            tools = ["text-tools/*"]
            "#,
        ))
        .await;
    let err = refused(&host, "greedy", "text-tools", "echo", r#"{"text":"x"}"#).await;
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains("max_output_kb"), "{err}");
    host.call(request("writer", "text-tools", "echo", r#"{"text":"x"}"#))
        .await
        .expect("the other agent serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_swaps_in_a_new_generation_while_calls_are_in_flight() {
    let site = Site::new();
    let old = serving(
        r#"
        [agents.writer]
        tools = ["text-tools/*", "spin-forever/*"]
        limits = { call_timeout_ms = 3000 }
        "#,
    );
    let host = Arc::new(site.host(&old).await);

    // A call that runs for its whole time limit, started on the old generation.
    let long = {
        let host = host.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let err = refused(&host, "writer", "spin-forever", "spin", "{}").await;
            (err, start.elapsed())
        })
    };
    // Calls racing the reload: each sees one generation or the other, whole.
    let racers: Vec<_> = (0..16)
        .map(|i| {
            let host = host.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i)).await;
                host.call(request("writer", "text-tools", "echo", r#"{"text":"r"}"#))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (config, path) = site.config(
        "new.toml",
        &serving(
            r#"
            [agents.writer]
            tools = ["text-tools/word-count", "spin-forever/*"]
            limits = { call_timeout_ms = 200 }
            "#,
        ),
    );
    host.reload(config, &path).await.expect("the reload");

    for racer in racers {
        match racer.await.expect("no panic") {
            Ok(out) => assert_eq!(out, r#"{"text":"r"}"#),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Denied, "{e}"),
        }
    }
    // After the swap: the new grants and the new limits.
    let err = refused(&host, "writer", "text-tools", "echo", r#"{"text":"r"}"#).await;
    assert_eq!(err.kind(), ErrorKind::Denied, "{err}");
    let err = refused(&host, "writer", "spin-forever", "spin", "{}").await;
    assert!(err.to_string().contains("200 ms limit"), "{err}");
    // The call in flight finished on the generation it started with: its limit stayed 3000 ms.
    let (err, elapsed) = long.await.expect("no panic");
    assert_eq!(err.kind(), ErrorKind::LimitExceeded(Limit::Time), "{err}");
    assert!(err.to_string().contains("3000 ms limit"), "{err}");
    assert!(elapsed >= Duration::from_millis(2900), "{elapsed:?}");
}

#[tokio::test]
async fn a_reload_that_fails_keeps_the_generation_serving() {
    let site = Site::new();
    let host = site.host(TEXT_TOOLS).await;
    // Its capabilities cannot be configured: the state store's folder is a file.
    std::fs::write(site.path("blocker"), "not a folder").unwrap();
    let (config, path) = site.config(
        "broken.toml",
        r#"
        [state]
        url = "sqlite://blocker/state.db"
        [plugins.text-tools]
        path = "{plugins}/text-tools.wasm"
        [agents.writer]
        tools = ["text-tools/word-count"]
        "#,
    );
    let err = host.reload(config, &path).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("blocker"), "{err}");
    // Still the first generation: echo is still granted.
    host.call(request("writer", "text-tools", "echo", r#"{"text":"x"}"#))
        .await
        .expect("the first generation still serves");
}

#[tokio::test]
async fn a_config_the_capabilities_refuse_does_not_start() {
    let site = Site::new();
    // Its shape is fine (so `WardenConfig::load` takes it), but the directory is missing.
    let (config, path) = site.config(
        "warden.toml",
        &serving(
            r#"
            [sources.handbook]
            kind = "dir"
            path = "no-such-folder"
            [agents.writer]
            tools = ["text-tools/*"]
            grants = ["handbook:ro"]
            "#,
        ),
    );
    let err = match WardenHost::start(engine(), config, &path, HostOptions::default()).await {
        Ok(_) => panic!("a host started on a config with a missing directory source"),
        Err(e) => e,
    };
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");
    assert!(err.to_string().contains("sources.handbook.path"), "{err}");
}

#[tokio::test]
async fn a_file_host_serves_one_plugin_with_nothing_granted() {
    let (host, name) =
        WardenHost::for_file(engine(), &plugin_path("text-tools"), HostOptions::default())
            .await
            .expect("a host for one file");
    assert_eq!(name, "text-tools");
    let out = host
        .call(request("cli", &name, "echo", r#"{"text":"x"}"#))
        .await
        .unwrap();
    assert_eq!(out, r#"{"text":"x"}"#);
    let err = refused(&host, "cli", "files", "list", "{}").await;
    assert_eq!(err.kind(), ErrorKind::Unusable);
    assert!(
        err.to_string().contains("serves plugin `text-tools`"),
        "{err}"
    );
}

#[test]
fn a_state_database_that_is_down_stops_the_start_naming_it_without_the_password() {
    let site = Site::new();
    for url in [
        // Nothing listens on port 1.
        "postgres://warden:hunter2-secret@127.0.0.1:1/state",
        // The server is up, but refuses this role.
        "postgres://no_such_role_here:hunter2-secret@127.0.0.1:5432/test",
    ] {
        let config = site.write_config(
            "warden.toml",
            &format!(
                "[state]\nurl = \"{url}\"\n[plugins.text-tools]\npath = \"{{plugins}}/text-tools.wasm\"\n"
            ),
        );
        let run = warden(&["plugin", "list", "--config", config.to_str().unwrap()]);
        run.assert_code(7).assert_no_panic();
        let error = run.error_line();
        assert!(
            error.contains("127.0.0.1") && error.contains("***"),
            "{run:#?}"
        );
        assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    }
}
