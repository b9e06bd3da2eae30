//! Who may call: tenants with API keys, the models each may call, and the
//! limits each is held to. Without a tenants file the gateway is open (any
//! caller, any model, no limit); with one, every public call passes here.
//!
//! # Layout
//! - [`file`]: the tenants file, read and checked whole.
//! - [`keys`]: API keys, made and shown once, kept as hashes;
//!   `mig-gateway tenant add-key`.
//! - [`auth`]: the tower layer that finds each call's tenant by its key.
//! - [`quota`]: concurrency and tokens per minute, held per tenant.
//!
//! `crate::reload` reads the file again on SIGHUP or when it changes.

pub mod auth;
pub mod file;
pub mod keys;
pub mod quota;

use std::sync::Arc;

use metrics::Label;
use tokio::sync::watch;
use tonic::Status;

use crate::metrics::{GatewayMetrics, TENANT_REJECTIONS};
use file::{Tenant, Tenants};
use keys::MAX_KEY_BYTES;
use quota::{Admitted, OverLimit, Quotas};

/// The `tenant` label of calls whose key is missing or unknown.
pub const UNKNOWN_TENANT: &str = "_unknown";
/// The `tenant` label of every call to an open gateway.
pub const OPEN_TENANT: &str = "_open";

/// Who a call comes from, as [`auth`] found it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The gateway is open: no tenants file.
    Open,
    Tenant(Arc<Tenant>),
}

impl Caller {
    /// Whether the caller may call (and see) `model`.
    pub fn may_call(&self, model: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Tenant(t) => t.may_call(model),
        }
    }

    /// Whether `ListModels` shows it the workers' internal addresses: on an
    /// open gateway (which trusts whoever reaches it) and to `admin`
    /// tenants; never to other tenants.
    pub fn sees_addresses(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Tenant(t) => t.admin,
        }
    }

    /// The `tenant` label: a tenants-file name or `_open`, nothing a client types.
    pub fn label(&self) -> &str {
        match self {
            Caller::Open => OPEN_TENANT,
            Caller::Tenant(t) => &t.name,
        }
    }
}

/// The tenants (or the open mode), their use, and their metrics.
pub struct Tenancy {
    /// `None`: open.
    tenants: Option<watch::Receiver<Arc<Tenants>>>,
    quotas: Quotas,
    metrics: Arc<GatewayMetrics>,
}

impl Tenancy {
    pub fn new(
        tenants: Option<watch::Receiver<Arc<Tenants>>>,
        metrics: Arc<GatewayMetrics>,
    ) -> Arc<Tenancy> {
        let tenancy = Tenancy {
            tenants,
            quotas: Quotas::default(),
            metrics,
        };
        // The refusal counter exists from the first scrape on, at zero, so
        // `rate()` sees the first refusal.
        tenancy
            .metrics
            .counter(
                TENANT_REJECTIONS,
                vec![
                    Label::new("tenant", UNKNOWN_TENANT),
                    Label::new("reason", "unauthenticated"),
                ],
            )
            .increment(0);
        Arc::new(tenancy)
    }

    pub fn is_open(&self) -> bool {
        self.tenants.is_none()
    }

    /// The caller of a request with these headers: one hash and one lookup.
    pub fn authenticate(
        &self,
        headers: &tonic::codegen::http::HeaderMap,
    ) -> Result<Caller, Status> {
        let Some(tenants) = &self.tenants else {
            return Ok(Caller::Open);
        };
        let refuse = |message: &str| {
            self.rejected(UNKNOWN_TENANT, "unauthenticated");
            Err(Status::unauthenticated(message))
        };
        let Some(value) = headers.get("authorization") else {
            return refuse(
                "missing `authorization` metadata: send `authorization: Bearer <API key>`",
            );
        };
        if value.len() > MAX_KEY_BYTES + "Bearer ".len() {
            return refuse(&format!(
                "`authorization` is {} bytes, limit {}",
                value.len(),
                MAX_KEY_BYTES + "Bearer ".len()
            ));
        }
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim());
        let Some(key) = key else {
            return refuse("`authorization` must be `Bearer <API key>`");
        };
        match tenants.borrow().find(key) {
            Some(tenant) => Ok(Caller::Tenant(tenant.clone())),
            None => refuse("the API key in `authorization` is not known here"),
        }
    }

    /// The caller [`auth`] left on a request. A request without one was not
    /// authenticated: with tenants, it is refused.
    pub fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        match request.extensions().get::<Caller>() {
            Some(caller) => Ok(caller.clone()),
            None if self.is_open() => Ok(Caller::Open),
            None => {
                self.rejected(UNKNOWN_TENANT, "unauthenticated");
                Err(Status::unauthenticated("this call was not authenticated"))
            }
        }
    }

    /// Admits a request of `caller` under its limits.
    pub fn admit(&self, caller: &Caller) -> Result<Admitted, OverLimit> {
        match caller {
            Caller::Open => Ok(Admitted::counting(&self.metrics, OPEN_TENANT)),
            Caller::Tenant(tenant) => {
                self.quotas
                    .admit(tenant, &self.metrics)
                    .inspect_err(|over| {
                        self.rejected(&tenant.name, over.reason());
                    })
            }
        }
    }

    /// Counts a refused call by tenant label and reason.
    pub fn rejected(&self, tenant: &str, reason: &'static str) {
        self.metrics
            .counter_with(TENANT_REJECTIONS, &[("tenant", tenant), ("reason", reason)])
            .increment(1);
    }
}
