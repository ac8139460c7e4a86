//! The `files` plugin: list, read, search and write files in the directory sources an operator
//! granted. Each granted source is a preopened directory at `/<source>`. The plugin passes the
//! caller's paths through as they are: the host's sandbox is what refuses `..`, absolute paths,
//! symlinks that lead outside and writes through a read-only grant.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use warden_sdk::prelude::*;

/// The most bytes `read` returns, and the largest file `search` looks into.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The most matches `search` returns.
const MAX_MATCHES: usize = 200;
/// The most entries `list` returns.
const MAX_ENTRIES: usize = 1000;

/// Where in a granted directory source.
#[derive(Deserialize, JsonSchema)]
struct ListInput {
    /// The directory source, by its name in the operator's config.
    source: String,
    /// A folder inside the source, relative to its root; the root when left out.
    #[serde(default)]
    path: Option<String>,
}

/// One entry of a folder.
#[derive(Serialize, JsonSchema)]
struct Entry {
    /// The entry's name.
    name: String,
    /// `file`, `dir` or `other`.
    kind: String,
    /// Size in bytes, for files.
    size: Option<u64>,
}

/// A folder's entries, sorted by name.
#[derive(Serialize, JsonSchema)]
struct ListOutput {
    entries: Vec<Entry>,
    /// True when more entries exist than were returned.
    truncated: bool,
}

/// A file in a granted directory source.
#[derive(Deserialize, JsonSchema)]
struct ReadInput {
    /// The directory source, by its name in the operator's config.
    source: String,
    /// The file, relative to the source's root.
    path: String,
}

/// A file's text.
#[derive(Serialize, JsonSchema)]
struct ReadOutput {
    /// The text (invalid UTF-8 is replaced).
    text: String,
    /// True when the file is larger than 1 MiB and only its start was returned.
    truncated: bool,
}

/// What to look for, where.
#[derive(Deserialize, JsonSchema)]
struct SearchInput {
    /// The directory source, by its name in the operator's config.
    source: String,
    /// Text to find, case-insensitively, in every file of the source.
    query: String,
}

/// One line that contains the query.
#[derive(Serialize, JsonSchema)]
struct Match {
    /// The file, relative to the source's root.
    path: String,
    /// The line number, from 1.
    line: u64,
    /// The line's text.
    text: String,
}

/// Lines that contain the query.
#[derive(Serialize, JsonSchema)]
struct SearchOutput {
    matches: Vec<Match>,
    /// True when the search stopped at 200 matches.
    truncated: bool,
}

/// A file to write in a directory source granted read-write.
#[derive(Deserialize, JsonSchema)]
struct WriteInput {
    /// The directory source, by its name in the operator's config.
    source: String,
    /// The file, relative to the source's root; created or replaced.
    path: String,
    /// The text to write.
    text: String,
}

/// What was written.
#[derive(Serialize, JsonSchema)]
struct WriteOutput {
    /// Bytes written.
    bytes: u64,
}

fn root(source: &str) -> Result<PathBuf, ToolError> {
    if source.is_empty() || source.contains('/') {
        return Err(ToolError::InvalidInput(format!(
            "`{source}` is not a source name"
        )));
    }
    let root = PathBuf::from(format!("/{source}"));
    match fs::metadata(&root) {
        Ok(m) if m.is_dir() => Ok(root),
        _ => Err(ToolError::Denied(format!(
            "directory source `{source}` is not available to this call: it is not granted to the agent, \
             or this plugin may not use it; an operator allows it with `{source}:ro` in the agent's grants \
             and `dir:{source}:ro` (or `dir:*:ro`) in plugins.files.max"
        ))),
    }
}

fn io_error(what: &str, path: &str, e: std::io::Error) -> ToolError {
    match e.kind() {
        ErrorKind::NotFound => ToolError::InvalidInput(format!("{what} `{path}`: not found")),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
            ToolError::Denied(format!("{what} `{path}`: refused by the sandbox ({e})"))
        }
        _ => ToolError::Failed(format!("{what} `{path}`: {e}")),
    }
}

fn join(root: &Path, path: &str) -> PathBuf {
    // Deliberately no clean-up of `..` or leading `/`: the sandbox is the check.
    PathBuf::from(format!("{}/{}", root.display(), path))
}

fn list(_ctx: &Context, input: ListInput) -> Result<ListOutput, ToolError> {
    let root = root(&input.source)?;
    let rel = input.path.unwrap_or_default();
    let dir = if rel.is_empty() {
        root
    } else {
        join(&root, &rel)
    };
    let read = fs::read_dir(&dir).map_err(|e| io_error("folder", &rel, e))?;
    let mut entries = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| io_error("folder", &rel, e))?;
        let meta = entry.metadata().ok();
        let kind = match &meta {
            Some(m) if m.is_dir() => "dir",
            Some(m) if m.is_file() => "file",
            _ => "other",
        };
        let size = meta.as_ref().filter(|m| m.is_file()).map(|m| m.len());
        entries.push(Entry {
            name: entry.file_name().to_string_lossy().into_owned(),
            kind: kind.into(),
            size,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = entries.len() > MAX_ENTRIES;
    entries.truncate(MAX_ENTRIES);
    Ok(ListOutput { entries, truncated })
}

fn read(_ctx: &Context, input: ReadInput) -> Result<ReadOutput, ToolError> {
    let root = root(&input.source)?;
    let path = join(&root, &input.path);
    let bytes = read_capped(&path).map_err(|e| io_error("file", &input.path, e))?;
    let truncated = bytes.len() as u64 > MAX_FILE_BYTES;
    let end = bytes.len().min(MAX_FILE_BYTES as usize);
    Ok(ReadOutput {
        text: String::from_utf8_lossy(&bytes[..end]).into_owned(),
        truncated,
    })
}

fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    fs::File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn search(_ctx: &Context, input: SearchInput) -> Result<SearchOutput, ToolError> {
    if input.query.is_empty() {
        return Err(ToolError::InvalidInput("`query` is empty".into()));
    }
    let root = root(&input.source)?;
    let needle = input.query.to_lowercase();
    let mut matches = Vec::new();
    let mut stack = vec![root.clone()];
    let mut truncated = false;
    'walk: while let Some(dir) = stack.pop() {
        let Ok(read) = fs::read_dir(&dir) else {
            continue;
        };
        let mut children: Vec<_> = read.flatten().collect();
        children.sort_by_key(|e| e.file_name());
        for entry in children {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let Ok(text) = String::from_utf8(bytes) else {
                continue;
            };
            let rel = path
                .strip_prefix(&root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            for (i, line) in text.lines().enumerate() {
                if line.to_lowercase().contains(&needle) {
                    if matches.len() == MAX_MATCHES {
                        truncated = true;
                        break 'walk;
                    }
                    matches.push(Match {
                        path: rel.clone(),
                        line: i as u64 + 1,
                        text: line.chars().take(500).collect(),
                    });
                }
            }
        }
    }
    Ok(SearchOutput { matches, truncated })
}

fn write(_ctx: &Context, input: WriteInput) -> Result<WriteOutput, ToolError> {
    let root = root(&input.source)?;
    let path = join(&root, &input.path);
    fs::write(&path, input.text.as_bytes()).map_err(|e| io_error("file", &input.path, e))?;
    Ok(WriteOutput {
        bytes: input.text.len() as u64,
    })
}

fn tools() -> Tools {
    Tools::new()
        .tool("list", "Lists the files and folders of a folder in a directory source the operator granted.", list)
        .tool("read", "Reads a text file from a directory source the operator granted (at most 1 MiB).", read)
        .tool(
            "search",
            "Finds the lines that contain a text, case-insensitively, in every file of a directory source, \
             with their path and line number (at most 200 matches).",
            search,
        )
        .tool("write", "Writes a text file in a directory source granted read-write, replacing it if it exists.", write)
}

warden_sdk::export_plugin!(tools);
