//! Files that are not usable plugins are refused at load with exit 6 and a message that says
//! what is wrong with them, before anything runs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::common::{Run, plugin_path, warden};

/// `warden call FILE echo` on a file that is not a usable plugin.
fn call_file(file: &Path) -> Run {
    warden(&[
        OsStr::new("call"),
        file.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new(r#"{"text":"hi"}"#),
    ])
}

fn write_temp(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write the test file");
    path
}

#[test]
fn refuses_a_core_module_as_not_a_component() {
    let dir = tempfile::tempdir().expect("temp dir");
    let module = wat::parse_str("(module)").expect("a core module");
    let path = write_temp(&dir, "core.wasm", &module);
    call_file(&path).assert_fails_with(6, "core WebAssembly module, not a component");
}

#[test]
fn refuses_a_component_of_another_world_naming_the_missing_export() {
    call_file(&plugin_path("cli-hello")).assert_fails_with(6, "warden:plugin/tool@0.1.0");
}

#[test]
fn refuses_a_component_importing_what_the_host_does_not_provide() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The right export, so that the import is what is wrong with it.
    let component = wat::parse_str(
        r#"(component
             (import "wasi:keyvalue/store@0.2.0-draft" (instance))
             (instance $tool)
             (export "warden:plugin/tool@0.1.0" (instance $tool)))"#,
    )
    .expect("a component");
    let path = write_temp(&dir, "wants-keyvalue.wasm", &component);
    let run = call_file(&path);
    run.assert_fails_with(6, "wasi:keyvalue/store@0.2.0-draft");
    assert!(run.error_line().contains("does not provide"), "{run:#?}");
}

#[test]
fn refuses_a_file_of_random_bytes_as_not_webassembly() {
    let dir = tempfile::tempdir().expect("temp dir");
    // xorshift: random-looking, and the same on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    assert_ne!(&bytes[..4], b"\0asm");
    let path = write_temp(&dir, "corrupt.wasm", &bytes);
    call_file(&path).assert_fails_with(6, "not a WebAssembly file");
}

#[test]
fn refuses_a_truncated_component_as_invalid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let whole = std::fs::read(plugin_path("text-tools")).expect("read text-tools.wasm");
    let path = write_temp(&dir, "truncated.wasm", &whole[..whole.len() / 2]);
    call_file(&path).assert_fails_with(6, "not a valid WebAssembly component");
}

#[test]
fn refuses_a_missing_file_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("not-there.wasm");
    let run = call_file(&path);
    run.assert_fails_with(6, "cannot read plugin file");
    assert!(run.error_line().contains("not-there.wasm"), "{run:#?}");
}

#[test]
fn a_plugin_file_reached_through_a_symlink_is_refused() {
    // A plugin granted a folder read-write could plant such a link where a plugin is expected.
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("text-tools.wasm");
    std::os::unix::fs::symlink(plugin_path("text-tools"), &link).unwrap();
    call_file(&link)
        .assert_fails_with(6, "symbolic link")
        .assert_no_panic();
}
