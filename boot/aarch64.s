// snapinit entry for 64-bit ARM Linux (AArch64). The kernel starts PID 1 with
// argc, argv[], NULL, envp[], NULL, auxv at sp; Rust gets that pointer and
// never returns. execve and exit_group live here too, as in boot/x86_64.s: the
// syscall number goes in x8, arguments in x0-x5, -errno comes back in x0.

    .text
    .globl _start
    .type _start,%function
_start:
    mov x29, #0                 // end of the frame chain for backtraces
    mov x30, #0
    mov x0, sp                  // sp -> snapinit_main(sp)
    and x1, x0, #-16            // AAPCS64: sp 16-byte aligned (the kernel's already is)
    mov sp, x1
    bl snapinit_main
    brk #0
    .size _start, . - _start

// isize snapinit_execve(const char *path, char *const argv[], char *const envp[])
// Returns -errno; on success it does not return.
    .globl snapinit_execve
    .type snapinit_execve,%function
snapinit_execve:
    mov x8, #221                // __NR_execve (asm-generic)
    svc #0
    ret
    .size snapinit_execve, . - snapinit_execve

// noreturn void snapinit_exit(int code): exit_group
    .globl snapinit_exit
    .type snapinit_exit,%function
snapinit_exit:
    mov x8, #94                 // __NR_exit_group (asm-generic)
    svc #0
    brk #0
    .size snapinit_exit, . - snapinit_exit
