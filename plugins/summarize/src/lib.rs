//! The `summarize` plugin: one tool, `summarize`, that asks a model alias the operator granted
//! for a short summary of a text, or of a file in a granted directory source (a preopen at
//! `/<source>`, as the `files` plugin reads them). The model call goes through the host's
//! router, so grants, quotas, fallbacks and the audit apply; the plugin never sees a key.

use std::fs;
use std::io::{ErrorKind, Read};
use std::path::PathBuf;

use warden_sdk::model::{self, Message, Request};
use warden_sdk::prelude::*;

/// The most bytes of text the plugin sends to the model.
const MAX_TEXT_BYTES: usize = 256 * 1024;
/// The summary's length unless the input says otherwise.
const DEFAULT_MAX_WORDS: u32 = 120;

/// What to summarize, and with which model alias.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SummarizeInput {
    /// The text to summarize. Give either `text`, or `source` and `path`.
    #[serde(default)]
    text: Option<String>,
    /// A directory source, by its name in the operator's config, holding the file to summarize.
    #[serde(default)]
    source: Option<String>,
    /// The file, relative to the source's root.
    #[serde(default)]
    path: Option<String>,
    /// The model alias to use, from the operator's config (e.g. `fast`).
    model: String,
    /// About how many words the summary may have (default 120).
    #[serde(default)]
    #[schemars(range(min = 10, max = 2000))]
    max_words: Option<u32>,
}

/// The summary.
#[derive(Serialize, JsonSchema)]
struct SummarizeOutput {
    /// The model's summary.
    summary: String,
}

fn summarize(_ctx: &Context, input: SummarizeInput) -> Result<SummarizeOutput, ToolError> {
    let text = match (input.text, input.source, input.path) {
        (Some(text), None, None) => text,
        (None, Some(source), Some(path)) => read_source(&source, &path)?,
        (Some(_), _, _) => {
            return Err(ToolError::InvalidInput(
                "give either `text`, or `source` and `path`, not both".into(),
            ));
        }
        _ => {
            return Err(ToolError::InvalidInput(
                "give `text`, or `source` (a directory source) and `path` (a file in it)".into(),
            ));
        }
    };
    if text.trim().is_empty() {
        return Err(ToolError::InvalidInput(
            "there is no text to summarize".into(),
        ));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ToolError::InvalidInput(format!(
            "the text is {} bytes; this tool summarizes at most {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    let words = input.max_words.unwrap_or(DEFAULT_MAX_WORDS).clamp(10, 2000);
    let mut request = Request::new(
        input.model,
        vec![
            Message::system(format!(
                "You summarize documents. Answer with the summary only, in at most {words} words, \
                 in the language of the document. Keep names, numbers and dates exact."
            )),
            Message::user(text),
        ],
    );
    // About two tokens a word, with room for the words a model adds.
    request.max_tokens = Some(words * 2 + 64);
    request.temperature = Some(0.2);
    let response = model::complete(request)?;
    let summary = response.message.content.trim().to_string();
    if summary.is_empty() {
        return Err(ToolError::Failed(format!(
            "model `{}` returned no text (finish reason: {})",
            response.backend, response.finish_reason
        )));
    }
    Ok(SummarizeOutput { summary })
}

fn read_source(source: &str, path: &str) -> Result<String, ToolError> {
    if source.is_empty() || source.contains('/') {
        return Err(ToolError::InvalidInput(format!(
            "`{source}` is not a source name"
        )));
    }
    let root = PathBuf::from(format!("/{source}"));
    if !fs::metadata(&root).is_ok_and(|m| m.is_dir()) {
        return Err(ToolError::Denied(format!(
            "directory source `{source}` is not available to this call: an operator allows it with \
             `{source}:ro` in the agent's grants and `dir:{source}:ro` (or `dir:*:ro`) in plugins.summarize.max"
        )));
    }
    // The path goes through as given: the sandbox refuses `..` and links that lead outside.
    let file = PathBuf::from(format!("{}/{path}", root.display()));
    let mut bytes = Vec::new();
    fs::File::open(&file)
        .and_then(|f| f.take(MAX_TEXT_BYTES as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => ToolError::InvalidInput(format!("file `{path}`: not found")),
            ErrorKind::PermissionDenied => {
                ToolError::Denied(format!("file `{path}`: refused by the sandbox ({e})"))
            }
            _ => ToolError::Failed(format!("file `{path}`: {e}")),
        })?;
    String::from_utf8(bytes)
        .map_err(|_| ToolError::InvalidInput(format!("file `{path}` is not UTF-8 text")))
}

fn tools() -> Tools {
    Tools::new().tool(
        "summarize",
        "Summarizes a text, or a file of a directory source the operator granted, with a model \
         alias the operator granted. Returns the summary.",
        summarize,
    )
}

warden_sdk::export_plugin!(tools);
