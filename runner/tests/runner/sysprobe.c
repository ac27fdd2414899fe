/* Calls one syscall the default seccomp profile must refuse and prints the
 * errno it got, e.g. "unshare errno=1". Built static by the runner tests and
 * copied into a test image. `reboot` is only attempted as PID 1 of a fresh PID
 * namespace, where the kernel would at most end that namespace; it asks
 * for LINUX_REBOOT_CMD_CAD_OFF, which never reboots anything. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <linux/reboot.h>


static int report(const char *name, long rc) {
    if (rc >= 0) {
        printf("%s ok\n", name);
    } else {
        printf("%s errno=%d\n", name, errno);
    }
    return 0;
}

/* Probes of syscalls the default profile refuses since Docker 25/29.5
 * (io_uring, AF_ALG), one it allows (name_to_handle_at), and a raw syscall
 * number ("nr 452") with zero arguments, for syscalls newer than the profile;
 * "euid" prints the effective uid (for a set-uid copy run by another user). */
static int host_probe(const char *what, char **argv) {
    if (!strcmp(what, "io_uring_setup")) {
        char params[120] = {0}; /* struct io_uring_params */
        long fd = syscall(SYS_io_uring_setup, 1, params);
        if (fd >= 0) close((int)fd);
        return report(what, fd);
    }
    if (!strcmp(what, "io_uring_enter")) return report(what, syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
    if (!strcmp(what, "io_uring_register")) return report(what, syscall(SYS_io_uring_register, -1, 0, NULL, 0));
    if (!strcmp(what, "af_alg")) return report(what, socket(38 /* AF_ALG */, SOCK_SEQPACKET, 0));
    if (!strcmp(what, "name_to_handle_at")) {
        struct { unsigned int bytes; int type; unsigned char f[128]; } handle = { 128, 0, {0} };
        int mount_id;
        return report(what, syscall(SYS_name_to_handle_at, AT_FDCWD, "/", &handle, &mount_id, 0));
    }
    if (!strcmp(what, "euid")) {
        printf("euid=%d\n", (int)geteuid());
        return 0;
    }
#if defined(__x86_64__)
    if (!strcmp(what, "nr32") && argv[2]) {
        /* The same through the i386 ABI (int 0x80), which has a filter block of its own. */
        char name[32];
        long rc, nr = atol(argv[2]);
        snprintf(name, sizeof name, "nr32 %s", argv[2]);
        __asm__ volatile("int $0x80" : "=a"(rc) : "a"(nr), "b"(0), "c"(0), "d"(0) : "memory");
        if (rc < 0 && rc > -4096) {
            errno = (int)-rc;
            rc = -1;
        }
        return report(name, rc);
    }
#endif
    if (!strcmp(what, "nr") && argv[2]) {
        char name[32];
        snprintf(name, sizeof name, "nr %s", argv[2]);
        return report(name, syscall(atol(argv[2]), 0, 0, 0, 0, 0, 0));
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sysprobe unshare|mount|keyctl|clone3|reboot|io_uring_setup|io_uring_enter|io_uring_register|af_alg|name_to_handle_at|euid|nr N|nr32 N\n");
        return 2;
    }
    const char *what = argv[1];
    if (!strcmp(what, "unshare")) return report(what, unshare(CLONE_NEWUSER));
    if (!strcmp(what, "mount")) return report(what, mount("none", "/tmp", "tmpfs", 0, NULL));
    if (!strcmp(what, "keyctl")) return report(what, syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
    if (!strcmp(what, "clone3")) return report(what, syscall(SYS_clone3, NULL, 0));
    if (!strcmp(what, "reboot")) {
        if (getpid() != 1) {
            fprintf(stderr, "refusing: reboot probe runs only as PID 1 of a PID namespace\n");
            return 3;
        }
        return report(what, syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                                    LINUX_REBOOT_CMD_CAD_OFF, NULL));
    }
    int rc = host_probe(what, argv);
    if (rc >= 0) return rc;
    fprintf(stderr, "unknown probe %s\n", what);
    return 2;
}
