//! Test plugin: `hog` creates `count` `wasi:http` `fields` resources, each holding one header of
//! `bytes` bytes, and keeps them all. It needs no grant: each one costs the plugin a handle, and
//! the host the header. Only the host's own accounting can stop it.

use warden_sdk::prelude::*;
use wasip2::http::types::Fields;

/// How many fields, and how big.
#[derive(Deserialize, JsonSchema)]
struct HogInput {
    /// How many `fields` resources to create.
    count: u32,
    /// The size of the one header value in each.
    bytes: u32,
    /// Forget the fields instead of dropping them at the end, so that no host call follows the
    /// last one made.
    #[serde(default)]
    leak: bool,
}

/// How far it got.
#[derive(Serialize, JsonSchema)]
struct HogOutput {
    /// The fields created and still held.
    created: u32,
    /// Why it stopped early, if the host refused a header.
    refused: Option<String>,
}

fn hog(_ctx: &Context, input: HogInput) -> Result<HogOutput, ToolError> {
    let value = vec![b'x'; input.bytes as usize];
    let entry = [("x-pad".to_string(), value)];
    let mut held = Vec::new();
    for _ in 0..input.count {
        match Fields::from_list(&entry) {
            Ok(fields) => held.push(fields),
            Err(e) => {
                return Ok(HogOutput {
                    created: held.len() as u32,
                    refused: Some(format!("{e:?}")),
                });
            }
        }
    }
    let created = held.len() as u32;
    if input.leak {
        std::mem::forget(held);
    }
    Ok(HogOutput {
        created,
        refused: None,
    })
}

fn tools() -> Tools {
    Tools::new().tool(
        "hog",
        "Creates many large header fields and keeps them. For testing the host's memory accounting.",
        hog,
    )
}

warden_sdk::export_plugin!(tools);
