//! Several providers per instance: `[oidc]` is the default one, `[[providers]]` the others,
//! each with an id. A session, a pending sign-in and a back-channel logout each name their
//! provider, and only that provider finishes, refreshes, revokes or ends them.

use super::Provider;
use std::sync::Arc;

pub struct Providers {
    /// The default provider first.
    all: Vec<Arc<Provider>>,
}

impl Providers {
    pub fn new(default: Arc<Provider>, more: Vec<Arc<Provider>>) -> Self {
        let mut all = vec![default];
        all.extend(more);
        Providers { all }
    }

    /// `[oidc]`'s: the one sign-ins go to unless asked otherwise, and client routes use.
    pub fn default_provider(&self) -> &Arc<Provider> {
        &self.all[0]
    }

    /// By the id a sign-in or session recorded (`None`: the default). `None` when no provider
    /// has it (any more).
    pub fn get(&self, id: Option<&str>) -> Option<&Arc<Provider>> {
        match id {
            None => Some(self.default_provider()),
            Some(id) => self.all.iter().find(|p| p.id() == id),
        }
    }

    /// The provider whose issuer is `issuer` (byte for byte).
    pub fn by_issuer(&self, issuer: &str) -> Option<&Arc<Provider>> {
        self.all.iter().find(|p| p.issuer() == issuer)
    }

    /// What a session or pending sign-in records for `provider`: `None` for the default one.
    pub fn recorded_id(&self, provider: &Provider) -> Option<String> {
        (!std::ptr::eq(provider, self.default_provider().as_ref())).then(|| provider.id().to_string())
    }

    pub fn all(&self) -> &[Arc<Provider>] {
        &self.all
    }
}
