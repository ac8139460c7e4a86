//! Compiled components on disk, keyed by the component's sha256 and the engine's settings, so
//! that the second start of a large plugin takes milliseconds instead of seconds.
//!
//! Only this host writes the cache folder, and loading a compiled artifact trusts it, so the
//! folder is created private to the user. An artifact that fails to load is compiled again.

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
        if path.exists()
            && let Err(why) = writable_by_others(&self.dir).and_then(|()| writable_by_others(&path))
        {
            tracing::warn!(
                "not loading {} from the compile cache: {why}",
                path.display()
            );
        } else if path.exists() {
            // SAFETY: the artifact was written by `precompile_component` of an engine with the
            // same compatibility hash, into a folder only this user can write.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                // The artifact is sound; the pool is too small for it, and compiling again
                // would not change that.
                Err(e) if super::pool_limit_problem(&e).is_some() => return Err(compile_error(&e)),
                Err(e) => tracing::warn!(
                    "compile cache entry {} is unusable ({e}); recompiling",
                    path.display()
                ),
            }
        }
        on_compile();
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| compile_error(&e))?;
        if let Err(e) = self.store(&path, &compiled) {
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
/// never loaded: the folder and the file must not be writable by group or others.
fn writable_by_others(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
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
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
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
