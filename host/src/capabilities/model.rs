//! The `model` interface. The router, backends and quotas come with the model capability;
//! until then every alias is denied, naming the grant.

use super::not_granted;
use crate::bindings::model::{Host, ModelError, Request, Response};
use crate::sandbox::CallState;

impl Host for CallState {
    async fn complete(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Result<Response, ModelError>> {
        let alias = request.model;
        Ok(Err(ModelError::Denied(not_granted(
            &format!("model alias `{alias}`"),
            &format!("model:{alias}"),
        ))))
    }
}
