/*
 * The real-mode KVM step written in C, for bench/containers.sh: the floor that its
 * ioctls set when a process makes them. The same work as
 * solutions/07-kvm-real-mode.rs run with no arguments, in the same order: open
 * /dev/kvm, check the API version and the six capabilities, map 1 MiB of guest
 * memory, create the VM and its vCPU, map kvm_run, set real mode, arm the same
 * watchdog (SIGALRM), run the same guest to its HLT (22 exits for the serial port,
 * then the HLT), and print the same lines. The benchmark checks that both print the
 * same bytes before it times them.
 *
 * What it leaves out is what a Rust program brings: the standard library's start-up,
 * command-line parsing (clap), error types. So the ratio of the two is what Rust
 * costs the step on top of the work itself.
 *
 *   cc -O2 -o kvm-real-mode bench/kvm-real-mode.c
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

/* The guest, byte for byte the step's own (the same source, in GNU as syntax). */
__asm__(".pushsection .rodata.guest_real_mode, \"a\"\n"
        ".intel_syntax noprefix\n"
        "GUEST_START:\n"
        ".code16\n"
        "    mov dx, 0x3f8\n"
        "    .set GREETING_OFFSET, greeting - GUEST_START\n"
        "    mov si, offset GREETING_OFFSET\n"
        "2:  lodsb\n"
        "    test al, al\n"
        "    jz 3f\n"
        "    out dx, al\n"
        "    jmp 2b\n"
        "3:  hlt\n"
        "greeting:\n"
        "    .asciz \"Hello from real mode!\\n\"\n"
        ".code64\n"
        "GUEST_END:\n"
        ".att_syntax prefix\n"
        ".popsection\n");
extern const unsigned char GUEST_START[], GUEST_END[];

#define MEMORY_SIZE (1 << 20)
#define GUEST_ADDRESS 0x1000
#define SERIAL_PORT 0x3f8
#define WATCHDOG_SECONDS 5
#define SHOWN 3 /* a run of one kind of exit shows this many, then a count */

static const struct {
    const char *name;
    int cap;
    const char *why;
} CAPABILITIES[] = {
    {"user memory", KVM_CAP_USER_MEMORY, "guest RAM is memory this process maps"},
    {"set TSS address", KVM_CAP_SET_TSS_ADDR, "real mode on old Intel CPUs needs a scratch area"},
    {"in-kernel irqchip", KVM_CAP_IRQCHIP,
     "KVM could emulate the interrupt controllers (we do not ask)"},
    {"ioeventfd", KVM_CAP_IOEVENTFD, "a guest write can wake a thread without an exit to us"},
    {"coalesced MMIO", KVM_CAP_COALESCED_MMIO,
     "MMIO writes can be batched instead of one exit each"},
    {"sync regs", KVM_CAP_SYNC_REGS, "registers can travel in kvm_run, saving ioctls per exit"},
};

static void fail(const char *what) {
    fprintf(stderr, "kvm-real-mode: error: %s: %s\n", what, strerror(errno));
    exit(125);
}

static void wake(int signal) { (void)signal; }

int main(void) {
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) fail("open(/dev/kvm, O_RDWR)");
    int version = ioctl(kvm, KVM_GET_API_VERSION, 0);
    if (version < 0) fail("ioctl(KVM_GET_API_VERSION, 0)");
    if (version != 12) {
        fprintf(stderr, "kvm-real-mode: error: KVM API version %d, not 12\n", version);
        return 125;
    }
    printf("KVM API version %d\n", version);
    printf("capabilities (KVM_CHECK_EXTENSION):\n");
    for (size_t i = 0; i < sizeof CAPABILITIES / sizeof CAPABILITIES[0]; i++) {
        int has = ioctl(kvm, KVM_CHECK_EXTENSION, CAPABILITIES[i].cap);
        if (has < 0) fail("ioctl(KVM_CHECK_EXTENSION)");
        printf("  %-18s %-4s %s\n", CAPABILITIES[i].name, has > 0 ? "yes" : "no",
               CAPABILITIES[i].why);
    }

    unsigned char *memory = mmap(NULL, MEMORY_SIZE, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (memory == MAP_FAILED) fail("mmap(guest memory)");
    memcpy(memory + GUEST_ADDRESS, GUEST_START, (size_t)(GUEST_END - GUEST_START));
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) fail("ioctl(KVM_CREATE_VM, 0)");
    struct kvm_userspace_memory_region region = {
        .slot = 0,
        .guest_phys_addr = 0,
        .memory_size = MEMORY_SIZE,
        .userspace_addr = (unsigned long)memory,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0)
        fail("ioctl(KVM_SET_USER_MEMORY_REGION)");
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) fail("ioctl(KVM_CREATE_VCPU, 0)");
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < (int)sizeof(struct kvm_run)) fail("ioctl(KVM_GET_VCPU_MMAP_SIZE, 0)");
    struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) fail("mmap(vcpu fd)");

    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) fail("ioctl(KVM_GET_SREGS)");
    sregs.cs.selector = sregs.ds.selector = GUEST_ADDRESS >> 4;
    sregs.cs.base = sregs.ds.base = GUEST_ADDRESS;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) fail("ioctl(KVM_SET_SREGS)");
    struct kvm_regs regs = {.rip = 0, .rflags = 0x2};
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) fail("ioctl(KVM_SET_REGS)");

    struct sigaction action = {.sa_handler = wake}; /* no SA_RESTART: interrupt KVM_RUN */
    if (sigaction(SIGALRM, &action, NULL) < 0) fail("sigaction(SIGALRM)");
    alarm(WATCHDOG_SECONDS);
    char serial[256];
    size_t written = 0, exits = 0;
    for (;;) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) fail("ioctl(vcpu, KVM_RUN, 0)");
        exits++;
        if (run->exit_reason == KVM_EXIT_HLT) break;
        if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT ||
            run->io.port != SERIAL_PORT || run->io.size != 1) {
            fprintf(stderr, "kvm-real-mode: error: the guest stopped with exit reason %u\n",
                    run->exit_reason);
            return 125;
        }
        if (written < sizeof serial - 1) serial[written++] = *((char *)run + run->io.data_offset);
    }
    alarm(0);

    /* The report, as the step prints it for this guest: what it said, then the trace. */
    serial[written] = 0;
    if (written > 0 && serial[written - 1] == '\n') serial[written - 1] = 0;
    printf("guest said: %s\n", serial);
    printf("exit trace:\n");
    size_t shown = written > SHOWN + 1 ? SHOWN : written;
    for (size_t i = 0; i < shown; i++)
        printf("  %4zu  IO out port 0x3f8, 1 byte: 0x%x '%c'\n", i + 1,
               (unsigned char)serial[i], serial[i]);
    if (written > shown) printf("        ... %zu more IO out port 0x3f8\n", written - shown);
    printf("  %4zu  HLT\n", exits);
    printf("exits: %zu x IO out port 0x3f8, 1 x HLT\n", written);

    munmap(run, (size_t)size);
    close(vcpu);
    close(vm);
    munmap(memory, MEMORY_SIZE);
    close(kvm);
    return 0;
}
