//! Compiled components on disk, keyed by the component's sha256 and the engine's settings, so
//! that the second start of a large plugin takes milliseconds instead of seconds.
//!
//! Loading a compiled artifact runs its machine code, so an artifact is loaded only when it and
//! its folder are owned by the user Warden runs as and writable by no one else, and neither is a
//! symlink. Otherwise the plugin is compiled again and the log says why. The folder is created
//! 0700 and each artifact 0600, whatever the umask. An artifact that fails to load is compiled
//! again.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::error::CallError;

/// A folder of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
}

impl CompileCache {
    /// A cache in `dir` for artifacts compatible with `engine`.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        CompileCache {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        }
    }

    /// `$WARDEN_CACHE_DIR`, else `$XDG_CACHE_HOME/warden`, else `~/.cache/warden`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("WARDEN_CACHE_DIR") {
            return Some(PathBuf::from(dir));
        }
        if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
            return Some(PathBuf::from(dir).join("warden"));
        }
        std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/warden"))
    }

    /// Where the artifact for a component with this sha256 lives.
    pub fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
        on_compile: impl FnOnce(),
    ) -> Result<Component, CallError> {
        let path = self.artifact_path(sha256);
        // A folder another user controls is neither read nor written: they could swap an
        // artifact in after it was written.
        let folder_trusted = match trusted(&self.dir) {
            Ok(()) => true,
            Err(why) if self.dir.exists() => {
                tracing::warn!(
                    "not using the compile cache at {}: {why}; compiling in memory",
                    self.dir.display()
                );
                false
            }
            Err(_) => true,
        };
        if folder_trusted && path.exists() {
            match trusted(&path) {
                Err(why) => tracing::warn!(
                    "not loading {} from the compile cache: {why}; compiling again",
                    path.display()
                ),
                // SAFETY: the artifact was written by `precompile_component` of an engine with
                // the same compatibility hash, into a folder only this user can write, and
                // only this user can have written the file.
                Ok(()) => match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(component) => return Ok(component),
                    // The artifact is sound; the pool is too small for it, and compiling again
                    // would not change that.
                    Err(e) if super::pool_limit_problem(&e).is_some() => {
                        return Err(compile_error(&e));
                    }
                    Err(e) => tracing::warn!(
                        "compile cache entry {} is unusable ({e}); recompiling",
                        path.display()
                    ),
                },
            }
        }
        let compiled = super::noting_slow(|| engine.precompile_component(bytes), on_compile)
            .map_err(|e| compile_error(&e))?;
        if folder_trusted && let Err(e) = self.store(&path, &compiled) {
            tracing::warn!(
                "cannot write the compile cache at {}: {e}",
                self.dir.display()
            );
        }
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(|e| compile_error(&e))
    }

    /// Writes through a temporary file and a rename, so a crash or a concurrent writer never
    /// leaves a torn artifact behind.
    fn store(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        let mut tmp = tempfile_in(&self.dir)?;
        tmp.1.write_all(compiled)?;
        tmp.1.sync_all()?;
        fs::rename(&tmp.0, path)
    }
}

/// Loading an artifact runs its machine code, so one that another user could have written is
/// never loaded: the folder and the file must be owned by the user Warden runs as, must not be
/// writable by group or others, and must not be symlinks.
fn trusted(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = fs::symlink_metadata(path).map_err(|e| e.to_string())?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{} is a symlink; remove it, and Warden writes a real one",
                path.display()
            ));
        }
        let me = current_uid()?;
        if meta.uid() != me {
            return Err(format!(
                "{} is owned by uid {}, not by uid {me} that Warden runs as; remove it, or \
                 `chown` it to this user",
                path.display(),
                meta.uid()
            ));
        }
        let mode = meta.mode();
        if mode & 0o022 != 0 {
            return Err(format!(
                "{} is writable by other users (mode {:o}); make it private with `chmod go-w`",
                path.display(),
                mode & 0o777
            ));
        }
    }
    Ok(())
}

/// The effective uid of this process: the owner of `/proc/self`, or else of a file it creates.
#[cfg(unix)]
fn current_uid() -> Result<u32, String> {
    use std::os::unix::fs::MetadataExt;
    static UID: std::sync::OnceLock<Result<u32, String>> = std::sync::OnceLock::new();
    UID.get_or_init(|| {
        if let Ok(meta) = fs::metadata("/proc/self") {
            return Ok(meta.uid());
        }
        let (probe, _file) = tempfile_in(&std::env::temp_dir())
            .map_err(|e| format!("cannot tell which user Warden runs as: {e}"))?;
        let uid = fs::metadata(&probe)
            .map(|m| m.uid())
            .map_err(|e| e.to_string());
        let _ = fs::remove_file(&probe);
        uid
    })
    .clone()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let path = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    // Explicitly private: under a umask such as 002 the default would be 0664, which the next
    // start then refuses to load.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok((path, file))
}

/// A component that does not compile: not a component at all, one wasmtime rejects, or one too
/// big for the instance pool.
pub(crate) fn compile_error(e: &wasmtime::Error) -> CallError {
    if let Some(problem) = super::pool_limit_problem(e) {
        return CallError::unusable(problem);
    }
    CallError::unusable(format!(
        "the file is not a valid WebAssembly component: {e:#}"
    ))
}
