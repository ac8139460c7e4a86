//! The `model` interface: a plugin's completions go through the host's
//! [`ModelRouter`](crate::models::ModelRouter), which checks the call's `model:ALIAS` grant,
//! reserves its quotas, adds the keys, falls back and audits. This module only translates
//! between the WIT types and the router's.
//!
//! A call without a config has no router and no grants: every alias is denied, naming the
//! `--config` and `--agent` that would allow one.

use crate::bindings::model::{
    Host, Message, ModelError, QuotaInfo, Request, Response, Role, ToolCall, Usage,
};
use crate::models::{self, ChatMessage, ChatRequest, ModelCaller};
use crate::sandbox::CallState;

impl Host for CallState {
    async fn complete(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Result<Response, ModelError>> {
        let Some(capabilities) = self.grants.capabilities.clone() else {
            let denial = match self.grants.rights.check_model(&request.model) {
                Err(denial) => denial.to_string(),
                Ok(()) => "this call runs without a config, which serves no model".into(),
            };
            return Ok(Err(ModelError::Denied(denial)));
        };
        let caller = ModelCaller {
            identity: &self.identity,
            plugin: &self.plugin,
            tool: &self.tool,
            grants: &self.grants.rights,
        };
        let result = capabilities
            .models
            .complete(&caller, request_from_wit(request))
            .await;
        if let Err(models::ModelError::AuditUnavailable(why)) = &result {
            // Fail closed: the whole call's result is withheld, not only this completion.
            self.audit_failure
                .get_or_insert_with(|| crate::capabilities::AuditFailure::from_message(why));
        }
        Ok(result.map(response_to_wit).map_err(error_to_wit))
    }
}

fn request_from_wit(request: Request) -> ChatRequest {
    ChatRequest {
        alias: request.model,
        messages: request.messages.into_iter().map(message_from_wit).collect(),
        tools: request
            .tools
            .into_iter()
            .map(|t| models::ToolDefinition {
                name: t.name,
                description: t.description,
                parameters: t.parameters,
            })
            .collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    }
}

fn message_from_wit(m: Message) -> ChatMessage {
    ChatMessage {
        role: match m.role {
            Role::System => models::Role::System,
            Role::User => models::Role::User,
            Role::Assistant => models::Role::Assistant,
            Role::Tool => models::Role::Tool,
        },
        content: m.content,
        tool_calls: m
            .tool_calls
            .into_iter()
            .map(|c| models::ToolCall {
                id: c.id,
                name: c.name,
                arguments: c.arguments,
            })
            .collect(),
        tool_call_id: m.tool_call_id,
    }
}

fn response_to_wit(c: models::Completion) -> Response {
    let m = c.message;
    Response {
        message: Message {
            role: match m.role {
                models::Role::System => Role::System,
                models::Role::User => Role::User,
                models::Role::Assistant => Role::Assistant,
                models::Role::Tool => Role::Tool,
            },
            content: m.content,
            tool_calls: m
                .tool_calls
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.name,
                    arguments: c.arguments,
                })
                .collect(),
            tool_call_id: m.tool_call_id,
        },
        usage: Usage {
            input_tokens: c.usage.input_tokens,
            output_tokens: c.usage.output_tokens,
        },
        backend: c.served_by,
        model: c.model,
        finish_reason: c.finish_reason,
    }
}

fn error_to_wit(e: models::ModelError) -> ModelError {
    match e {
        models::ModelError::Denied(m) => ModelError::Denied(m),
        models::ModelError::QuotaExceeded {
            message,
            resets_at_ms,
        } => ModelError::QuotaExceeded(QuotaInfo {
            message,
            resets_at_ms,
        }),
        models::ModelError::Backend(m) | models::ModelError::AuditUnavailable(m) => {
            ModelError::Backend(m)
        }
        models::ModelError::Invalid(m) => ModelError::Invalid(m),
    }
}
