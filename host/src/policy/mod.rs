//! Policy: what a call may use, and the record of everything it used or was refused.
//!
//! - [`grants`]: the grant types (agent grants and tools, plugin `max` entries), which the config
//!   parses when it loads;
//! - [`rights`]: the effective rights of one call (plugin max ∩ agent grants), and the
//!   [`Denial`]s that name what would allow them;
//! - [`audit`]: the append-only, hash-chained audit log.

pub mod audit;
pub mod grants;
pub mod rights;

pub use audit::{AuditLog, AuditRecord, Outcome};
pub use grants::{Access, AgentGrant, MaxClass, MaxGrant, ToolGrant};
pub use rights::{CallRights, Denial, Denied, WouldAllow, check_tool};
