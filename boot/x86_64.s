# snapinit entry for x86_64 Linux. The kernel starts PID 1 with argc, argv[],
# NULL, envp[], NULL, auxv at %rsp; Rust gets that pointer and never returns.
# execve and exit_group live here too so the Rust side needs no libc and no
# unstable rustix runtime API: two syscalls per architecture.

    .text
    .globl _start
    .type _start,@function
_start:
    xor %ebp, %ebp              # end of frame-pointer chain for backtraces
    mov %rsp, %rdi              # sp -> snapinit_main(sp)
    and $-16, %rsp              # SysV: 16-byte aligned before the call
    call snapinit_main
    ud2

# isize snapinit_execve(const char *path, char *const argv[], char *const envp[])
# Returns -errno; on success it does not return.
    .globl snapinit_execve
    .type snapinit_execve,@function
snapinit_execve:
    mov $59, %eax               # __NR_execve
    syscall
    ret

# noreturn void snapinit_exit(int code): exit_group
    .globl snapinit_exit
    .type snapinit_exit,@function
snapinit_exit:
    mov $231, %eax              # __NR_exit_group
    syscall
    ud2
