//! The data of one call's store: a WASI context that grants nothing, the memory limiter, the
//! captured stdio, and who is calling (for the log and, later, the grants and the audit).
//!
//! It also bounds what a plugin makes the host hold for it outside its linear memory: the
//! resources in the call's table ([`MAX_RESOURCES`]), and the bytes of the header fields and
//! unsent request bodies among them, which are charged to the call's memory limit. A call over
//! either is cut off: from then on every resource it names is unknown, so its next host call
//! traps, and the call ends as `limit exceeded: memory`.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::{
    HostIncomingResponse, HostOutgoingRequest, HostOutgoingResponse,
};

use super::{CAPTURED_OUTPUT_BYTES, CallLimiter, CallLimits, CapturedOutput};
use crate::capabilities::{AuditFailure, CallGrants, CallSite, files, http};
use crate::policy::Outcome;

/// The most resources (fields, requests, streams, pollables, descriptors, ...) one call may hold
/// at once. Ordinary plugins hold a handful; wasmtime's own default is 1,000,000.
pub const MAX_RESOURCES: usize = 4096;
/// What one resource is charged in host memory, besides the bytes it holds: its table entry and
/// the host object behind it.
const RESOURCE_BYTES: usize = 256;
/// What one header is charged besides its name and value: the header map's index and entry.
const HEADER_BYTES: usize = 64;
/// Room past [`MAX_RESOURCES`] for the few resources one host call may add before the next is
/// charged; the table refuses more (a trap) as a backstop.
const RESOURCE_SLACK: usize = 64;

/// What a call's resources hold on the host, and whether the call went over its budget.
#[derive(Default)]
pub(crate) struct HostResources {
    /// An empty table, shown to a call over its budget instead of its own: every handle it
    /// names is unknown and nothing can be added, so its next host call traps.
    spent: ResourceTable,
    exhausted: bool,
}

impl HostResources {
    /// The table a host call works on: the call's own, or, once it went over, the spent one.
    pub(crate) fn table<'a>(&'a mut self, live: &'a mut ResourceTable) -> &'a mut ResourceTable {
        if self.exhausted {
            self.spent.set_max_capacity(0);
            &mut self.spent
        } else {
            live
        }
    }
}

/// How many resources `table` holds, and the host bytes they are charged.
fn held_by(table: &mut ResourceTable) -> (usize, usize) {
    fn fields(map: &FieldMap) -> usize {
        map.iter()
            .map(|(name, value)| name.as_str().len() + value.len() + HEADER_BYTES)
            .sum()
    }
    let mut count = 0;
    let mut bytes = 0usize;
    for entry in table.iter_mut() {
        count += 1;
        let held = if let Some(map) = entry.downcast_ref::<FieldMap>() {
            fields(map)
        } else if let Some(request) = entry.downcast_ref::<HostOutgoingRequest>() {
            fields(&request.headers)
                + request.path_with_query.as_ref().map_or(0, String::len)
                + request.authority.as_ref().map_or(0, String::len)
        } else if let Some(response) = entry.downcast_ref::<HostOutgoingResponse>() {
            fields(&response.headers)
        } else if let Some(response) = entry.downcast_ref::<HostIncomingResponse>() {
            fields(&response.headers)
        } else if entry.is::<HostOutgoingBody>() {
            // Up to one chunk in the channel and one being written (see the http gate's hooks).
            2 * http::OUTGOING_BODY_CHUNK
        } else {
            0
        };
        bytes = bytes.saturating_add(RESOURCE_BYTES + held);
    }
    (count, bytes)
}

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
    /// What the call's resources hold on the host (see the module doc).
    pub(crate) resources: HostResources,
}

impl CallState {
    /// A fresh state for one call, with the directories its grants open and nothing else.
    pub async fn new(
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
        .await
        .err();
        let wasi = builder.build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES + RESOURCE_SLACK);
        CallState {
            wasi,
            table,
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
            resources: HostResources::default(),
        }
    }

    /// Runs before every WASI and `wasi:http` host call: takes over an audit failure of an HTTP
    /// request (they run on their own tasks), and charges what the call's resources hold on the
    /// host to its memory limit, cutting the call off when it is over (see the module doc).
    /// The cost is a walk over the call's resources, which an ordinary call keeps to a handful.
    pub(crate) fn account_host_resources(&mut self) {
        if self.audit_failure.is_none()
            && let Some(failure) = self.http.audit_failure()
        {
            self.audit_failure = Some(failure.clone());
        }
        if self.resources.exhausted {
            return;
        }
        let (count, bytes) = held_by(&mut self.table);
        if count >= MAX_RESOURCES {
            tracing::warn!(plugin = %self.plugin, "the call holds {count} resources, the most one call may (MAX_RESOURCES); it is cut off");
        } else if !self.limiter.charge_host(bytes) {
            tracing::warn!(plugin = %self.plugin, "the call's resources hold {bytes} bytes on the host, past its memory limit; it is cut off");
        } else {
            return;
        }
        self.limiter.refuse();
        self.resources.exhausted = true;
    }

    /// Records a capability use or denial of this call in the audit log. On a failure the use
    /// must be refused; the failure is also kept, so the call's result is withheld.
    #[must_use = "a capability use whose audit record was not committed must be refused"]
    pub(crate) async fn audit(
        &mut self,
        capability: &str,
        target: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), AuditFailure> {
        // The call is refused already: another attempt would only wait on the store again, and
        // could leave a record after a missing one.
        if let Some(failure) = &self.audit_failure {
            return Err(failure.clone());
        }
        let site = CallSite {
            identity: &self.identity,
            plugin: &self.plugin,
            tool: &self.tool,
        };
        let result = self
            .grants
            .audit(&site, capability, target, outcome, detail)
            .await;
        if let Err(failure) = &result {
            self.audit_failure.get_or_insert_with(|| failure.clone());
        }
        result
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.account_host_resources();
        WasiCtxView {
            ctx: &mut self.wasi,
            table: self.resources.table(&mut self.table),
        }
    }
}
