//! `idpsync-plugin-host`: runs driver plugins behind the same
//! [`Driver`](idpsync_driver::Driver) trait as the built-in drivers.
//!
//! A connection with `kind = "plugin"` names a shared library and the kind it
//! must declare. Every call (validate, check, pull) runs in a child process,
//! `idpsync plugin-child`, which loads the library with libloading, checks its
//! ABI version and kind, makes the call and streams the plugin's messages
//! back over a pipe, one JSON document per line. A plugin that panics,
//! aborts, crashes or writes garbage fails that call with an error naming the
//! file; the daemon is a different process and keeps serving.
//!
//! * [`settings`]: the connection's `[connections.plugin]` table.
//! * [`loader`]: opening a library and checking its ABI (child side).
//! * [`child`]: the child process's main loop.
//! * [`driver`]: the host side: [`PluginFactory`] and its driver, which spawn
//!   the child and read its messages.

pub mod child;
pub mod driver;
pub mod loader;
pub mod settings;

pub use driver::PluginFactory;
