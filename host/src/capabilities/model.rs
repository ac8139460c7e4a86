//! The `model` interface. The router, backends and quotas come with the model capability;
//! until then an alias the call was not granted is denied naming the grant, and a granted one
//! fails as `backend`, saying that no backend is served yet. Both are audited.

use crate::bindings::model::{Host, ModelError, Request, Response};
use crate::policy::Outcome;
use crate::sandbox::CallState;

impl Host for CallState {
    async fn complete(
        &mut self,
        request: Request,
    ) -> wasmtime::Result<Result<Response, ModelError>> {
        let alias = request.model;
        if let Err(denial) = self.grants.rights.check_model(&alias) {
            self.audit("model", &alias, Outcome::Denied, &denial);
            return Ok(Err(ModelError::Denied(denial)));
        }
        let reason = "this host does not serve model backends yet";
        self.audit("model", &alias, Outcome::Failed, reason);
        Ok(Err(ModelError::Backend(format!(
            "model alias `{alias}`: {reason}"
        ))))
    }
}
