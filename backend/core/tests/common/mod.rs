//! What the dispatcher's integration tests share: one generated city, routed once per test
//! binary.

use std::sync::{Arc, OnceLock};

use muster_geodata::Router;
use muster_geodata::generate::{GenerateParams, generate};

/// A 6 km generated city (seed 11), prepared for routing once.
pub fn router() -> Arc<Router> {
    static ROUTER: OnceLock<Arc<Router>> = OnceLock::new();
    ROUTER
        .get_or_init(|| {
            let city = generate(GenerateParams::new(6.0, 11).unwrap());
            Arc::new(Router::new(Arc::new(city)).unwrap())
        })
        .clone()
}
