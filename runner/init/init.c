/* strata-init: PID 1 of a container run with `runner run --init`.
 *
 *   strata-init FILE ARGV0 [ARG...]
 *
 * Runs FILE (already resolved through the container's PATH by the runner)
 * as its only child, with argv ARGV0 ARG... and its own environment;
 * forwards every signal it receives to that child; reaps every process that
 * ends up parented to it; and exits with the child's status (its exit code,
 * or 128 + the signal that killed it) as soon as the child ends. The kernel
 * then kills whatever is left in the PID namespace.
 *
 * Why a separate program: PID 1 is the one process every other process in
 * the container can find. The runner execs this small static binary from a
 * sealed memfd after the container is fully set up, so PID 1 is a fresh image
 * that holds none of the runner's descriptors, environment or memory. It
 * also makes itself non-dumpable, so without CAP_SYS_PTRACE the container
 * can neither ptrace it nor read its /proc/1/{mem,environ,fd,exe}.
 *
 * Built static (gcc -static -Os) by runner/build.rs and embedded in the
 * runner; see runner/src/sandbox/init.rs. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Signals the kernel sends to a faulting thread: left unblocked so that a
 * bug in this program kills it instead of spinning. */
static const int synchronous[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS};

static int status_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* The child: its own process group (the terminal's foreground one, when
 * stdin is a terminal, so ^C reaches it and not this process), the signal
 * mask the runner gave, then exec. SIGTTOU is still blocked while it takes
 * the terminal, as tcsetpgrp from a background group requires. */
static void run_child(char **argv, const sigset_t *original) {
    if (setpgid(0, 0) == 0 && isatty(STDIN_FILENO)) {
        (void)tcsetpgrp(STDIN_FILENO, getpid());
    }
    sigprocmask(SIG_SETMASK, original, NULL);
    execve(argv[0], argv + 1, environ);
    int err = errno;
    fprintf(stderr, "strata-init: exec %s: %s\n", argv[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
}

/* Reaps every child that has changed state. Returns the workload's status
 * code once it has ended, -1 while it runs. A child that stopped because it
 * asked to be traced by its parent (PTRACE_TRACEME) is detached, with the
 * signal it stopped on, so it runs on instead of waiting forever for a
 * tracer that never comes. */
static int reap(pid_t workload) {
    int code = -1;
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG | __WALL);
        if (pid <= 0) return code;
        if (WIFSTOPPED(status)) {
            int sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
            (void)ptrace(PTRACE_DETACH, pid, NULL, (void *)(long)sig);
            continue;
        }
        if (pid == workload && (WIFEXITED(status) || WIFSIGNALED(status))) {
            code = status_code(status);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: strata-init FILE ARGV0 [ARG...]\n");
        return 125;
    }
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
        perror("strata-init: prctl(PR_SET_DUMPABLE)");
        return 125;
    }
    (void)prctl(PR_SET_NAME, "strata-init", 0, 0, 0);

    sigset_t all, original;
    sigfillset(&all);
    for (size_t i = 0; i < sizeof synchronous / sizeof synchronous[0]; i++) {
        sigdelset(&all, synchronous[i]);
    }
    if (sigprocmask(SIG_SETMASK, &all, &original) != 0) {
        perror("strata-init: sigprocmask");
        return 125;
    }

    pid_t workload = fork();
    if (workload < 0) {
        perror("strata-init: fork");
        return 125;
    }
    if (workload == 0) run_child(argv + 1, &original);

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0) {
            if (errno == EINTR) continue;
            perror("strata-init: sigwaitinfo");
            return 125;
        }
        if (sig != SIGCHLD) {
            (void)kill(workload, sig);
            continue;
        }
        int code = reap(workload);
        if (code >= 0) return code;
    }
}
