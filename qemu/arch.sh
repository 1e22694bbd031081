# Every architecture detail of the QEMU tests, in one table (sourced, not run).
#   . qemu/arch.sh; arch_load ARCH      sets the A_* variables below, fails on an unknown ARCH
#   ARCHES                              every architecture, in the order the tests run them
# Adding an architecture = a row here, a kernel fragment (qemu/<fragment>.config) and an
# entry file (boot/<arch>.s). Nothing else in qemu/ names an architecture.
#
#   A_QEMU       qemu-system binary              A_MACHINE  -machine value     A_CPU  -cpu ('' default)
#   A_CONSOLE    kernel console device           A_VIRTIO   virtio transport: virtio-blk-<A_VIRTIO>
#   A_APPEND     extra kernel command line
#   A_KARCH      kernel ARCH=                    A_KCROSS   CROSS_COMPILE= ('' native)
#   A_KTARGET    kernel make target              A_KIMAGE   its path in the build dir
#   A_KFRAG      kernel fragment, qemu/<A_KFRAG> A_KEXTRA   fragment lines added to it
#   A_KNAME      cache name of the kernel (~/.cache/snapinit/kernel-<A_KNAME>-<key>)
#   A_ENTRY      the entry file of PID 1 (boot/…) A_TRIPLE  Rust target
#   A_BUILD      native: the host's cargo (qemu/build.sh); cross: qemu/cross.sh
#   A_RUSTFLAGS  extra RUSTFLAGS of the PID 1 cross build
#   A_RUSTIX     rustix patch script cross.sh applies (qemu/…; '' none)
#   A_CC A_STRIP cross gcc (linker) and strip    A_ELF      `file -b` regex of its binaries
#   A_DEB        Debian architecture (busybox-static:<A_DEB>; 'host': the host's busybox)
#   A_QEMU_USER  runs one of its binaries on the host ('' native)
#   A_DEPS       the deps script that installs its packages (qemu/…)
#   A_WATCHDOG   QEMU arguments of its watchdog ('' : the kernel's softdog, no device)
#   A_MUSL       Rust target of the static musl `snapshot` (musl-dev:<A_DEB> links it, as
#                OpenWrt's own libc would); '' : static glibc (Debian has no musl there)
#   A_MUSL_CC    the gcc wrapper musl-dev:<A_DEB> installs for it
#   A_FLEET      yes: `snapshot` with a unit's fleet client (OpenWrt's snapshot-fleet
#                package); no: without it (the snapshot package), as the MIPS routers of the
#                size budget would carry it (docs/SIZE.md). Either is a unit's build: no build
#                host commands, no progress bars. No QEMU scenario of it uses the fleet.
#   A_TOOL_FEATURES  more cargo features of `snapshot` for the architecture: sha-compact
#                where SHA is software (MIPS, ARMv7; not aarch64: it would lose the
#                ARMv8 SHA instructions), docs/SIZE.md

ARCHES=(x86_64 mipsel mips arm aarch64)

arch_load() {
  A_CPU='' A_APPEND='' A_KCROSS='' A_KEXTRA='' A_RUSTFLAGS='' A_RUSTIX='' A_QEMU_USER=''
  A_CC='' A_STRIP=strip A_VIRTIO=pci A_WATCHDOG= A_MUSL='' A_MUSL_CC='' A_FLEET=yes A_TOOL_FEATURES=
  case ${1:-} in
    x86_64)
      A_QEMU=qemu-system-x86_64 A_MACHINE=pc A_CONSOLE=ttyS0 A_APPEND=i8042.noaux
      A_KARCH=x86_64 A_KTARGET=bzImage A_KIMAGE=arch/x86/boot/bzImage
      A_KFRAG=x86_64.config A_KNAME=x86_64
      A_ENTRY=boot/x86_64.s A_TRIPLE=x86_64-unknown-linux-gnu A_BUILD=native
      A_ELF='ELF 64-bit LSB.*x86-64' A_DEB=host A_DEPS=deps.sh A_WATCHDOG='-device i6300esb'
      ;;
    mipsel | mips)
      A_QEMU=qemu-system-$1 A_MACHINE=malta A_CONSOLE=ttyS0
      A_KARCH=mips A_KCROSS=$1-linux-gnu- A_KTARGET=vmlinux A_KIMAGE=vmlinux
      A_KFRAG=malta.config A_KNAME=$1-malta
      A_ENTRY=boot/mips.s A_TRIPLE=$1-unknown-linux-gnu A_BUILD=cross
      A_RUSTFLAGS='--cfg rustix_use_experimental_asm' A_RUSTIX=patch-rustix-mips.py
      A_CC=$1-linux-gnu-gcc A_STRIP=$1-linux-gnu-strip A_DEB=$1 A_QEMU_USER=qemu-$1-static
      A_DEPS=deps-mips.sh A_FLEET=no A_TOOL_FEATURES=sha-compact
      if [[ $1 == mipsel ]]; then
        A_KEXTRA=CONFIG_CPU_LITTLE_ENDIAN=y A_ELF='ELF 32-bit LSB.*MIPS'
        A_MUSL=mipsel-unknown-linux-musl A_MUSL_CC=mipsel-linux-musl-gcc
      else
        A_KEXTRA=CONFIG_CPU_BIG_ENDIAN=y A_ELF='ELF 32-bit MSB.*MIPS'
      fi
      ;;
    arm)
      # ipq40xx class: Cortex-A7. No LPAE in the kernel: keep the PCI windows below 4 GiB.
      A_QEMU=qemu-system-arm A_MACHINE=virt,highmem=off A_CPU=cortex-a7 A_CONSOLE=ttyAMA0
      A_KARCH=arm A_KCROSS=arm-linux-gnueabihf- A_KTARGET=zImage A_KIMAGE=arch/arm/boot/zImage
      A_KFRAG=arm.config A_KNAME=arm-virt
      A_ENTRY=boot/arm.s A_TRIPLE=armv7-unknown-linux-gnueabihf A_BUILD=cross
      A_CC=arm-linux-gnueabihf-gcc A_STRIP=arm-linux-gnueabihf-strip
      A_ELF='ELF 32-bit LSB.*ARM' A_DEB=armhf A_QEMU_USER=qemu-arm-static A_DEPS=deps-arm.sh
      A_MUSL=armv7-unknown-linux-musleabihf A_MUSL_CC=arm-linux-musleabihf-gcc
      A_TOOL_FEATURES=sha-compact
      ;;
    aarch64)
      # MediaTek Filogic class: Cortex-A53.
      A_QEMU=qemu-system-aarch64 A_MACHINE=virt A_CPU=cortex-a53 A_CONSOLE=ttyAMA0
      A_KARCH=arm64 A_KCROSS=aarch64-linux-gnu- A_KTARGET=Image A_KIMAGE=arch/arm64/boot/Image
      A_KFRAG=aarch64.config A_KNAME=aarch64-virt
      A_ENTRY=boot/aarch64.s A_TRIPLE=aarch64-unknown-linux-gnu A_BUILD=cross
      A_CC=aarch64-linux-gnu-gcc A_STRIP=aarch64-linux-gnu-strip
      A_ELF='ELF 64-bit LSB.*ARM aarch64' A_DEB=arm64 A_QEMU_USER=qemu-aarch64-static
      A_DEPS=deps-arm.sh A_MUSL=aarch64-unknown-linux-musl A_MUSL_CC=aarch64-linux-musl-gcc
      ;;
    *)
      echo "arch.sh: unknown architecture '${1:-}' (known: ${ARCHES[*]})" >&2
      return 2
      ;;
  esac
  A_NAME=$1
}
