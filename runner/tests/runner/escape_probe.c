/* What a hostile container process tries against what entered the
 * container with it (runner/tests/runner/security_container.rs). Built
 * static by the tests and copied into a test image.
 *
 *   escape_probe memgrep PID PART1 PART2
 *       Looks for the string PART1 PART2 (passed in two halves, so that the
 *       needle itself is in no other process's argv) in every readable
 *       mapping of /proc/PID/mem. Prints "memgrep found", "memgrep absent"
 *       or "memgrep errno=N" when /proc/PID/mem or maps cannot be read.
 *   escape_probe tty
 *       Tries to open /dev/tty and to push a character into the input queue
 *       of fds 0, 1 and 2 with TIOCSTI; prints "open errno=N" or "open ok",
 *       then "tiocsti FD ok|errno=N" for each fd.
 *   escape_probe traceme CODE
 *       ptrace(PTRACE_TRACEME), then raises SIGUSR1, ignored (a traced
 *       process stops on it all the same, until its tracer lets it go),
 *       then exits with CODE. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <unistd.h>

static int memgrep(const char *pid, const char *a, const char *b) {
    char needle[256];
    snprintf(needle, sizeof needle, "%s%s", a, b);
    size_t len = strlen(needle);
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/maps", pid);
    FILE *maps = fopen(path, "r");
    if (!maps) {
        printf("memgrep errno=%d\n", errno);
        return 0;
    }
    snprintf(path, sizeof path, "/proc/%s/mem", pid);
    int mem = open(path, O_RDONLY);
    if (mem < 0) {
        printf("memgrep errno=%d\n", errno);
        fclose(maps);
        return 0;
    }
    char line[512];
    int found = 0;
    while (!found && fgets(line, sizeof line, maps)) {
        unsigned long start, end;
        char perms[5];
        if (sscanf(line, "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r') continue;
        for (unsigned long at = start; at < end && !found;) {
            static char buf[1 << 16];
            size_t want = end - at < sizeof buf ? end - at : sizeof buf;
            ssize_t n = pread(mem, buf, want, (off_t)at);
            if (n <= 0) break;
            if (memmem(buf, (size_t)n, needle, len)) found = 1;
            /* Overlap chunks so a needle across a boundary is seen. */
            at += (unsigned long)n > len ? (unsigned long)n - len : (unsigned long)n;
        }
    }
    printf("memgrep %s\n", found ? "found" : "absent");
    close(mem);
    fclose(maps);
    return 0;
}

static int tty(void) {
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY);
    if (fd < 0) {
        printf("open errno=%d\n", errno);
    } else {
        printf("open ok\n");
        close(fd);
    }
    for (int i = 0; i < 3; i++) {
        char c = '#';
        if (ioctl(i, TIOCSTI, &c) == 0) {
            printf("tiocsti %d ok\n", i);
        } else {
            printf("tiocsti %d errno=%d\n", i, errno);
        }
    }
    return 0;
}

static int traceme(const char *code) {
    if (ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
        printf("traceme errno=%d\n", errno);
    }
    /* Ignored, but a tracee stops on it all the same. */
    signal(SIGUSR1, SIG_IGN);
    raise(SIGUSR1);
    return atoi(code);
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "memgrep")) return memgrep(argv[2], argv[3], argv[4]);
    if (argc == 2 && !strcmp(argv[1], "tty")) return tty();
    if (argc == 3 && !strcmp(argv[1], "traceme")) return traceme(argv[2]);
    fprintf(stderr, "usage: escape_probe memgrep PID PART1 PART2 | tty | traceme CODE\n");
    return 2;
}
