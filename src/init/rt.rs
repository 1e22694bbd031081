//! Process runtime: the initial stack, execve and exit, without libc.

use core::ffi::CStr;

extern "C" {
    fn snapinit_execve(path: *const u8, argv: *const *const u8, envp: *const *const u8) -> isize;
    fn snapinit_exit(code: i32) -> !;
}

/// Most argv entries passed on to the target; the kernel passes few to init.
const MAX_ARGS: usize = 32;

/// argv/envp as the kernel laid them out on the initial stack.
#[derive(Clone, Copy)]
pub struct Args {
    argc: usize,
    argv: *const *const u8,
    envp: *const *const u8,
}

impl Args {
    /// # Safety
    /// `sp` must be the process's initial stack pointer.
    pub unsafe fn from_stack(sp: *const usize) -> Self {
        let argc = *sp;
        let argv = sp.add(1).cast::<*const u8>();
        let envp = argv.add(argc + 1);
        Self { argc, argv, envp }
    }

    /// The value of environment variable `name`, if set (bytes: the caller decides what is text).
    pub fn env(&self, name: &str) -> Option<&'static [u8]> {
        let mut p = self.envp;
        // SAFETY: envp is a NULL-terminated array of C strings from the kernel.
        unsafe {
            while !(*p).is_null() {
                let entry = CStr::from_ptr((*p).cast()).to_bytes();
                if let Some(rest) = entry.strip_prefix(name.as_bytes()) {
                    if let Some(value) = rest.strip_prefix(b"=") {
                        return Some(value);
                    }
                }
                p = p.add(1);
            }
        }
        None
    }

    /// Replaces this process with `path`, passing the kernel's argv (with
    /// argv[0] set to `path`) and envp. Returns only on failure.
    pub fn exec(&self, path: &CStr) -> rustix::io::Errno {
        let mut argv: [*const u8; MAX_ARGS + 1] = [core::ptr::null(); MAX_ARGS + 1];
        argv[0] = path.as_ptr().cast();
        let n = self.argc.min(MAX_ARGS);
        for (i, slot) in argv.iter_mut().enumerate().take(n).skip(1) {
            // SAFETY: i < argc, so argv[i] is a valid entry.
            *slot = unsafe { *self.argv.add(i) };
        }
        // SAFETY: path and every argv entry are NUL-terminated, both arrays are
        // NULL-terminated, and on success nothing of this process remains.
        let ret = unsafe { snapinit_execve(path.as_ptr().cast(), argv.as_ptr(), self.envp) };
        rustix::io::Errno::from_raw_os_error((-ret) as i32)
    }
}

pub fn exit(code: i32) -> ! {
    // SAFETY: exit_group ends the process; nothing to clean up without libc.
    unsafe { snapinit_exit(code) }
}

/// The prebuilt libcore was compiled for unwinding and its unoptimised
/// objects still name the personality routine; with panic=abort it is never
/// called, so an empty definition satisfies the linker in dev builds.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
