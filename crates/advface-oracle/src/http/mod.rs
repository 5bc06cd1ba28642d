//! The black box over HTTP: a server ([`serve`]) and a client ([`HttpOracle`]) of one small
//! JSON API ([`wire`]).

pub mod client;
pub mod retry;
pub mod server;
pub mod wire;

pub use client::{HttpConfig, HttpConfigError, HttpOracle};
pub use retry::RetryPolicy;
pub use server::{serve, ServeConfig, ServeError, ServerHandle};
pub use wire::{DescribeAnswer, ErrorAnswer, Health};
