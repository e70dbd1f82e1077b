/*
 * cload: an independent load generator for length-framed TCP echo servers.
 *
 * Each request is a 4-byte big-endian body length followed by SIZE body bytes; the echo
 * server returns the same bytes. Every connection keeps DEPTH requests in flight (1 =
 * ping-pong). Latency is measured per request, from the write() that carries its first
 * byte to the read() that brings its last, into a log-linear histogram (HdrHistogram-like:
 * exact below 2048 ns, then 1024 buckets per power of two, i.e. <= 0.1% relative error).
 *
 * Build: gcc -O2 -o cload cload.c        (Linux, libc only; pthreads are in glibc >= 2.34)
 * Output: one JSON line on stdout. Exit 0 = ok, 1 = usage/connection failure, 2 = the
 * server's bytes did not match what was sent (errors > 0).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram: values in nanoseconds ---------------------------------------------- */
#define SUB_BITS 10                         /* 1024 sub-buckets per octave            */
#define SUB (1u << SUB_BITS)
#define OCTAVES 34                          /* covers values up to ~2^44 ns (~4.9 h)  */
#define NBUCKETS ((OCTAVES + 1) * SUB)

typedef struct {
    uint64_t counts[NBUCKETS];
    uint64_t total, max;
} hist_t;

static size_t bucket_of(uint64_t v) {
    if (v < 2 * SUB) return (size_t)v;                     /* linear range, exact       */
    unsigned shift = (63 - __builtin_clzll(v)) - SUB_BITS; /* v >> shift in [SUB, 2SUB) */
    size_t i = (size_t)(shift + 1) * SUB + (size_t)((v >> shift) - SUB);
    return i < NBUCKETS ? i : NBUCKETS - 1;
}

/* The highest value that lands in bucket i (as HdrHistogram reports "equivalent" values). */
static uint64_t bucket_top(size_t i) {
    if (i < 2 * SUB) return i;
    unsigned shift = (unsigned)(i / SUB) - 1;
    uint64_t low = ((uint64_t)(i % SUB) + SUB) << shift;
    return low + ((1ull << shift) - 1);
}

static void hist_record(hist_t *h, uint64_t v) {
    h->counts[bucket_of(v)]++;
    h->total++;
    if (v > h->max) h->max = v;
}

/* Value at quantile q (0..1), in microseconds; never above the exact maximum. */
static double hist_quantile_us(const hist_t *h, double q) {
    if (h->total == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999999), seen = 0;
    if (rank < 1) rank = 1;
    for (size_t i = 0; i < NBUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = bucket_top(i);
            return (double)(v < h->max ? v : h->max) / 1e3;
        }
    }
    return (double)h->max / 1e3;
}

/* ---- configuration and shared state ------------------------------------------------- */
static struct {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    const char *target;
    int conns, depth, threads, markers;
    size_t size, reqlen;            /* reqlen = 4 + size                                    */
    double seconds, warmup;
    uint8_t *txbuf;                 /* depth+1 copies of the request, back to back          */
    uint64_t t_measure, t_end;      /* CLOCK_MONOTONIC ns: warm-up ends, measured run ends  */
} cfg = {.target = "127.0.0.1:9501", .conns = 50, .depth = 1, .threads = 1,
         .size = 64, .seconds = 5, .warmup = 1};

static pthread_barrier_t connected, started;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "cload: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- one connection ----------------------------------------------------------------- */
typedef struct {
    int fd;
    int want_out;        /* EPOLLOUT armed (a write hit EAGAIN)                             */
    uint64_t tx_total;   /* bytes written so far on this connection                        */
    uint64_t tx_pending; /* bytes queued but not yet written                               */
    size_t rx_off;       /* position inside the response being received (0..reqlen)        */
    int rx_bad;          /* the response being received differs from the request           */
    uint64_t *fifo;      /* send times of requests in flight, oldest at head               */
    int head, count;
} conn_t;

typedef struct {
    int id, nconns, ep;
    conn_t *conns;
    hist_t *hist;
    uint64_t errors;
    pthread_t tid;
} worker_t;

/* Connects one non-blocking socket, waiting at most 5 s for the handshake. */
static int open_conn(void) {
    int fd = socket(cfg.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&cfg.addr, cfg.addrlen) < 0) {
        if (errno != EINPROGRESS) {
            fprintf(stderr, "cload: connect %s: %s\n", cfg.target, strerror(errno));
            exit(1);
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int r;
        while ((r = poll(&p, 1, 5000)) < 0 && errno == EINTR) {}
        int err = 0;
        socklen_t len = sizeof err;
        if (r == 0) err = ETIMEDOUT;
        else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            fprintf(stderr, "cload: connect %s: %s\n", cfg.target, strerror(err));
            exit(1);
        }
    }
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0) die("TCP_NODELAY");
    return fd;
}

static void set_events(worker_t *w, conn_t *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = out;
}

/* Writes queued requests until done or EAGAIN. A request's send time is taken just before
 * the write() that carries its first byte; ceil(bytes/reqlen) requests have started. */
static void conn_flush(worker_t *w, conn_t *c) {
    const uint64_t L = cfg.reqlen;
    while (c->tx_pending > 0) {
        size_t off = (size_t)(c->tx_total % L); /* all requests are identical: offset < L */
        size_t len = c->tx_pending;             /* off + len <= (depth + 1) * L           */
        uint64_t t = now_ns();
        ssize_t n = send(c->fd, cfg.txbuf + off, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out) set_events(w, c, 1);
                return;
            }
            die("send");
        }
        uint64_t started_before = (c->tx_total + L - 1) / L;
        c->tx_total += (uint64_t)n;
        c->tx_pending -= (uint64_t)n;
        for (uint64_t k = (c->tx_total + L - 1) / L - started_before; k > 0; k--) {
            c->fifo[(c->head + c->count) % cfg.depth] = t;
            c->count++;
        }
    }
    if (c->want_out) set_events(w, c, 0);
}

/* One response came back whole: record its latency and, while running, send another. */
static void complete(worker_t *w, conn_t *c, uint64_t arrival) {
    if (c->count == 0) { w->errors++; return; } /* bytes nobody asked for */
    uint64_t sent = c->fifo[c->head];
    c->head = (c->head + 1) % cfg.depth;
    c->count--;
    if (c->rx_bad) w->errors++;
    else if (arrival >= cfg.t_measure && arrival < cfg.t_end) hist_record(w->hist, arrival - sent);
    if (arrival < cfg.t_end) c->tx_pending += cfg.reqlen;
}

/* Reads what is available and matches it, byte for byte, against the request stream.
 * The first 4 bytes of each response are its length field; it must equal what we sent. */
static void conn_read(worker_t *w, conn_t *c, uint8_t *buf, size_t cap) {
    for (;;) {
        ssize_t n = recv(c->fd, buf, cap, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            die("recv");
        }
        if (n == 0) {
            fprintf(stderr, "cload: %s closed a connection\n", cfg.target);
            exit(1);
        }
        uint64_t arrival = now_ns();
        for (size_t i = 0; i < (size_t)n;) {
            size_t take = cfg.reqlen - c->rx_off;
            if (take > (size_t)n - i) take = (size_t)n - i;
            if (memcmp(buf + i, cfg.txbuf + c->rx_off, take) != 0) c->rx_bad = 1;
            c->rx_off += take;
            i += take;
            if (c->rx_off == cfg.reqlen) {
                complete(w, c, arrival);
                c->rx_off = 0;
                c->rx_bad = 0;
            }
        }
        if ((size_t)n < cap) break; /* short read: the socket is drained */
    }
    conn_flush(w, c);
}

/* ---- a load thread ------------------------------------------------------------------ */
static void *worker_main(void *arg) {
    worker_t *w = arg;
    size_t cap = 256 * 1024;
    uint8_t *buf = malloc(cap);
    struct epoll_event evs[256];
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    if (w->ep < 0 || !buf) die("epoll_create1/malloc");
    for (int i = 0; i < w->nconns; i++) {
        conn_t *c = &w->conns[i];
        c->fd = open_conn();
        if (!(c->fifo = malloc(sizeof(uint64_t) * (size_t)cfg.depth))) die("malloc");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    pthread_barrier_wait(&connected); /* everyone is connected; main sets the clock ... */
    pthread_barrier_wait(&started);   /* ... and the run starts                          */
    for (int i = 0; i < w->nconns; i++) {
        w->conns[i].tx_pending = (uint64_t)cfg.depth * cfg.reqlen;
        conn_flush(w, &w->conns[i]);
    }
    for (;;) {
        uint64_t now = now_ns();
        if (now >= cfg.t_end) break;
        uint64_t next = now < cfg.t_measure ? cfg.t_measure : cfg.t_end;
        int timeout = (int)((next - now + 999999) / 1000000); /* ms, rounded up */
        int n = epoll_wait(w->ep, evs, 256, timeout);          /* blocks: no busy loop */
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) conn_read(w, c, buf, cap);
            else if (evs[i].events & EPOLLOUT) conn_flush(w, c);
        }
    }
    for (int i = 0; i < w->nconns; i++) {
        close(w->conns[i].fd);
        free(w->conns[i].fifo);
    }
    close(w->ep);
    free(buf);
    return NULL;
}

/* ---- command line ------------------------------------------------------------------- */
static void usage(void) {
    fprintf(stderr,
            "usage: cload [-a HOST:PORT] [-c CONNECTIONS] [-d DEPTH] [-s SIZE] [-t SECONDS]\n"
            "             [-w SECONDS] [-T THREADS] [-M]\n"
            "  -a  target (default 127.0.0.1:9501)   -c  connections (default 50)\n"
            "  -d  requests in flight per connection, 1 = ping-pong (default 1)\n"
            "  -s  body bytes (default 64)   -t  measured seconds (default 5)\n"
            "  -w  warm-up seconds, not measured (default 1)   -T  load threads (default 1)\n"
            "  -M  print 'cload: measure start' / 'cload: measure end' on stderr\n");
    exit(1);
}

static double number(const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "cload: bad number '%s' (%g..%g)\n", s, lo, hi);
        usage();
    }
    return v;
}

static void resolve(const char *target) {
    char host[256];
    const char *colon = strrchr(target, ':');
    if (!colon || colon == target || (size_t)(colon - target) >= sizeof host) usage();
    memcpy(host, target, (size_t)(colon - target));
    host[colon - target] = 0;
    char *h = host;
    if (h[0] == '[' && h[strlen(h) - 1] == ']') { h[strlen(h) - 1] = 0; h++; } /* [::1] */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
    int r = getaddrinfo(h, colon + 1, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "cload: %s: %s\n", target, gai_strerror(r));
        exit(1);
    }
    memcpy(&cfg.addr, res->ai_addr, res->ai_addrlen);
    cfg.addrlen = res->ai_addrlen;
    freeaddrinfo(res);
}

static void sleep_until(uint64_t t) {
    struct timespec ts = {.tv_sec = (time_t)(t / 1000000000ull), .tv_nsec = (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "a:c:d:s:t:w:T:Mh")) != -1) {
        switch (opt) {
        case 'a': cfg.target = optarg; break;
        case 'c': cfg.conns = (int)number(optarg, 1, 1000000); break;
        case 'd': cfg.depth = (int)number(optarg, 1, 65536); break;
        case 's': cfg.size = (size_t)number(optarg, 0, 64 << 20); break;
        case 't': cfg.seconds = number(optarg, 0.001, 1e6); break;
        case 'w': cfg.warmup = number(optarg, 0, 1e6); break;
        case 'T': cfg.threads = (int)number(optarg, 1, 1024); break;
        case 'M': cfg.markers = 1; break;
        default: usage();
        }
    }
    if (optind != argc) usage();
    resolve(cfg.target);
    if (cfg.threads > cfg.conns) cfg.threads = cfg.conns;

    /* Many connections need many descriptors: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    signal(SIGPIPE, SIG_IGN);

    /* The request: length (big-endian) + a rotating alphabet; depth+1 copies in a row so
     * any run of queued requests is one contiguous slice starting within the first copy. */
    cfg.reqlen = 4 + cfg.size;
    size_t txlen = cfg.reqlen * ((size_t)cfg.depth + 1);
    if (!(cfg.txbuf = malloc(txlen))) die("malloc");
    uint32_t be = htonl((uint32_t)cfg.size);
    memcpy(cfg.txbuf, &be, 4);
    for (size_t i = 0; i < cfg.size; i++) cfg.txbuf[4 + i] = (uint8_t)('a' + i % 26);
    for (size_t off = cfg.reqlen; off < txlen; off += cfg.reqlen)
        memcpy(cfg.txbuf + off, cfg.txbuf, cfg.reqlen);

    /* Each thread gets its share of the connections. */
    worker_t *ws = calloc((size_t)cfg.threads, sizeof *ws);
    if (!ws) die("calloc");
    pthread_barrier_init(&connected, NULL, (unsigned)cfg.threads + 1);
    pthread_barrier_init(&started, NULL, (unsigned)cfg.threads + 1);
    for (int i = 0; i < cfg.threads; i++) {
        worker_t *w = &ws[i];
        w->id = i;
        w->nconns = cfg.conns / cfg.threads + (i < cfg.conns % cfg.threads);
        w->conns = calloc((size_t)w->nconns, sizeof(conn_t));
        w->hist = calloc(1, sizeof(hist_t));
        if (!w->conns || !w->hist) die("calloc");
        if ((errno = pthread_create(&w->tid, NULL, worker_main, w)) != 0) die("pthread_create");
    }
    pthread_barrier_wait(&connected);
    uint64_t t0 = now_ns();
    cfg.t_measure = t0 + (uint64_t)(cfg.warmup * 1e9);
    cfg.t_end = cfg.t_measure + (uint64_t)(cfg.seconds * 1e9);
    pthread_barrier_wait(&started);
    if (cfg.markers) { /* for scripts that sample the server's CPU around the measured run */
        sleep_until(cfg.t_measure);
        fprintf(stderr, "cload: measure start\n");
        sleep_until(cfg.t_end);
        fprintf(stderr, "cload: measure end\n");
    }

    /* Merge the per-thread histograms. */
    hist_t *all = calloc(1, sizeof(hist_t));
    if (!all) die("calloc");
    uint64_t errors = 0;
    for (int i = 0; i < cfg.threads; i++) {
        pthread_join(ws[i].tid, NULL);
        for (size_t b = 0; b < NBUCKETS; b++) all->counts[b] += ws[i].hist->counts[b];
        all->total += ws[i].hist->total;
        if (ws[i].hist->max > all->max) all->max = ws[i].hist->max;
        errors += ws[i].errors;
    }
    printf("{\"generator\":\"cload\",\"connections\":%d,\"depth\":%d,\"size\":%zu,"
           "\"threads\":%d,\"seconds\":%.3f,\"responses\":%llu,\"rate\":%.1f,"
           "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,"
           "\"errors\":%llu}\n",
           cfg.conns, cfg.depth, cfg.size, cfg.threads, cfg.seconds,
           (unsigned long long)all->total, (double)all->total / cfg.seconds,
           hist_quantile_us(all, 0.50), hist_quantile_us(all, 0.99),
           hist_quantile_us(all, 0.999), (double)all->max / 1e3, (unsigned long long)errors);
    fflush(stdout);
    return errors ? 2 : 0;
}
