# snapinit entry for 32-bit MIPS Linux (o32 ABI), little- and big-endian. The
# kernel starts PID 1 with argc, argv[], NULL, envp[], NULL, auxv at $sp; Rust
# gets that pointer and never returns. execve and exit_group live here too, as
# in boot/x86_64.s: o32 syscall numbers are 4000 + the classic number.
#
# The Rust code is PIC (abicalls): a function computes its $gp from $t9, so
# it must be called through $t9, and $gp must point at the GOT (_gp) here.
# GNU ld's default entry symbol on MIPS is __start; _start is the same place.

    .text
    .set noreorder
    .set nomacro
    .globl __start
    .globl _start
    .type __start,@function
    .type _start,@function
    .ent __start
__start:
_start:
    move $fp, $zero             # end of the frame chain for backtraces
    bal 1f                      # $ra = address of 1:
    nop
1:  lui $gp, %hi(_gp_disp)      # .cpload $ra: $gp = _gp, position-independent
    addiu $gp, $gp, %lo(_gp_disp)
    addu $gp, $gp, $ra
    move $a0, $sp               # sp -> snapinit_main(sp)
    li $t0, -8
    and $sp, $sp, $t0           # o32: 8-byte aligned stack
    addiu $sp, $sp, -16         # o32: the caller reserves the 4 argument slots
    lw $t9, %call16(snapinit_main)($gp)
    jalr $t9
    nop
    break
    .end __start

# isize snapinit_execve(const char *path, char *const argv[], char *const envp[])
# Returns -errno; on success it does not return. o32: the kernel returns the
# positive errno in $v0 and sets $a3 on failure.
    .globl snapinit_execve
    .type snapinit_execve,@function
    .ent snapinit_execve
snapinit_execve:
    li $v0, 4011                # __NR_execve (o32)
    syscall
    beqz $a3, 2f
    nop
    subu $v0, $zero, $v0
2:  jr $ra
    nop
    .end snapinit_execve

# noreturn void snapinit_exit(int code): exit_group
    .globl snapinit_exit
    .type snapinit_exit,@function
    .ent snapinit_exit
snapinit_exit:
    li $v0, 4246                # __NR_exit_group (o32)
    syscall
    break
    .end snapinit_exit
    .set macro
    .set reorder
