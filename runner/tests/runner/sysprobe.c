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
#include <linux/reboot.h>

static int report(const char *name, long rc) {
    if (rc >= 0) {
        printf("%s ok\n", name);
    } else {
        printf("%s errno=%d\n", name, errno);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: sysprobe unshare|mount|keyctl|clone3|reboot\n");
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
    fprintf(stderr, "unknown probe %s\n", what);
    return 2;
}
