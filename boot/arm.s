@ snapinit entry for 32-bit ARM Linux (ARMv7, EABI). The kernel starts PID 1
@ with argc, argv[], NULL, envp[], NULL, auxv at sp; Rust gets that pointer and
@ never returns. execve and exit_group live here too, as in boot/x86_64.s: EABI
@ takes the syscall number in r7 and the arguments in r0-r5, returns -errno in r0.
@ Assembled as ARM (A32) code; `bl` and `bx lr` interwork with Thumb code.

    .syntax unified
    .arm
    .text
    .globl _start
    .type _start,%function
_start:
    mov fp, #0                  @ end of the frame chain for backtraces
    mov lr, #0
    mov r0, sp                  @ sp -> snapinit_main(sp)
    bic sp, sp, #7              @ AAPCS: 8-byte aligned at a public interface
    bl snapinit_main
    udf #0
    .size _start, . - _start

@ isize snapinit_execve(const char *path, char *const argv[], char *const envp[])
@ Returns -errno; on success it does not return. r7 is callee-saved. (No register
@ lists: this file is a global_asm! template, where braces are format syntax.)
    .globl snapinit_execve
    .type snapinit_execve,%function
snapinit_execve:
    str r7, [sp, #-8]!          @ save r7, keeping sp 8-byte aligned
    mov r7, #11                 @ __NR_execve (EABI)
    svc #0
    ldr r7, [sp], #8
    bx lr
    .size snapinit_execve, . - snapinit_execve

@ noreturn void snapinit_exit(int code): exit_group
    .globl snapinit_exit
    .type snapinit_exit,%function
snapinit_exit:
    mov r7, #248                @ __NR_exit_group (EABI)
    svc #0
    udf #0
    .size snapinit_exit, . - snapinit_exit
