/*
 * openloop: an open-loop HTTP/1.1 load generator (latency at a fixed rate).
 *
 * Theory of operation
 * -------------------
 * Request i is *scheduled* at start + i / rate: a uniform grid, independent of
 * how fast the server answers (open loop, as wrk2 does). A fixed set of
 * keep-alive connections carries the requests, one outstanding request per
 * connection (no pipelining). When request i is due it goes out on an idle
 * connection; if every connection is busy it waits until one frees up, so the
 * actual send time may slip behind the schedule. Two latencies are recorded
 * for every response:
 *   - from the actual send time (what the server took), and
 *   - from the scheduled time (coordinated-omission corrected: includes the
 *     wait caused by a slow server holding every connection).
 * One thread, one epoll set; a timerfd armed on CLOCK_MONOTONIC at the next
 * scheduled time wakes the loop with nanosecond resolution and no spinning
 * (the generator shares its core with the upstream); timer slack is set to
 * 1 ns so the kernel does not batch the wake-ups. A timer wake-up on this kind
 * of VM lands ~30 us late, so the timer is armed SPIN us early (-s, default 40)
 * and the last stretch is waited out by polling the clock: a few percent of a
 * core at 3,000 req/s, for a send slip of a few microseconds.
 *
 * Responses are framed by Content-Length only (chunked is counted as an error).
 * Samples scheduled within the first WARMUP seconds are not recorded.
 * Output: one JSON object on stdout. Exit status 0 unless the arguments or
 * the initial connections failed.
 *
 * Usage: openloop -p PORT -r RATE -d SECONDS [-H 127.0.0.1] [-c 32]
 *                 [-w WARMUP_S] [-g GRACE_S] [-u /path] [-s SPIN_US]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUFSZ 65536
#define MAXCONN 1024
#define TIMER_TAG UINT64_MAX

typedef struct {
    int fd;
    int connecting;
    int busy;         /* a request is outstanding */
    uint32_t gen;     /* bumped on every reconnect: stale epoll events are ignored */
    int64_t idx;      /* its index on the schedule */
    int64_t sent_ns;  /* when it actually went out */
    size_t wpos;      /* bytes of the request written so far */
    size_t len;       /* bytes in buf */
    char buf[BUFSZ];
} conn_t;

static struct sockaddr_in g_addr;
static int g_ep;
static char g_req[512];
static size_t g_reqlen;
static conn_t *g_conns;
static int g_nconn;
static int *g_idle; /* stack of idle connection indices */
static int g_nidle;

static int64_t *g_lat_send, *g_lat_sched, *g_slip;
static int64_t g_nsamples, g_warm_idx;
static int64_t g_completed, g_err_status, g_err_io, g_err_parse, g_reconnects;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t tag(int i) { return (uint64_t)i | ((uint64_t)g_conns[i].gen << 32); }

/* The connection an epoll event is for, or -1 if it belongs to a closed socket. */
static int untag(uint64_t t) {
    int i = (int)(t & 0xffffffffu);
    return g_conns[i].fd >= 0 && g_conns[i].gen == (uint32_t)(t >> 32) ? i : -1;
}

static int conn_open(int i) {
    conn_t *c = &g_conns[i];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(fd, (struct sockaddr *)&g_addr, sizeof g_addr);
    if (rc < 0 && errno != EINPROGRESS) { close(fd); return -1; }
    c->fd = fd;
    c->connecting = 1;
    c->busy = 0;
    c->len = 0;
    c->wpos = 0;
    c->gen++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.u64 = tag(i)};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev);
    return 0;
}

static void set_events(int i, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = tag(i)};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, g_conns[i].fd, &ev);
}

static void push_idle(int i) { g_idle[g_nidle++] = i; }

/* Drop a broken connection: its outstanding request (if any) is an error. */
static void conn_reset(int i) {
    conn_t *c = &g_conns[i];
    if (c->busy) g_err_io++;
    int was_connecting = c->connecting;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    g_reconnects++;
    /* A connection that was idle sits on the idle stack: take it off. */
    if (!c->busy && !was_connecting) {
        for (int k = 0; k < g_nidle; k++)
            if (g_idle[k] == i) { g_idle[k] = g_idle[--g_nidle]; break; }
    }
    if (conn_open(i) < 0) g_err_io++;
}

static void record(conn_t *c, int64_t done_ns, int64_t start_ns, double period_ns) {
    g_completed++;
    if (c->idx < g_warm_idx) return;
    int64_t sched = start_ns + (int64_t)((double)c->idx * period_ns);
    g_lat_send[g_nsamples] = done_ns - c->sent_ns;
    g_lat_sched[g_nsamples] = done_ns - sched;
    g_slip[g_nsamples] = c->sent_ns - sched;
    g_nsamples++;
}

static void try_write(int i) {
    conn_t *c = &g_conns[i];
    while (c->wpos < g_reqlen) {
        ssize_t n = send(c->fd, g_req + c->wpos, g_reqlen - c->wpos, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) { set_events(i, EPOLLIN | EPOLLOUT | EPOLLRDHUP); return; }
            conn_reset(i);
            return;
        }
        c->wpos += (size_t)n;
    }
    set_events(i, EPOLLIN | EPOLLRDHUP);
}

static void send_request(int i, int64_t idx) {
    conn_t *c = &g_conns[i];
    c->busy = 1;
    c->idx = idx;
    c->wpos = 0;
    c->sent_ns = now_ns();
    try_write(i);
}

/* Parses one complete response out of c->buf, if there is one.
 * Returns 1 when a response was consumed, 0 when more bytes are needed,
 * -1 on a framing error; *close_after is set for "Connection: close". */
static int parse_response(conn_t *c, int *status, int *close_after) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return c->len >= BUFSZ ? -1 : 0;
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (c->len < 12 || strncmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(c->buf + 9);
    *close_after = 0;
    long clen = -1;
    char *line = memchr(c->buf, '\n', hlen);
    while (line && line + 1 < c->buf + hlen - 2) {
        line++;
        if (strncasecmp(line, "content-length:", 15) == 0) clen = strtol(line + 15, NULL, 10);
        else if (strncasecmp(line, "transfer-encoding:", 18) == 0) return -1;
        char *eol = memchr(line, '\n', (size_t)(c->buf + hlen - line));
        if (strncasecmp(line, "connection:", 11) == 0 && eol &&
            memmem(line, (size_t)(eol - line), "close", 5))
            *close_after = 1;
        line = eol;
    }
    if (clen < 0) return -1;
    size_t total = hlen + (size_t)clen;
    if (total > BUFSZ) return -1;
    if (c->len < total) return 0;
    memmove(c->buf, c->buf + total, c->len - total);
    c->len -= total;
    return 1;
}

static void on_readable(int i, int64_t start_ns, double period_ns) {
    conn_t *c = &g_conns[i];
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, BUFSZ - c->len, 0);
        if (n == 0) { conn_reset(i); return; }
        if (n < 0) {
            if (errno == EAGAIN) return;
            conn_reset(i);
            return;
        }
        c->len += (size_t)n;
        int status = 0, close_after = 0;
        int r = parse_response(c, &status, &close_after);
        if (r == 0) continue;
        if (r < 0 || !c->busy || c->len != 0) { g_err_parse++; conn_reset(i); return; }
        int64_t t = now_ns();
        if (status < 200 || status >= 400) g_err_status++;
        record(c, t, start_ns, period_ns);
        c->busy = 0;
        if (close_after) { conn_reset(i); return; }
        push_idle(i);
        return;
    }
}

static void on_writable(int i) {
    conn_t *c = &g_conns[i];
    if (c->connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { conn_reset(i); return; }
        c->connecting = 0;
        set_events(i, EPOLLIN | EPOLLRDHUP);
        push_idle(i);
        return;
    }
    if (c->busy) try_write(i);
}

static void print_stats(const char *name, int64_t *v, int64_t n, int last) {
    if (n == 0) { printf("\"%s\": null%s", name, last ? "" : ", "); return; }
    qsort(v, (size_t)n, sizeof *v, cmp_i64);
    double sum = 0;
    for (int64_t k = 0; k < n; k++) sum += (double)v[k];
    static const double ps[] = {0.5, 0.9, 0.99, 0.999};
    static const char *pn[] = {"p50", "p90", "p99", "p999"};
    printf("\"%s\": {", name);
    for (int k = 0; k < 4; k++) {
        int64_t at = (int64_t)(ps[k] * (double)n + 0.999999) - 1;
        if (at < 0) at = 0;
        printf("\"%s\": %.1f, ", pn[k], (double)v[at] / 1e3);
    }
    printf("\"max\": %.1f, \"mean\": %.1f}%s", (double)v[n - 1] / 1e3, sum / (double)n / 1e3,
           last ? "" : ", ");
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/";
    int port = 0;
    double rate = 0, duration = 0, warmup = 1.0, grace = 2.0, spin_us = 40.0;
    g_nconn = 32;
    int opt;
    while ((opt = getopt(argc, argv, "H:p:r:d:c:w:g:u:s:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'c': g_nconn = atoi(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'g': grace = atof(optarg); break;
        case 'u': path = optarg; break;
        case 's': spin_us = atof(optarg); break;
        default: fprintf(stderr, "usage: %s -p PORT -r RATE -d SECONDS\n", argv[0]); return 2;
        }
    }
    if (port <= 0 || rate <= 0 || duration <= 0 || g_nconn < 1 || g_nconn > MAXCONN) {
        fprintf(stderr, "openloop: need -p PORT -r RATE -d SECONDS, 1 <= -c <= %d\n", MAXCONN);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* The default 50 us timer slack would add up to 50 us of slip to every send. */
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    memset(&g_addr, 0, sizeof g_addr);
    g_addr.sin_family = AF_INET;
    g_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &g_addr.sin_addr) != 1) { fprintf(stderr, "bad host\n"); return 2; }
    g_reqlen = (size_t)snprintf(g_req, sizeof g_req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                                path, host, port);

    int64_t total = (int64_t)((warmup + duration) * rate);
    double period_ns = 1e9 / rate;
    g_warm_idx = (int64_t)(warmup * rate);
    g_lat_send = calloc((size_t)total + 1, sizeof(int64_t));
    g_lat_sched = calloc((size_t)total + 1, sizeof(int64_t));
    g_slip = calloc((size_t)total + 1, sizeof(int64_t));
    g_conns = calloc((size_t)g_nconn, sizeof(conn_t));
    g_idle = calloc((size_t)g_nconn, sizeof(int));
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (!g_lat_send || !g_lat_sched || !g_slip || !g_conns || !g_idle || g_ep < 0 || tfd < 0) {
        perror("openloop: setup");
        return 1;
    }
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, tfd, &tev);

    /* Open every connection before the clock starts. */
    for (int i = 0; i < g_nconn; i++)
        if (conn_open(i) < 0) { perror("openloop: connect"); return 1; }
    struct epoll_event evs[256];
    int64_t setup_deadline = now_ns() + 5000000000LL;
    while (g_nidle < g_nconn) {
        if (now_ns() > setup_deadline || g_reconnects > 10 * g_nconn) {
            fprintf(stderr, "openloop: could not open %d connections to %s:%d\n", g_nconn, host,
                    port);
            return 1;
        }
        int n = epoll_wait(g_ep, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u64 == TIMER_TAG) continue;
            int i = untag(evs[k].data.u64);
            if (i < 0) continue;
            if (evs[k].events & (EPOLLERR | EPOLLHUP)) conn_reset(i);
            else if (evs[k].events & EPOLLOUT) on_writable(i);
        }
    }
    g_reconnects = 0;

    int64_t start_ns = now_ns() + 10000000LL;
    int64_t last_sched = start_ns + (int64_t)((double)(total - 1) * period_ns);
    int64_t deadline = last_sched + (int64_t)(grace * 1e9);
    int64_t next = 0, armed_for = -1;
    int64_t spin_ns = (int64_t)(spin_us * 1e3);
    for (;;) {
        int64_t t = now_ns();
        if (next < total && g_nidle > 0) {
            /* Close to the next slot: wait it out on the clock rather than the timer. */
            int64_t slot = start_ns + (int64_t)((double)next * period_ns);
            if (slot > t && slot - t <= spin_ns)
                while ((t = now_ns()) < slot) { /* spin */ }
        }
        int64_t due = t < start_ns ? 0 : (int64_t)((double)(t - start_ns) / period_ns) + 1;
        if (due > total) due = total;
        while (next < due && g_nidle > 0) send_request(g_idle[--g_nidle], next++);
        int outstanding = 0;
        for (int i = 0; i < g_nconn; i++) outstanding += g_conns[i].busy;
        if (next >= total && outstanding == 0) break;
        if (t > deadline) break;
        int64_t wake = next < total ? start_ns + (int64_t)((double)next * period_ns) - spin_ns
                                    : deadline;
        if (wake != armed_for) {
            struct itimerspec its = {.it_value = {.tv_sec = wake / 1000000000LL,
                                                  .tv_nsec = wake % 1000000000LL}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            armed_for = wake;
        }
        int n = epoll_wait(g_ep, evs, 256, 1000);
        for (int k = 0; k < n; k++) {
            if (evs[k].data.u64 == TIMER_TAG) {
                uint64_t x;
                if (read(tfd, &x, sizeof x) < 0) { /* spurious: nothing to do */ }
                armed_for = -1;
                continue;
            }
            int i = untag(evs[k].data.u64);
            if (i < 0) continue;
            uint32_t e = evs[k].events;
            if (e & EPOLLIN) on_readable(i, start_ns, period_ns);
            else if (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) conn_reset(i);
            else if (e & EPOLLOUT) on_writable(i);
        }
    }
    double elapsed = (double)(now_ns() - start_ns) / 1e9;
    int64_t timeouts = 0;
    for (int i = 0; i < g_nconn; i++) timeouts += g_conns[i].busy;
    int64_t unsent = total - next;
    double measured_window = duration;

    printf("{\"rate\": %.1f, \"duration_s\": %.3f, \"warmup_s\": %.3f, \"connections\": %d, ",
           rate, duration, warmup, g_nconn);
    printf("\"scheduled\": %lld, \"completed\": %lld, \"samples\": %lld, \"elapsed_s\": %.3f, ",
           (long long)total, (long long)g_completed, (long long)g_nsamples, elapsed);
    printf("\"achieved_rps\": %.1f, ", (double)g_nsamples / measured_window);
    printf("\"errors\": {\"status\": %lld, \"io\": %lld, \"parse\": %lld, \"timeout\": %lld, "
           "\"unsent\": %lld, \"reconnects\": %lld}, ",
           (long long)g_err_status, (long long)g_err_io, (long long)g_err_parse,
           (long long)timeouts, (long long)unsent, (long long)g_reconnects);
    int64_t late_100us = 0, late_1ms = 0;
    for (int64_t k = 0; k < g_nsamples; k++) {
        late_100us += g_slip[k] > 100000;
        late_1ms += g_slip[k] > 1000000;
    }
    double ns = g_nsamples ? (double)g_nsamples : 1.0;
    printf("\"late_100us_frac\": %.5f, \"late_1ms_frac\": %.5f, ", (double)late_100us / ns,
           (double)late_1ms / ns);
    printf("\"latency_us\": {");
    print_stats("send", g_lat_send, g_nsamples, 0);
    print_stats("sched", g_lat_sched, g_nsamples, 1);
    printf("}, ");
    print_stats("slip_us", g_slip, g_nsamples, 1);
    printf("}\n");
    return 0;
}
