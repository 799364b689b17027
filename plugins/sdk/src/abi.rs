//! The plugin ABI, version 1: a plain C interface that stays the same
//! whatever Rust compiler, crate versions or allocator either side uses.
//!
//! A plugin exports two symbols:
//!
//! ```c
//! uint32_t idpsync_plugin_abi_version(void);
//! int32_t  idpsync_plugin_v1_call(const uint8_t *request, size_t request_len,
//!                                 void (*emit)(void *ctx, const uint8_t *msg, size_t len),
//!                                 void *ctx);
//! ```
//!
//! The host first reads `idpsync_plugin_abi_version` and refuses the file
//! unless it returns [`ABI_VERSION`]; only then does it look up the
//! versioned call symbol. `request` is one UTF-8 JSON
//! [`Request`](crate::wire::Request). The plugin answers by calling `emit`
//! once per [`Message`](crate::wire::Message), each a UTF-8 JSON document,
//! synchronously and on the calling thread; the bytes are the plugin's and
//! are only borrowed for the duration of the call, so no memory is ever
//! freed across the boundary. The call returns [`CALL_OK`] or [`CALL_FAILED`]
//! (after emitting an `error` message).
//!
//! A new ABI version gets new symbol names (`idpsync_plugin_v2_call`), so a
//! host can serve several versions side by side.

use std::ffi::c_void;

/// The ABI version this crate implements.
pub const ABI_VERSION: u32 = 1;

/// The symbol holding the plugin's ABI version.
pub const ABI_VERSION_SYMBOL: &[u8] = b"idpsync_plugin_abi_version";
/// The symbol of the version-1 entry point.
pub const CALL_SYMBOL: &[u8] = b"idpsync_plugin_v1_call";

/// `idpsync_plugin_abi_version`.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
/// The callback a plugin emits its messages through.
pub type EmitFn = unsafe extern "C" fn(ctx: *mut c_void, message: *const u8, len: usize);
/// `idpsync_plugin_v1_call`.
pub type CallFn = unsafe extern "C" fn(
    request: *const u8,
    request_len: usize,
    emit: EmitFn,
    ctx: *mut c_void,
) -> i32;

/// The call finished; its answer was emitted.
pub const CALL_OK: i32 = 0;
/// The call failed; an `error` message was emitted.
pub const CALL_FAILED: i32 = 1;
