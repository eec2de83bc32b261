/* The floor for bench/fastcgi.py: a single-threaded libfcgi responder answering
 * "Hello World\n" with no Python, to see what nginx + FastCGI alone cost on this machine.
 *
 *   gcc -O2 -o hello_fcgi bench/hello_fcgi.c -lfcgi      (Debian: apt-get install libfcgi-dev)
 *   hello_fcgi /path/to.sock | 127.0.0.1:9000 [PROCS]
 *
 * PROCS (default 1): with 1 the process serves by itself, as before; with N > 1 it opens the
 * socket, forks N children that all accept on it (FCGX_Accept_r, one request at a time each)
 * and waits. SIGTERM/SIGINT to the parent are forwarded to the children, so stopping the
 * parent's PID stops them all (and on Linux a child also gets SIGTERM if the parent dies).
 * The parent exits once every child has; a child that dies on its own is not replaced.
 *
 * A unix socket is made mode 0666 (the benchmark's nginx workers may run as another user).
 * libfcgi honours FCGI_KEEP_CONN: with `fastcgi_keep_conn on` it reads the next request from
 * the same connection. Stops on SIGTERM/SIGINT. */
#include <errno.h>
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define MAX_PROCS 256

static const char RESPONSE[] =
    "Status: 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "\r\n"
    "Hello World\n";

static pid_t children[MAX_PROCS];
static volatile sig_atomic_t nchildren;

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

/* The parent's handler: pass the signal on; the wait loop below sees the children exit. */
static void forward(int sig) {
    int saved = errno;
    for (sig_atomic_t i = 0; i < nchildren; i++)
        kill(children[i], sig);
    errno = saved;
}

static int serve(int fd) {
    FCGX_Request req;
    if (FCGX_InitRequest(&req, fd, 0) != 0) {
        fprintf(stderr, "FCGX_InitRequest failed\n");
        return 1;
    }
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutStr(RESPONSE, (int)(sizeof RESPONSE - 1), req.out);
        FCGX_Finish_r(&req);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s /path/to.sock | 127.0.0.1:PORT [PROCS]\n", argv[0]);
        return 2;
    }
    long procs = 1;
    if (argc == 3) {
        char *end;
        procs = strtol(argv[2], &end, 10);
        if (*argv[2] == '\0' || *end != '\0' || procs < 1 || procs > MAX_PROCS) {
            fprintf(stderr, "PROCS must be 1..%d, not %s\n", MAX_PROCS, argv[2]);
            return 2;
        }
    }
    if (FCGX_Init() != 0) {
        fprintf(stderr, "FCGX_Init failed\n");
        return 1;
    }
    int fd = FCGX_OpenSocket(argv[1], 128);
    if (fd < 0) {
        fprintf(stderr, "cannot listen on %s\n", argv[1]);
        return 1;
    }
    if (argv[1][0] == '/' && chmod(argv[1], 0666) != 0) {
        perror("chmod");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (procs == 1) {
        signal(SIGTERM, stop);
        signal(SIGINT, stop);
        return serve(fd);
    }

    /* Block the stop signals while forking: a signal then is handled once every child is
     * recorded (forward), and the children install their own handler before unblocking. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pid_t parent = getpid();
    for (long i = 0; i < procs; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            forward(SIGTERM);
            break;
        }
        if (pid == 0) {
            signal(SIGTERM, stop);
            signal(SIGINT, stop);
#ifdef __linux__
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(0);
#endif
            sigprocmask(SIG_SETMASK, &old, NULL);
            _exit(serve(fd));
        }
        children[nchildren] = pid;
        nchildren = nchildren + 1;
    }
    (void)parent;
    close(fd);
    sigprocmask(SIG_SETMASK, &old, NULL);

    int status = 0, left = (int)nchildren, code = 0;
    while (left > 0) {
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        left--;
        if (WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0)) {
            fprintf(stderr, "child %d: %s %d\n", (int)pid,
                    WIFSIGNALED(status) ? "killed by signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            code = 1;
        }
    }
    return code;
}
