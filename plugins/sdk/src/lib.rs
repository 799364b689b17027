//! `idpsync-plugin`: everything a driver plugin needs besides the driver.
//!
//! A plugin is a shared library (`cdylib`) that idpsync loads at run time.
//! Write the driver against `idpsync-driver` exactly like a built-in one
//! (a [`DriverFactory`](idpsync_driver::DriverFactory) building a
//! [`Driver`](idpsync_driver::Driver)), then export it with one line:
//!
//! ```text
//! idpsync_plugin::export_plugin!(MyFactory, version = env!("CARGO_PKG_VERSION"));
//! ```
//!
//! * [`abi`]: the C ABI, version [`abi::ABI_VERSION`]: two symbols, bytes in,
//!   bytes out through a callback. No Rust types cross the boundary.
//! * [`wire`]: the JSON documents that travel over it (requests, pages of
//!   records, outcomes, errors).
//! * [`guest`]: the plugin side, used by [`export_plugin!`]: runs the driver on
//!   its own runtime, streams pages through the callback, and turns a panic
//!   into an error the host can report.

pub mod abi;
pub mod guest;
pub mod wire;

pub use abi::ABI_VERSION;
