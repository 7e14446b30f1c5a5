/*
 * The reject-path client of the edge benchmark (bench/mta/run.ts): SESSIONS threads, each opening
 * a connection per transaction -- greeting, EHLO, MAIL FROM, one RCPT TO an address no server
 * knows, QUIT -- until COUNT recipients were answered. smtp-source cannot do this (it stops at the
 * first refusal), and the same small C client drives every server, so the figure compares the
 * servers and costs the shared cores about what smtp-source does. One RCPT per connection keeps
 * every session below the servers' error limits (Postfix's smtpd_soft_error_limit, Postern's
 * MAIL_MTA_SOFT_ERROR_LIMIT), which would otherwise measure their sleep.
 *
 *   reject-client HOST PORT SESSIONS COUNT RECIPIENT [CODE]
 *
 * Prints one line: "rejected=N other=N errors=N seconds=S"; rejected counts replies with CODE (550
 * unless given; smtp-sink -f RCPT answers 500) to the RCPT, other any other reply to it (the first
 * one is shown on stderr), errors broken connections.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in server;
static long total;
static const char *recipient;
static int refusal_code = 550;
static atomic_long started;
static atomic_long rejected;
static atomic_long other;
static atomic_long errors;
static atomic_int reported;

struct conn {
    int fd;
    char buf[8192];
    size_t len;
};

/* Reads one whole reply (the last line has a space after the code); returns its code or -1. */
static int read_reply(struct conn *c, char *last, size_t last_size) {
    for (;;) {
        char *start = c->buf;
        char *end;
        while ((end = memchr(start, '\n', c->len - (size_t)(start - c->buf))) != NULL) {
            size_t line_len = (size_t)(end - start) + 1;
            int final = line_len >= 4 && start[3] != '-';
            if (final) {
                int code = atoi(start);
                if (last) {
                    size_t n = line_len < last_size ? line_len : last_size - 1;
                    memcpy(last, start, n);
                    last[n] = '\0';
                }
                size_t rest = c->len - (size_t)(end + 1 - c->buf);
                memmove(c->buf, end + 1, rest);
                c->len = rest;
                return code;
            }
            start = end + 1;
        }
        if (c->len == sizeof c->buf) return -1;
        ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (n <= 0) return -1;
        c->len += (size_t)n;
    }
}

static int command(struct conn *c, const char *line, char *last, size_t last_size) {
    size_t n = strlen(line);
    if (write(c->fd, line, n) != (ssize_t)n) return -1;
    return read_reply(c, last, last_size);
}

static void *session(void *unused) {
    (void)unused;
    char rcpt[512];
    char reply[512];
    snprintf(rcpt, sizeof rcpt, "RCPT TO:<%s>\r\n", recipient);
    while (atomic_fetch_add(&started, 1) < total) {
        struct conn c = {.len = 0};
        c.fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        int code = -1;
        if (connect(c.fd, (struct sockaddr *)&server, sizeof server) == 0 && read_reply(&c, NULL, 0) == 220 &&
            command(&c, "EHLO reject.client.test\r\n", NULL, 0) == 250 &&
            command(&c, "MAIL FROM:<bench@client.test>\r\n", NULL, 0) == 250) {
            code = command(&c, rcpt, reply, sizeof reply);
        }
        if (code == refusal_code) {
            atomic_fetch_add(&rejected, 1);
        } else if (code > 0) {
            atomic_fetch_add(&other, 1);
            if (atomic_exchange(&reported, 1) == 0) fprintf(stderr, "unexpected reply to RCPT: %s", reply);
        } else {
            atomic_fetch_add(&errors, 1);
        }
        if (code > 0) command(&c, "QUIT\r\n", NULL, 0);
        close(c.fd);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT SESSIONS COUNT RECIPIENT [CODE]\n", argv[0]);
        return 2;
    }
    server.sin_family = AF_INET;
    server.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &server.sin_addr) != 1) {
        fprintf(stderr, "not an IPv4 address: %s\n", argv[1]);
        return 2;
    }
    int sessions = atoi(argv[3]);
    total = atol(argv[4]);
    recipient = argv[5];
    if (argc == 7) refusal_code = atoi(argv[6]);
    if (sessions < 1 || total < 1) {
        fprintf(stderr, "SESSIONS and COUNT must be positive\n");
        return 2;
    }
    if (refusal_code < 400 || refusal_code > 599) {
        fprintf(stderr, "CODE must be a 4xx or 5xx reply code\n");
        return 2;
    }
    pthread_t *threads = calloc((size_t)sessions, sizeof *threads);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < sessions; i++) pthread_create(&threads[i], NULL, session, NULL);
    for (int i = 0; i < sessions; i++) pthread_join(threads[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("rejected=%ld other=%ld errors=%ld seconds=%.3f\n", atomic_load(&rejected), atomic_load(&other),
           atomic_load(&errors), seconds);
    free(threads);
    return 0;
}
