//! The on-disk compile cache: the first call writes a compiled artifact, later calls load it
//! instead of compiling again, and an artifact that does not load is compiled again.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{Run, plugin_path, warden};

/// `warden call text-tools echo` with its own cache folder.
fn echo_with_cache(cache: &Path) -> Run {
    let path = plugin_path("text-tools");
    warden(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new(r#"{"text":"cached"}"#),
        OsStr::new("--cache-dir"),
        cache.as_os_str(),
    ])
}

fn artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(cache)
        .unwrap_or_else(|e| panic!("read {}: {e}", cache.display()))
        .map(|entry| entry.expect("a cache entry").path())
        .filter(|p| p.extension() == Some(OsStr::new("cwasm")))
        .collect();
    found.sort();
    found
}

#[test]
fn a_call_writes_a_compiled_artifact_that_the_next_call_reuses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");

    let first = echo_with_cache(&cache);
    first.assert_code(0);
    let written = artifacts(&cache);
    assert_eq!(written.len(), 1, "one artifact for one plugin: {written:?}");
    let before = fs::metadata(&written[0]).expect("stat the artifact");

    let second = echo_with_cache(&cache);
    second.assert_code(0);
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(artifacts(&cache), written);
    // A recompile writes a new file and renames it over the old one: a new inode.
    let after = fs::metadata(&written[0]).expect("stat the artifact");
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino(), "the second call compiled again");
    }
    assert_eq!(
        before.modified().ok(),
        after.modified().ok(),
        "the second call compiled again"
    );
}

#[test]
fn an_artifact_that_does_not_load_is_compiled_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    echo_with_cache(&cache).assert_code(0);
    let written = artifacts(&cache);
    assert_eq!(written.len(), 1, "{written:?}");
    fs::write(&written[0], b"this is not a compiled component").expect("corrupt the artifact");

    let run = echo_with_cache(&cache);
    run.assert_code(0).assert_no_panic();
    assert_eq!(run.stdout, "{\"text\":\"cached\"}\n");
    let rewritten = fs::read(&written[0]).expect("read the artifact");
    assert_ne!(
        rewritten, b"this is not a compiled component",
        "the artifact was not replaced"
    );
}

#[test]
fn no_cache_leaves_the_cache_folder_untouched() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = dir.path().join("cache");
    let path = plugin_path("text-tools");
    let run = warden(&[
        OsStr::new("call"),
        path.as_os_str(),
        OsStr::new("echo"),
        OsStr::new("--input"),
        OsStr::new(r#"{"text":"uncached"}"#),
        OsStr::new("--cache-dir"),
        cache.as_os_str(),
        OsStr::new("--no-cache"),
    ]);
    run.assert_code(0);
    assert!(!cache.exists(), "--no-cache wrote to {}", cache.display());
}

#[cfg(unix)]
#[test]
fn the_cache_folder_is_created_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    // Loading an artifact trusts it, so no other user may write there.
    let cache = dir.path().join("cache");
    echo_with_cache(&cache).assert_code(0);
    let mode = fs::metadata(&cache)
        .expect("stat the cache")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700, "the cache folder has mode {mode:o}");
}

#[test]
fn an_artifact_in_a_folder_others_can_write_is_never_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("shared-cache");
    echo_with_cache(&cache).assert_code(0);
    assert_eq!(artifacts(&cache).len(), 1);
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o777)).unwrap();
    let run = echo_with_cache(&cache);
    run.assert_code(0);
    assert!(run.stderr.contains("writable by other users"), "{run:#?}");
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
fn inode_of(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).expect("stat").ino()
}

#[cfg(unix)]
#[test]
fn an_artifact_others_can_write_in_a_private_folder_is_never_loaded() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    echo_with_cache(&cache).assert_code(0);
    let artifact = artifacts(&cache).remove(0);
    assert_eq!(mode_of(&cache), 0o700);
    // Only the file is open to others: checking the folder alone would load it.
    fs::set_permissions(&artifact, fs::Permissions::from_mode(0o666)).unwrap();
    let before = inode_of(&artifact);
    let run = echo_with_cache(&cache);
    run.assert_code(0);
    assert!(run.stderr.contains("writable by other users"), "{run:#?}");
    assert_ne!(
        inode_of(&artifact),
        before,
        "the artifact was not compiled again"
    );
    assert_eq!(mode_of(&artifact), 0o600);
}

/// `chown` to `nobody` needs root; the tests run as root here and in CI.
#[cfg(unix)]
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

const NOBODY: u32 = 65534;

#[cfg(unix)]
#[test]
fn an_artifact_owned_by_another_user_is_never_loaded() {
    assert!(is_root(), "this test changes owners, which needs root");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    echo_with_cache(&cache).assert_code(0);
    let artifact = artifacts(&cache).remove(0);
    std::os::unix::fs::chown(&artifact, Some(NOBODY), Some(NOBODY)).unwrap();
    let before = inode_of(&artifact);
    let run = echo_with_cache(&cache);
    run.assert_code(0);
    assert!(
        run.stderr.contains(&format!("owned by uid {NOBODY}")),
        "{run:#?}"
    );
    assert_eq!(run.stdout, "{\"text\":\"cached\"}\n");
    assert_ne!(
        inode_of(&artifact),
        before,
        "the artifact was not compiled again"
    );
}

#[cfg(unix)]
#[test]
fn a_cache_folder_owned_by_another_user_is_neither_loaded_nor_written() {
    use std::os::unix::fs::PermissionsExt;
    assert!(is_root(), "this test changes owners, which needs root");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    echo_with_cache(&cache).assert_code(0);
    // The attack of issue 8: a folder owned by `nobody`, 0755, its files 0644.
    let artifact = artifacts(&cache).remove(0);
    fs::set_permissions(&artifact, fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&artifact, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&cache, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&cache, Some(NOBODY), Some(NOBODY)).unwrap();
    let before = inode_of(&artifact);
    let run = echo_with_cache(&cache);
    run.assert_code(0);
    assert!(
        run.stderr.contains("not using the compile cache")
            && run.stderr.contains(&format!("owned by uid {NOBODY}")),
        "{run:#?}"
    );
    assert_eq!(run.stdout, "{\"text\":\"cached\"}\n");
    assert_eq!(
        inode_of(&artifact),
        before,
        "the foreign folder was written"
    );
}

#[cfg(unix)]
#[test]
fn artifacts_are_written_private_under_a_group_writable_umask() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = plugin_path("text-tools");
    let under_umask_002 = || {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(r#"umask 002; exec "$@""#)
            .arg("sh")
            .arg(crate::common::WARDEN)
            .args([OsStr::new("call"), path.as_os_str(), OsStr::new("echo")])
            .args([OsStr::new("--input"), OsStr::new(r#"{"text":"cached"}"#)])
            .args([OsStr::new("--cache-dir"), cache.as_os_str()])
            .env_remove("WARDEN_LOG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        crate::common::run_command(cmd, None)
    };
    under_umask_002().assert_code(0);
    let artifact = artifacts(&cache).remove(0);
    assert_eq!(mode_of(&artifact), 0o600);
    assert_eq!(mode_of(&cache), 0o700);
    let before = inode_of(&artifact);
    let run = under_umask_002();
    run.assert_code(0);
    assert!(!run.stderr.contains("not loading"), "{run:#?}");
    assert_eq!(
        inode_of(&artifact),
        before,
        "the second start compiled again"
    );
}
