//! Opening a plugin library and checking it before any call: it must be a
//! loadable shared library, export `idpsync_plugin_abi_version`, return the
//! ABI version this host speaks, and export that version's entry point.
//! Only the child process loads plugins (see [`crate::child`]).

#![allow(unsafe_code)] // dlopen and calls through the plugin's C ABI

use idpsync_plugin::ABI_VERSION;
use idpsync_plugin::abi::{ABI_VERSION_SYMBOL, AbiVersionFn, CALL_SYMBOL, CallFn};
use libloading::Library;
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};

/// Why a file cannot be used as a plugin. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: not a loadable shared library ({reason})", path.display())]
    NotALibrary { path: PathBuf, reason: String },
    #[error(
        "{}: not an idpsync plugin (it exports no `idpsync_plugin_abi_version`)",
        path.display()
    )]
    NotAPlugin { path: PathBuf },
    #[error(
        "{}: built for idpsync plugin ABI {found}; this idpsync speaks plugin ABI {expected}",
        path.display()
    )]
    AbiMismatch {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error(
        "{}: declares plugin ABI {version} but does not export `{symbol}`",
        path.display()
    )]
    MissingEntryPoint {
        path: PathBuf,
        version: u32,
        symbol: String,
    },
}

/// A loaded plugin whose ABI version matched.
pub struct LoadedPlugin {
    call: CallFn,
    // Declared last: the library stays mapped while `call` may be used.
    _library: Library,
}

impl LoadedPlugin {
    /// Loads `path` and checks its ABI version.
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        // SAFETY: loading a library runs its initialisers. That is the
        // plugin's code, trusted as much as any driver; it runs in the child
        // process, so a crash cannot take the daemon down.
        let library = unsafe { Library::new(path) }.map_err(|error| LoadError::NotALibrary {
            path: path.to_path_buf(),
            reason: error.to_string(),
        })?;
        // SAFETY: the symbol's type is fixed by every ABI version.
        let version_fn: AbiVersionFn = *unsafe { library.get::<AbiVersionFn>(ABI_VERSION_SYMBOL) }
            .map_err(|_| LoadError::NotAPlugin {
                path: path.to_path_buf(),
            })?;
        // SAFETY: a function of no arguments returning a u32, per the ABI.
        let found = unsafe { version_fn() };
        if found != ABI_VERSION {
            return Err(LoadError::AbiMismatch {
                path: path.to_path_buf(),
                found,
                expected: ABI_VERSION,
            });
        }
        // SAFETY: a plugin declaring ABI 1 exports the v1 entry point with this type.
        let call: CallFn = *unsafe { library.get::<CallFn>(CALL_SYMBOL) }.map_err(|_| {
            LoadError::MissingEntryPoint {
                path: path.to_path_buf(),
                version: found,
                symbol: String::from_utf8_lossy(CALL_SYMBOL).into_owned(),
            }
        })?;
        Ok(LoadedPlugin {
            call,
            _library: library,
        })
    }

    /// Makes one call; `on_message` receives each message the plugin emits,
    /// borrowed. Returns the plugin's status code.
    pub fn call(&self, request: &[u8], on_message: &mut dyn FnMut(&[u8])) -> i32 {
        let mut callback: &mut dyn FnMut(&[u8]) = on_message;
        let ctx = (&mut callback as *mut &mut dyn FnMut(&[u8])).cast::<c_void>();
        // SAFETY: `request` is valid for the call, and `ctx` points at
        // `callback`, which outlives the call; the plugin uses both only
        // during the call, per the ABI.
        unsafe { (self.call)(request.as_ptr(), request.len(), trampoline, ctx) }
    }
}

unsafe extern "C" fn trampoline(ctx: *mut c_void, message: *const u8, len: usize) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` is the `&mut dyn FnMut` that `LoadedPlugin::call` passed.
    let callback = unsafe { &mut *ctx.cast::<&mut dyn FnMut(&[u8])>() };
    let bytes: &[u8] = if message.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: the plugin lends `len` readable bytes for this call.
        unsafe { std::slice::from_raw_parts(message, len) }
    };
    // A panic must not unwind into the plugin's C frames.
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| callback(bytes)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_library_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("idpsync-loader-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("libnot-a-plugin.so");
        std::fs::write(&path, "this is a text file").unwrap();
        let error = LoadedPlugin::open(&path)
            .err()
            .expect("a text file cannot load");
        assert!(matches!(error, LoadError::NotALibrary { .. }), "{error}");
        assert!(error.to_string().starts_with(&path.display().to_string()));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
