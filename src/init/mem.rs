//! The C memory primitives the compiler emits calls to. The prebuilt
//! compiler_builtins does not export them for this target and there is no libc.
//!
//! Word-sized volatile accesses: volatile keeps LLVM from recognising the loops
//! as memcpy/memset idioms and turning them back into calls to themselves.

use core::ptr::{read_volatile, write_volatile};

const W: usize = core::mem::size_of::<usize>();

fn aligned(a: usize, b: usize) -> bool {
    (a | b) % W == 0
}

#[no_mangle]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    let mut i = 0;
    if aligned(dst as usize, src as usize) {
        while i + W <= n {
            write_volatile(
                dst.add(i).cast::<usize>(),
                read_volatile(src.add(i).cast::<usize>()),
            );
            i += W;
        }
    }
    while i < n {
        write_volatile(dst.add(i), read_volatile(src.add(i)));
        i += 1;
    }
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        return memcpy(dst, src, n);
    }
    // Overlap with dst above src: copy backwards.
    let mut i = n;
    if aligned(dst as usize + n, src as usize + n) {
        while i >= W {
            i -= W;
            write_volatile(
                dst.add(i).cast::<usize>(),
                read_volatile(src.add(i).cast::<usize>()),
            );
        }
    }
    while i > 0 {
        i -= 1;
        write_volatile(dst.add(i), read_volatile(src.add(i)));
    }
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    let b = c as u8;
    let word = usize::from_ne_bytes([b; W]);
    let mut i = 0;
    while i < n && (dst as usize + i) % W != 0 {
        write_volatile(dst.add(i), b);
        i += 1;
    }
    while i + W <= n {
        write_volatile(dst.add(i).cast::<usize>(), word);
        i += W;
    }
    while i < n {
        write_volatile(dst.add(i), b);
        i += 1;
    }
    dst
}

#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    if aligned(a as usize, b as usize) {
        while i + W <= n
            && read_volatile(a.add(i).cast::<usize>()) == read_volatile(b.add(i).cast::<usize>())
        {
            i += W;
        }
    }
    while i < n {
        let (x, y) = (read_volatile(a.add(i)), read_volatile(b.add(i)));
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    memcmp(a, b, n)
}

#[no_mangle]
pub unsafe extern "C" fn strlen(s: *const u8) -> usize {
    let mut i = 0;
    while read_volatile(s.add(i)) != 0 {
        i += 1;
    }
    i
}
