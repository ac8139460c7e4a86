//! What an author meets when a plugin cannot be used: an import the host does not provide (a
//! real Python component), a contract version newer than the host's, and a component too big
//! for the instance pool. Each is refused with exit 6 and a message that says what to change.

use std::path::{Path, PathBuf};

use crate::common::warden;
use crate::toolchains::{self, Lang, Sources};

/// A Python plugin that imports `wasi:config/store`, which Warden does not provide.
const PYTHON_UNPROVIDED: Sources = Sources {
    name: "python-unprovided",
    dir: "tests/authors/fixtures/python-unprovided",
    lang: Lang::Python,
};

/// Writes the component of `wat` into `dir` as `NAME.wasm`.
fn component(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let bytes = wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write the component");
    path
}

#[test]
fn a_python_component_importing_an_interface_the_host_lacks_is_refused_naming_it() {
    let plugin = toolchains::build(&PYTHON_UNPROVIDED);
    let run = warden(&["call".as_ref(), plugin.as_os_str(), "greeting".as_ref()]);
    run.assert_fails_with(6, "wasi:config/store@0.2.0-draft");

    // inspect shows it too, as the one import this host does not provide.
    let run = warden(&["plugin".as_ref(), "inspect".as_ref(), plugin.as_os_str()]);
    run.assert_code(6);
    let refused: Vec<&str> = run.stdout.lines().filter(|l| l.contains("[NO]")).collect();
    assert_eq!(refused.len(), 1, "{run:#?}");
    assert!(
        refused[0].contains("wasi:config/store@0.2.0-draft"),
        "{run:#?}"
    );
}

#[test]
fn a_plugin_built_against_a_newer_contract_is_told_which_versions_the_host_supports() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let plugin = component(
        tmp.path(),
        "from-the-future",
        r#"(component
            (instance $tool)
            (export "warden:plugin/tool@0.2.0" (instance $tool)))"#,
    );
    let run = warden(&["call".as_ref(), plugin.as_os_str(), "echo".as_ref()]);
    run.assert_fails_with(6, "warden:plugin/tool@0.2.0");
    assert!(
        run.error_line().contains("supports warden:plugin@0.1.0"),
        "{run:#?}"
    );
}

#[test]
fn inspect_names_the_pool_limit_a_component_exceeds() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let instances = "(core instance (instantiate $m))\n".repeat(65);
    let memories: String = (0..17)
        .map(|i| format!("(core module $m{i} (memory 1)) (core instance (instantiate $m{i}))\n"))
        .collect();
    let cases = [
        (
            "many-instances",
            format!("(component (core module $m) {instances})"),
            "core instances per component",
        ),
        (
            "many-memories",
            format!("(component {memories})"),
            "linear memories per component",
        ),
        (
            "huge-table",
            "(component (core module $m (table 100001 funcref)) (core instance (instantiate $m)))"
                .to_string(),
            "elements per table",
        ),
    ];
    for (name, wat, limit) in cases {
        let plugin = component(tmp.path(), name, &wat);
        let run = warden(&["plugin".as_ref(), "inspect".as_ref(), plugin.as_os_str()]);
        run.assert_fails_with(6, &format!("instance pool limit on {limit}"));
        assert!(
            run.error_line().contains("host/src/engine/mod.rs"),
            "{run:#?}"
        );
    }
}
