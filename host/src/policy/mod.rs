//! Policy: what a call may use, and the record of everything it used or was refused.
//!
//! - [`grants`]: the grammar of agent grants and plugin `max` entries;
//! - [`rights`]: the effective rights of one call (plugin max ∩ agent grants), and denials that
//!   name what would allow them;
//! - [`audit`]: the append-only, hash-chained audit log.

pub mod audit;
pub mod grants;
pub mod rights;

pub use audit::{AuditLog, AuditRecord, Outcome};
pub use grants::{Access, AgentGrant, MaxClass, MaxGrant};
pub use rights::{CallRights, check_tool};
