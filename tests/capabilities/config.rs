//! The operator's config: `warden config check` reports every problem with its key, and
//! `warden call` refuses what the config does not allow.

use crate::workspace::Workspace;

#[test]
fn a_good_config_checks_clean() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [plugins.files]
        path = "{plugins}/files.wasm"
        max = ["dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["files/*"]
        grants = ["handbook:ro"]
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(run.stdout.contains("ok"), "{run:#?}");
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [plugins.files]
        path = "missing.wasm"
        max = ["dir:*"]
        [sources.handbook]
        kind = "dir"
        path = "no-such-folder"
        [sources.crm]
        kind = "postgres"
        [agents.support]
        grants = ["tickets:ro", "handbook:sometimes"]
        colour = "blue"
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    for key in [
        "plugins.files.path",
        "plugins.files.max[0]",
        "sources.handbook.path",
        "sources.crm.url_env",
        "agents.support",
    ] {
        assert!(run.stderr.contains(key), "missing {key}: {run:#?}");
    }
    assert!(run.stderr.contains("colour"), "{run:#?}");
    assert!(
        run.stderr.contains("dir:*:ro"),
        "the fix for a max without a mode: {run:#?}"
    );
}

#[test]
fn a_grant_naming_an_unknown_source_lists_the_sources() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        grants = ["handbok:ro"]
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("agents.support.grants[0]") && run.stderr.contains("handbook"),
        "{run:#?}"
    );
}

#[test]
fn a_plugin_that_no_longer_matches_its_pin_is_refused() {
    let ws = Workspace::new();
    let wrong = "0".repeat(64);
    ws.config(&format!(
        r#"
        [plugins.files]
        path = "{{plugins}}/files.wasm"
        sha256 = "{wrong}"
        [agents.support]
        tools = ["files/*"]
        "#
    ));
    let run = ws.call("support", "files", "list", r#"{"source":"x"}"#);
    assert!(run.code == 7 || run.code == 6, "{run:#?}");
    assert!(run.stderr.contains("sha256"), "{run:#?}");
    let check = ws.warden(&["config", "check", "--config", "warden.toml"]);
    check.assert_code(7);
    assert!(check.stderr.contains("plugins.files.sha256"), "{check:#?}");
}

#[test]
fn a_matching_pin_is_accepted() {
    let ws = Workspace::new();
    let bytes = std::fs::read(crate::workspace::built("files")).unwrap();
    let pin = warden::plugins::sha256_hex(&bytes);
    ws.write("handbook/a.md", "a");
    ws.config(&format!(
        r#"
        [plugins.files]
        path = "{{plugins}}/files.wasm"
        sha256 = "{pin}"
        max = ["dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["files/*"]
        grants = ["handbook:ro"]
        "#
    ));
    ws.call(
        "support",
        "files",
        "read",
        r#"{"source":"handbook","path":"a.md"}"#,
    )
    .assert_code(0);
}

#[test]
fn an_unknown_plugin_or_agent_is_named() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [plugins.files]
        path = "{plugins}/files.wasm"
        [agents.support]
        tools = ["files/*"]
        "#,
    );
    ws.call("support", "filez", "list", "{}")
        .assert_fails_with(6, "files");
    ws.call("nobody", "files", "list", "{}")
        .assert_fails_with(2, "support");
}

#[test]
fn agent_without_config_is_refused() {
    let ws = Workspace::new();
    let plugin = crate::workspace::built("text-tools");
    let run = ws.warden(&[
        "call",
        "--agent",
        "support",
        plugin.to_str().unwrap(),
        "echo",
        "--input",
        r#"{"text":"x"}"#,
    ]);
    run.assert_fails_with(2, "--config");
}

#[test]
fn a_dir_source_holding_the_state_store_a_plugin_or_another_source_is_warned_about() {
    let ws = Workspace::new();
    ws.write("data/crm.db", "");
    ws.write("data/inner/a.md", "a");
    ws.write("data/plugins/files.wasm", "");
    ws.write("elsewhere/b.md", "b");
    ws.config(
        r#"
        [state]
        url = "sqlite://data/state.db"
        [plugins.files]
        path = "data/plugins/files.wasm"
        max = ["dir:*:ro"]
        [sources.data]
        kind = "dir"
        path = "data"
        [sources.inner]
        kind = "dir"
        path = "data/inner"
        [sources.crm]
        kind = "sqlite"
        path = "data/crm.db"
        [sources.elsewhere]
        kind = "dir"
        path = "elsewhere"
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(run.stdout.contains("4 warnings"), "{run:#?}");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("warning: "))
        .collect();
    assert_eq!(warnings.len(), 4, "{run:#?}");
    for what in [
        "the state store",
        "plugin `files`",
        "source `crm`",
        "directory source `inner`",
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("sources.data.path") && w.contains(what)),
            "no warning about {what}: {run:#?}"
        );
    }
    assert!(
        !warnings.iter().any(|w| w.contains("sources.elsewhere")),
        "{run:#?}"
    );
}

#[test]
fn a_dir_source_holding_the_compile_cache_is_warned_about() {
    let ws = Workspace::new();
    ws.write("data/a.md", "a");
    ws.config(
        r#"
        [sources.data]
        kind = "dir"
        path = "data"
        "#,
    );
    let cache = ws.path().join("data/cache");
    let run = ws.warden_with_env(
        &["config", "check", "--config", "warden.toml"],
        &[("WARDEN_CACHE_DIR", cache.to_str().unwrap())],
    );
    run.assert_code(0);
    assert!(
        run.stderr.contains("warning: sources.data.path") && run.stderr.contains("compile cache"),
        "{run:#?}"
    );
}

#[test]
fn a_value_in_place_of_a_variable_name_is_never_echoed() {
    let ws = Workspace::new();
    let url = "postgres://admin:hunter2-secret@db.internal/crm";
    let key = "sk-live-abcdef0123456789";
    ws.config(&format!(
        r#"
        [sources.crm]
        kind = "postgres"
        url_env = "{url}"
        [sources.api]
        kind = "http"
        allow = ["https://api.example.com/v2/*"]
        headers = {{ Authorization = "env:Bearer {key}" }}
        [models.fast]
        backend = "openai"
        model = "gpt-4.1-mini"
        api_key_env = "{key}"
        "#
    ));
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    for secret in ["hunter2", "admin:", "db.internal", key, "sk-live"] {
        assert!(
            !run.stderr.contains(secret) && !run.stdout.contains(secret),
            "{secret} was echoed: {run:#?}"
        );
    }
    for at in [
        "sources.crm.url_env",
        "sources.api.headers.Authorization",
        "models.fast.api_key_env",
    ] {
        assert!(
            run.stderr
                .lines()
                .any(|l| l.contains(at) && l.contains("looks like a value")),
            "{at}: {run:#?}"
        );
    }
}

#[test]
fn inline_secret_looking_headers_are_warned_about_without_their_value() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [sources.api]
        kind = "http"
        allow = ["https://api.example.com/v2/*"]
        headers = { Authorization = "Bearer tok-123456", X-Api-Key = "k-98765", Accept = "application/json" }
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    for header in ["Authorization", "X-Api-Key"] {
        assert!(
            run.stderr.lines().any(|l| l.starts_with("warning: ")
                && l.contains(&format!("sources.api.headers.{header}"))
                && l.contains("env:NAME")),
            "{header}: {run:#?}"
        );
    }
    assert!(!run.stderr.contains("Accept"), "{run:#?}");
    assert!(
        !run.stderr.contains("tok-123456") && !run.stderr.contains("k-98765"),
        "{run:#?}"
    );
}

#[test]
fn a_bare_star_in_tools_is_refused_by_the_check() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [plugins.files]
        path = "{plugins}/files.wasm"
        max = ["dir:*:ro"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["*"]
        grants = ["handbook:ro"]
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("agents.support.tools[0]") && run.stderr.contains("\"PLUGIN/*\""),
        "{run:#?}"
    );
    let run = ws.call(
        "support",
        "files",
        "read",
        r#"{"source":"handbook","path":"a.md"}"#,
    );
    run.assert_code(7);
    assert!(
        run.stdout.is_empty() && run.stderr.contains("agents.support.tools[0]"),
        "{run:#?}"
    );
}

#[test]
fn a_bare_source_grant_reads_but_does_not_write() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [plugins.files]
        path = "{plugins}/files.wasm"
        max = ["dir:*:rw"]
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        [agents.support]
        tools = ["files/*"]
        grants = ["handbook"]
        "#,
    );
    ws.call(
        "support",
        "files",
        "read",
        r#"{"source":"handbook","path":"a.md"}"#,
    )
    .assert_code(0);
    ws.call(
        "support",
        "files",
        "write",
        r#"{"source":"handbook","path":"new.md","text":"x"}"#,
    )
    .assert_fails_with(3, "new.md");
    assert!(!ws.path().join("handbook/new.md").exists());
}

#[test]
fn a_dir_source_holding_the_config_file_is_warned_about() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [sources.everything]
        kind = "dir"
        path = "."
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("warning: sources.everything.path")
                && l.contains("this config file")),
        "{run:#?}"
    );
}

#[test]
fn an_audit_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let ws = Workspace::new();
    let key = ws.write("secrets/audit.key", &"k".repeat(40));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    ws.config(
        r#"
        [state]
        audit_key_file = "secrets/audit.key"
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(
        run.stderr.contains("warning: state.audit_key_file") && run.stderr.contains("chmod 600"),
        "{run:#?}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(0);
    assert!(!run.stderr.contains("warning"), "{run:#?}");
}

#[test]
fn a_source_variable_holding_a_malformed_postgres_url_is_refused_by_the_check() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [sources.crm]
        kind = "postgres"
        url_env = "CRM_DATABASE_URL"
        "#,
    );
    let check = |url: &str| {
        ws.warden_with_env(
            &["config", "check", "--config", "warden.toml"],
            &[("CRM_DATABASE_URL", url)],
        )
    };
    let run = check("postgres://admin:hunter2@db.internal:notaport/crm");
    run.assert_code(7);
    assert!(
        run.stderr.contains("sources.crm.url_env")
            && run.stderr.contains("is not a PostgreSQL URL"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    check("postgres://warden@127.0.0.1:1/crm").assert_code(0);
}

#[test]
fn a_malformed_postgres_state_url_is_refused_by_the_check() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [state]
        url = "postgres://warden@db.internal:notaport/state"
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("state.url") && run.stderr.contains("not a PostgreSQL URL"),
        "{run:#?}"
    );
}

#[test]
fn header_variables_and_keys_the_host_could_not_send_are_refused_by_the_check() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [sources.api]
        kind = "http"
        allow = ["https://api.example.com/v2/*"]
        headers = { Authorization = "env:API_TOKEN", "Bad Name" = "x" }
        [models.fast]
        backend = "openai"
        model = "gpt-4.1-mini"
        api_key_env = "API_TOKEN"
        headers = { X-Team = "env:API_TOKEN" }
        "#,
    );
    // A trailing newline, as `echo` leaves it: no request could carry it.
    let run = ws.warden_with_env(
        &["config", "check", "--config", "warden.toml"],
        &[("API_TOKEN", "tok-secret-123\n")],
    );
    run.assert_code(7);
    for at in [
        "sources.api.headers.Authorization",
        "sources.api.headers.Bad Name",
        "models.fast.api_key_env",
        "models.fast.headers.X-Team",
    ] {
        assert!(run.stderr.contains(at), "{at}: {run:#?}");
    }
    assert!(!run.stderr.contains("tok-secret"), "{run:#?}");
}

#[test]
fn a_key_of_another_source_kind_is_named_with_the_fix() {
    let ws = Workspace::new();
    ws.write("handbook/a.md", "a");
    ws.config(
        r#"
        [sources.handbook]
        kind = "dir"
        path = "handbook"
        allow = ["https://api.example.com/*"]
        timeout_ms = 100
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    for key in ["allow", "timeout_ms"] {
        assert!(
            run.stderr.contains(&format!(
                "sources.handbook.{key}: `{key}` does not apply to a dir source; remove it"
            )),
            "{key}: {run:#?}"
        );
    }
}

#[test]
fn the_state_url_variable_is_checked_without_echoing_it() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [state]
        url_env = "WARDEN_STATE_URL"
        "#,
    );
    let check = |env: &[(&str, &str)]| {
        ws.warden_with_env(&["config", "check", "--config", "warden.toml"], env)
    };
    // Named but not set: start-up could not open the store, so the check says so.
    let run = check(&[]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("state.url_env") && run.stderr.contains("not set"),
        "{run:#?}"
    );
    // Set to a malformed PostgreSQL URL: refused, and the password is never shown.
    let run = check(&[(
        "WARDEN_STATE_URL",
        "postgres://admin:hunter2@db.internal:notaport/state",
    )]);
    run.assert_code(7);
    assert!(
        run.stderr.contains("state.url_env") && run.stderr.contains("not a PostgreSQL URL"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    // Not a state URL at all: refused, again without the password.
    let run = check(&[("WARDEN_STATE_URL", "mysql://admin:hunter2@db/state")]);
    run.assert_code(7);
    assert!(run.stderr.contains("not a state URL"), "{run:#?}");
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
    check(&[("WARDEN_STATE_URL", "postgres://warden@127.0.0.1:1/state")]).assert_code(0);

    // A value pasted where the variable's name belongs is refused and never echoed.
    ws.config(
        r#"
        [state]
        url_env = "postgres://admin:hunter2@db/state"
        "#,
    );
    let run = check(&[]);
    run.assert_code(7);
    assert!(run.stderr.contains("state.url_env"), "{run:#?}");
    assert!(!run.stderr.contains("hunter2"), "{run:#?}");
}

#[test]
fn memory_limits_and_own_namespace_grants_are_checked_at_their_keys() {
    let ws = Workspace::new();
    ws.config(
        r#"
        [memory]
        max_value_kb = 512
        max_namespace_mb = 0
        [agents.support]
        grants = ["memory:session:rw", "memory:agent", "memory:team:rw"]
        "#,
    );
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    for key in [
        "memory.max_value_kb",
        "memory.max_namespace_mb",
        "agents.support.grants[0]",
        "agents.support.grants[1]",
    ] {
        assert!(run.stderr.contains(key), "missing {key}: {run:#?}");
    }
    assert!(
        run.stderr.contains("own memory namespace") && run.stderr.contains("remove this entry"),
        "{run:#?}"
    );
    assert!(!run.stderr.contains("grants[2]"), "{run:#?}");
    // The keys under [memory] are known; others are not.
    ws.config("[memory]\nmax_value_mb = 1\n");
    let run = ws.warden(&["config", "check", "--config", "warden.toml"]);
    run.assert_code(7);
    assert!(run.stderr.contains("max_value_mb"), "{run:#?}");
}
