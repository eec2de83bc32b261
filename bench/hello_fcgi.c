/* The floor for bench/fastcgi.py: a single-threaded libfcgi responder answering
 * "Hello World\n" with no Python, to see what nginx + FastCGI alone cost on this machine.
 *
 *   gcc -O2 -o hello_fcgi bench/hello_fcgi.c -lfcgi      (Debian: apt-get install libfcgi-dev)
 *   hello_fcgi /path/to.sock | 127.0.0.1:9000
 *
 * A unix socket is made mode 0666 (the benchmark's nginx workers may run as another user).
 * libfcgi honours FCGI_KEEP_CONN: with `fastcgi_keep_conn on` it reads the next request from
 * the same connection. Stops on SIGTERM/SIGINT. */
#include <fcgiapp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char RESPONSE[] =
    "Status: 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 12\r\n"
    "\r\n"
    "Hello World\n";

static void stop(int sig) {
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s /path/to.sock | 127.0.0.1:PORT\n", argv[0]);
        return 2;
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
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    signal(SIGPIPE, SIG_IGN);

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
