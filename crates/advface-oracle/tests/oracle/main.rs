//! The integration tests of advface-oracle, one test binary (one link on 2 cores): the
//! fakes come from advface-testkit.

mod cache;
mod http;
mod local_budget;
