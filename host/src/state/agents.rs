//! The agent state the store offers the agent loop and the front ends: [sessions](super::sessions),
//! the step [journal](super::journal), versioned [memory](super::memory) and session
//! [leases](super::leases), as one trait object over either backend.

use std::sync::Arc;

use super::journal::SessionJournal;
use super::leases::SessionLeases;
use super::memory::MemoryStore;
use super::sessions::SessionStore;
use super::{Backend, StateStore};

/// Everything a stateful agent keeps in the store; both backends implement all of it.
pub trait AgentStore: SessionStore + SessionJournal + MemoryStore + SessionLeases {}

impl<T: SessionStore + SessionJournal + MemoryStore + SessionLeases + ?Sized> AgentStore for T {}

impl StateStore {
    /// Sessions, journals, memory and leases on this store's backend.
    pub fn agent_state(&self) -> Arc<dyn AgentStore> {
        match &self.backend {
            Backend::Sqlite(store) => store.clone(),
            Backend::Postgres(store) => store.clone(),
        }
    }
}
