/*
 * The pod sandbox: holds a pod's namespaces open while doing nothing. When the pod shares its
 * PID namespace this is PID 1, so it also reaps the orphans that get reparented to it.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Unbuffered, so the message is out even if the sandbox is killed right after. */
static void say(const char *message) {
    ssize_t ignored = write(STDERR_FILENO, message, strlen(message));
    (void)ignored;
}

static void stop(int signal_number) {
    (void)signal_number;
    _exit(0);
}

static void reap(int signal_number) {
    (void)signal_number;
    /* The handler can interrupt code that reads errno. */
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

int main(void) {
    if (getpid() != 1) {
        say("pause: not PID 1, so orphans are not reaped here\n");
    }
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
    sigemptyset(&on_stop.sa_mask);
    sigemptyset(&on_child.sa_mask);
    if (sigaction(SIGINT, &on_stop, NULL) != 0 || sigaction(SIGTERM, &on_stop, NULL) != 0 ||
        sigaction(SIGCHLD, &on_child, NULL) != 0) {
        say("pause: sigaction failed\n");
        return 1;
    }
    for (;;) {
        pause();
    }
}
