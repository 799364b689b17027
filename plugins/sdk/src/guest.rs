//! The plugin side of the ABI. [`export_plugin!`](crate::export_plugin)
//! exports the two symbols and forwards every call to [`call`], which decodes
//! the request, runs the plugin's [`DriverFactory`] and [`Driver`] on a
//! current-thread tokio runtime, streams each page through the host's
//! callback as it is read, and turns an error or a panic into an `error`
//! message. The plugin keeps no state between calls.

#![allow(unsafe_code)] // the C ABI's raw pointers, documented at each use

use crate::abi::{CALL_FAILED, CALL_OK, EmitFn};
use crate::wire::{Message, PluginInfo, Request, WireError};
use idpsync_driver::http::{HttpKit, HttpOptions};
use idpsync_driver::{
    DriverContext, DriverError, DriverFactory, MembershipEdge, RecordSink, SourceGroup, SourceUser,
    UserUpdate,
};
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;

/// Exports `factory` as a plugin. Put it once in the plugin's `lib.rs`;
/// `version` is the plugin's own version, shown to admins.
///
/// ```text
/// idpsync_plugin::export_plugin!(LdapFactory, version = env!("CARGO_PKG_VERSION"));
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($factory:expr, version = $version:expr) => {
        /// The plugin ABI this library was built for.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn idpsync_plugin_abi_version() -> u32 {
            $crate::ABI_VERSION
        }

        /// The version-1 entry point (see `idpsync_plugin::abi`).
        ///
        /// # Safety
        /// `request` points to `request_len` readable bytes and `emit` may be
        /// called with `ctx` until this function returns.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn idpsync_plugin_v1_call(
            request: *const u8,
            request_len: usize,
            emit: $crate::abi::EmitFn,
            ctx: *mut ::std::ffi::c_void,
        ) -> i32 {
            // SAFETY: forwarded unchanged; the host upholds the ABI contract.
            unsafe { $crate::guest::call(&$factory, $version, request, request_len, emit, ctx) }
        }
    };
}

/// Serves one ABI call with `factory`.
///
/// # Safety
/// `request` must point to `request_len` readable bytes (or be null with
/// length 0), and `emit` must be callable with `ctx` until this returns.
pub unsafe fn call(
    factory: &dyn DriverFactory,
    version: &str,
    request: *const u8,
    request_len: usize,
    emit: EmitFn,
    ctx: *mut c_void,
) -> i32 {
    let emitter = Emitter { emit, ctx };
    let bytes: &[u8] = if request.is_null() || request_len == 0 {
        &[]
    } else {
        // SAFETY: the caller guarantees `request_len` readable bytes.
        unsafe { std::slice::from_raw_parts(request, request_len) }
    };
    let served = std::panic::catch_unwind(AssertUnwindSafe(|| {
        serve(factory, version, bytes, &emitter)
    }));
    let error = match served {
        Ok(Ok(())) => return CALL_OK,
        Ok(Err(error)) => error,
        Err(panic) => WireError::panic(panic_message(panic.as_ref())),
    };
    emitter.send(&Message::Error(error));
    CALL_FAILED
}

fn serve(
    factory: &dyn DriverFactory,
    version: &str,
    request: &[u8],
    emitter: &Emitter,
) -> Result<(), WireError> {
    let request: Request = serde_json::from_slice(request).map_err(|error| {
        WireError::from(&DriverError::protocol(format!(
            "the host sent a request this plugin cannot read: {error}"
        )))
    })?;
    let failed = |error: DriverError| WireError::from(&error);
    match request {
        Request::Describe => {
            emitter.send(&Message::Plugin(PluginInfo {
                kind: factory.kind().to_string(),
                version: version.to_string(),
                abi: crate::ABI_VERSION,
            }));
        }
        Request::Validate { settings } => {
            factory.validate(&settings).map_err(failed)?;
            emitter.send(&Message::Valid);
        }
        Request::Check { settings } => {
            let driver = factory.build(&settings, context()?).map_err(failed)?;
            let capabilities = runtime()?.block_on(driver.check()).map_err(failed)?;
            emitter.send(&Message::Capabilities(capabilities.into()));
        }
        Request::Pull { settings, mode } => {
            let driver = factory.build(&settings, context()?).map_err(failed)?;
            let mut sink = EmittingSink { emitter };
            let outcome = runtime()?
                .block_on(driver.pull(mode.into(), &mut sink))
                .map_err(failed)?;
            emitter.send(&Message::Outcome(outcome.into()));
        }
    }
    Ok(())
}

fn context() -> Result<DriverContext, WireError> {
    let http = HttpKit::new(HttpOptions::default()).map_err(|e| WireError::from(&e))?;
    Ok(DriverContext { http })
}

fn runtime() -> Result<tokio::runtime::Runtime, WireError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            WireError::from(&DriverError::Transient(format!(
                "cannot start the plugin's runtime: {error}"
            )))
        })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// The host's callback and its context, valid for the current call.
struct Emitter {
    emit: EmitFn,
    ctx: *mut c_void,
}

// SAFETY: the emitter is used only during the call, on the current-thread
// runtime that `call` blocks on, so it never leaves the calling thread; Send
// is needed only because `RecordSink` futures must be Send.
unsafe impl Send for Emitter {}
unsafe impl Sync for Emitter {}

impl Emitter {
    fn send(&self, message: &Message) {
        let bytes = serde_json::to_vec(message).unwrap_or_else(|error| {
            serde_json::to_vec(&Message::Error(WireError::from(&DriverError::protocol(
                format!("the plugin could not encode a message: {error}"),
            ))))
            .unwrap_or_default()
        });
        // SAFETY: the host's contract: `emit` may be called with `ctx` during
        // the call, and it only borrows the bytes.
        unsafe { (self.emit)(self.ctx, bytes.as_ptr(), bytes.len()) }
    }
}

/// Sends every page to the host as soon as the driver hands it over.
struct EmittingSink<'a> {
    emitter: &'a Emitter,
}

#[async_trait::async_trait]
impl RecordSink for EmittingSink<'_> {
    async fn users(&mut self, page: Vec<SourceUser>) -> Result<(), DriverError> {
        self.emitter.send(&Message::Users(page));
        Ok(())
    }

    async fn user_updates(&mut self, page: Vec<UserUpdate>) -> Result<(), DriverError> {
        self.emitter.send(&Message::UserUpdates(page));
        Ok(())
    }

    async fn groups(&mut self, page: Vec<SourceGroup>) -> Result<(), DriverError> {
        self.emitter.send(&Message::Groups(page));
        Ok(())
    }

    async fn memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        self.emitter.send(&Message::Memberships(page));
        Ok(())
    }

    async fn removed_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.emitter.send(&Message::RemovedUsers(external_ids));
        Ok(())
    }

    async fn removed_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.emitter.send(&Message::RemovedGroups(external_ids));
        Ok(())
    }

    async fn removed_memberships(&mut self, page: Vec<MembershipEdge>) -> Result<(), DriverError> {
        self.emitter.send(&Message::RemovedMemberships(page));
        Ok(())
    }

    async fn replaced_members(
        &mut self,
        group_external_ids: Vec<String>,
    ) -> Result<(), DriverError> {
        self.emitter
            .send(&Message::ReplacedMembers(group_external_ids));
        Ok(())
    }

    async fn present_users(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.emitter.send(&Message::PresentUsers(external_ids));
        Ok(())
    }

    async fn present_groups(&mut self, external_ids: Vec<String>) -> Result<(), DriverError> {
        self.emitter.send(&Message::PresentGroups(external_ids));
        Ok(())
    }
}
