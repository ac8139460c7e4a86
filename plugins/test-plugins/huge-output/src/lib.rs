//! Test plugin: `huge` returns a valid JSON object as large as asked, to test the host's output
//! size limit.

use warden_sdk::prelude::*;

const MIB: usize = 1 << 20;

/// Input of `huge`.
#[derive(Deserialize, JsonSchema)]
struct HugeInput {
    /// How many MiB (1,048,576 bytes) of text the output's `data` field holds.
    #[serde(default = "default_megabytes")]
    megabytes: u32,
}

fn default_megabytes() -> u32 {
    16
}

/// Output of `huge`.
#[derive(Serialize, JsonSchema)]
struct HugeOutput {
    /// `megabytes` MiB of the letter `x`.
    data: String,
}

fn huge(_ctx: &Context, input: HugeInput) -> Result<HugeOutput, ToolError> {
    let len = usize::try_from(input.megabytes)
        .ok()
        .and_then(|mb| mb.checked_mul(MIB))
        .ok_or_else(|| {
            ToolError::InvalidInput(format!(
                "`megabytes` is too large for a 32-bit address space: {}",
                input.megabytes
            ))
        })?;
    Ok(HugeOutput {
        data: "x".repeat(len),
    })
}

/// `huge-raw`: a JSON string of `megabytes` MiB of `x`, built in one allocation of its exact
/// size, so the guest holds the output once and a test can tell the host's copy from it.
fn huge_raw(_ctx: &Context, input: &str) -> Result<String, ToolError> {
    let megabytes: usize = input
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .map_err(|_| ToolError::InvalidInput(format!("expected {{\"megabytes\": N}}: {input}")))?;
    let len = megabytes
        .checked_mul(MIB)
        .ok_or_else(|| ToolError::InvalidInput(format!("`megabytes` is too large: {megabytes}")))?;
    let mut out = String::with_capacity(len + 2);
    out.push('"');
    out.extend(std::iter::repeat_n('x', len));
    out.push('"');
    Ok(out)
}

fn tools() -> Tools {
    Tools::new()
        .tool(
            "huge",
            "Returns a JSON object whose `data` field holds the given number of MiB of text. For \
             testing the host's output limit.",
            huge,
        )
        .raw_tool(
            "huge-raw",
            "Returns a JSON string of the given number of MiB, held once in the plugin's memory.",
            r#"{"type":"object","properties":{"megabytes":{"type":"integer","minimum":0}},"required":["megabytes"]}"#,
            huge_raw,
        )
}

warden_sdk::export_plugin!(tools);
