//! The data of one call's store: a WASI context that grants nothing, the memory limiter, the
//! captured stdio, and who is calling (for the log and, later, the grants and the audit).

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::{CAPTURED_OUTPUT_BYTES, CallLimiter, CallLimits, CapturedOutput};
use crate::capabilities::{AuditFailure, CallGrants, CallSite, files, http};
use crate::policy::Outcome;

/// Who is calling which tool: set by the host, never by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIdentity {
    /// The tenant the call runs for.
    pub tenant: String,
    /// The agent the call runs for.
    pub agent: String,
    /// The agent's session.
    pub session: String,
    /// Stable across a retry of the same step.
    pub call_id: String,
}

impl Default for CallIdentity {
    /// A local, one-off call, as `warden call` makes without a config.
    fn default() -> Self {
        CallIdentity {
            tenant: "local".into(),
            agent: "cli".into(),
            session: "cli".into(),
            call_id: new_call_id(),
        }
    }
}

/// A call id unique within this host: time, process and a counter.
pub fn new_call_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The store data of one call.
pub struct CallState {
    wasi: WasiCtx,
    /// The resources of WASI and `wasi:http`, which share one table.
    pub(crate) table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// The plugin being called, for log lines and denials.
    pub(crate) plugin: String,
    /// The tool being called (empty while listing tools).
    pub(crate) tool: String,
    /// Who is calling.
    pub(crate) identity: CallIdentity,
    /// Bytes the guest has sent to the `log` interface, for its cap.
    pub(crate) logged_bytes: usize,
    /// What this call may use.
    pub(crate) grants: CallGrants,
    /// Outbound HTTP: its `wasi:http` context (see [`http`]).
    pub(crate) http: http::CallHttp,
    /// The first audit record of this call that could not be committed. The call's result is
    /// then withheld, whatever the plugin made of the refusal (fail closed).
    pub(crate) audit_failure: Option<AuditFailure>,
}

impl CallState {
    /// A fresh state for one call, with the directories its grants open and nothing else.
    pub fn new(
        plugin: &str,
        tool: &str,
        identity: CallIdentity,
        limits: &CallLimits,
        grants: CallGrants,
    ) -> Self {
        let stdout = CapturedOutput::new(CAPTURED_OUTPUT_BYTES);
        let stderr = CapturedOutput::new(CAPTURED_OUTPUT_BYTES);
        // The builder denies by default: no env, no args, no preopens, no socket address, no
        // name lookups. Only the captured stdio and the granted directories are added.
        let mut builder = WasiCtx::builder();
        builder.stdout(stdout.clone()).stderr(stderr.clone());
        let audit_failure = files::preopen(
            &mut builder,
            &grants,
            &CallSite {
                identity: &identity,
                plugin,
                tool,
            },
        )
        .err();
        let wasi = builder.build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter::new(limits.memory_bytes()),
            stdout,
            stderr,
            plugin: plugin.to_string(),
            tool: tool.to_string(),
            identity,
            logged_bytes: 0,
            grants,
            http: http::CallHttp::new(),
            audit_failure,
        }
    }

    /// Records a capability use or denial of this call in the audit log. On a failure the use
    /// must be refused; the failure is also kept, so the call's result is withheld.
    #[must_use = "a capability use whose audit record was not committed must be refused"]
    pub(crate) fn audit(
        &mut self,
        capability: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), AuditFailure> {
        let site = CallSite {
            identity: &self.identity,
            plugin: &self.plugin,
            tool: &self.tool,
        };
        let result = self
            .grants
            .audit(&site, capability, target, outcome, detail);
        if let Err(failure) = &result {
            self.audit_failure.get_or_insert_with(|| failure.clone());
        }
        result
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
