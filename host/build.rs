//! Builds the shipped plugins in `plugins/` for `wasm32-wasip2`, so that a plain
//! `cargo build --release` at the root produces the `warden` binary *and* the plugins.
//!
//! The plugins are a separate cargo workspace (they target wasm, the host does not), built into
//! `target/wasm` so the nested cargo never contends for the outer build's lock. The built
//! components are copied to `target/plugins/<name>.wasm`, and that folder is passed to the
//! crate as `WARDEN_BUILT_PLUGINS` for the tests and benchmarks.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() {
    let host_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = host_dir
        .parent()
        .expect("host/ sits inside the workspace root")
        .to_path_buf();
    let target_root = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let shipped = target_root.join("plugins");
    println!("cargo:rustc-env=WARDEN_BUILT_PLUGINS={}", shipped.display());
    println!("cargo:rerun-if-changed={}", root.join("plugins").display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=WARDEN_SKIP_PLUGIN_BUILD");

    if env::var_os("WARDEN_SKIP_PLUGIN_BUILD").is_some() {
        println!(
            "cargo:warning=WARDEN_SKIP_PLUGIN_BUILD is set: the shipped plugins were not rebuilt"
        );
    } else {
        add_wasm_target();
        let wasm_target_dir = target_root.join("wasm");
        build_plugins(&root.join("plugins/Cargo.toml"), &wasm_target_dir);
        copy_components(&wasm_target_dir.join(WASM_TARGET).join("release"), &shipped);
    }
    embed_shipped(&shipped);
}

/// The plugins that ship inside the `warden` binary, served as `builtin:NAME`.
const EMBEDDED: &[&str] = &["text-tools", "files", "summarize", "sql", "http-get"];

/// Writes `$OUT_DIR/builtin_plugins.rs`: the shipped components as `include_bytes!`, so a
/// binary copied anywhere serves them. A component that was not built (the build was skipped)
/// is left out, and `builtin:NAME` then says it is missing.
fn embed_shipped(shipped: &Path) {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut code = String::from("/// The shipped plugins: name and component bytes.\n");
    code.push_str("pub static EMBEDDED: &[(&str, &[u8])] = &[\n");
    for name in EMBEDDED {
        let file = shipped.join(format!("{name}.wasm"));
        if file.is_file() {
            code.push_str(&format!(
                "    ({name:?}, include_bytes!({:?})),\n",
                file.display().to_string()
            ));
        }
    }
    code.push_str("];\n");
    fs::write(out.join("builtin_plugins.rs"), code).expect("write builtin_plugins.rs");
}

/// rustup does not add the targets listed in rust-toolchain.toml to a toolchain that is already
/// installed, so a fresh machine needs this before the first wasm build. It is idempotent.
fn add_wasm_target() {
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        rustup.arg("--toolchain").arg(toolchain);
    }
    match rustup.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => println!(
            "cargo:warning=`rustup target add {WASM_TARGET}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => {
            println!("cargo:warning=rustup not found ({e}); assuming {WASM_TARGET} is installed")
        }
    }
}

fn build_plugins(manifest: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        WASM_TARGET,
        "--manifest-path",
    ])
    .arg(manifest)
    .arg("--target-dir")
    .arg(target_dir);
    // The outer cargo's settings describe the host build; the wasm build must not inherit them
    // (a clippy wrapper, host RUSTFLAGS, a forced target, coverage instrumentation...).
    for (key, _) in env::vars_os() {
        let key = key.to_string_lossy();
        let inherited_setting = key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "CARGO_ENCODED_RUSTFLAGS"
            || key == "CARGO_TARGET_DIR"
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_PKG_")
            || key == "CARGO_MANIFEST_DIR"
            || key == "CARGO_MANIFEST_PATH"
            || key == "CARGO_PRIMARY_PACKAGE";
        if inherited_setting {
            cmd.env_remove(key.as_ref());
        }
    }
    let out = cmd.output().expect("failed to run cargo for the plugins");
    if !out.status.success() {
        panic!(
            "building the plugins for {WASM_TARGET} failed:\n{}\n\
             Fix the plugin, or set WARDEN_SKIP_PLUGIN_BUILD=1 to build the host alone.",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Copies `foo_bar.wasm` to `<dest>/foo-bar.wasm`, the name the plugin is known by.
fn copy_components(built: &Path, dest: &Path) {
    fs::create_dir_all(dest).expect("create target/plugins");
    let entries = fs::read_dir(built).unwrap_or_else(|e| panic!("read {}: {e}", built.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension() != Some(OsStr::new("wasm")) {
            continue;
        }
        let stem = path.file_stem().and_then(OsStr::to_str).unwrap_or_default();
        let name = format!("{}.wasm", stem.replace('_', "-"));
        let to = dest.join(name);
        let same = fs::read(&to).ok() == fs::read(&path).ok();
        if !same {
            fs::copy(&path, &to)
                .unwrap_or_else(|e| panic!("copy {} to {}: {e}", path.display(), to.display()));
        }
    }
}
