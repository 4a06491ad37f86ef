/*
 * sseclient: closed-loop SSE load generator for the servegate benchmarks.
 *
 * Opens N keep-alive HTTP/1.1 connections (started evenly over a ramp), and on each one sends streaming
 * chat-completion POSTs back to back until the run duration ends; streams still open at the hard stop are
 * counted as unfinished. It times every read: the first SSE event of a response gives TTFB (from request
 * start, connect included), each later read that completes events gives one gap for its first event and a gap
 * of 0 for every further event in the same read (coalesced events show up as zero gaps). One thread, epoll,
 * so 2000 streams cost little CPU on the load-generator core.
 *
 * Output: one JSON object on stdout (percentiles in ms).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_IDLE, ST_CONNECTING, ST_HEADERS, ST_BODY };
enum { CS_SIZE, CS_EXT, CS_DATA, CS_DATA_END, CS_TRAILER };
enum { BODY_CHUNKED, BODY_LENGTH, BODY_CLOSE };

typedef struct {
    double *v;
    size_t n, cap;
} vec_t;

typedef struct {
    int fd, state;
    double next_start;    /* >0: (re)start a request at this time */
    double req_start, last_event;
    int got_first, keep_alive, status, body_mode;
    long events;
    long remaining;       /* content-length left, or chunk bytes left */
    int cstate;
    long csize;
    int trailer_line_len;
    char prev;            /* last non-CR body byte, for blank-line detection across reads */
    char hdr[4096];
    size_t hdr_len;
} conn_t;

static vec_t ttfb, gaps, durations;
static long n_events, window_events, streams_ok, short_streams, errors, http_errors, connect_errors;
static long requests_sent, unfinished;
static double t0, window_start, window_end;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void push(vec_t *v, double x) {
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 4096;
        v->v = realloc(v->v, v->cap * sizeof(double));
        if (!v->v) { perror("realloc"); exit(2); }
    }
    v->v[v->n++] = x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(vec_t *v, double p) {
    if (!v->n) return -1;
    size_t i = (size_t)(p / 100.0 * (v->n - 1) + 0.5);
    return v->v[i];
}

static void print_stats(const char *name, vec_t *v, int last) {
    qsort(v->v, v->n, sizeof(double), cmp_double);
    printf("\"%s\":{\"n\":%zu,\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p999\":%.4f,\"max\":%.4f}%s", name, v->n,
           pct(v, 50), pct(v, 90), pct(v, 99), pct(v, 99.9), v->n ? v->v[v->n - 1] : -1.0, last ? "" : ",");
}

static struct sockaddr_in addr;
static char request[8192];
static size_t request_len;
static long expected_events;
static int epfd;

static void conn_close(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = ST_IDLE;
}

static void reset_response(conn_t *c) {
    c->hdr_len = 0;
    c->events = 0;
    c->got_first = 0;
    c->prev = 0;
    c->cstate = CS_SIZE;
    c->csize = 0;
    c->trailer_line_len = 0;
    c->status = 0;
}

static int send_request(conn_t *c) {
    ssize_t w = write(c->fd, request, request_len);
    if (w != (ssize_t)request_len) return -1;
    requests_sent++;
    reset_response(c);
    c->state = ST_HEADERS;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    return 0;
}

static void start_request(conn_t *c, double now) {
    c->next_start = 0;
    c->req_start = now;
    if (c->fd >= 0 && c->keep_alive) {
        if (send_request(c) == 0) return;
        errors++;
        conn_close(c);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { perror("socket"); exit(2); }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->keep_alive = 1;
    int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    c->state = ST_CONNECTING;
    if (r < 0 && errno != EINPROGRESS) {
        connect_errors++;
        errors++;
        conn_close(c);
        c->next_start = now + 0.01;
    }
}

/* Feed decoded body bytes; returns the number of SSE events completed. */
static long scan_sse(conn_t *c, const char *p, size_t n) {
    long k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\r') continue;
        if (ch == '\n' && c->prev == '\n') {
            k++;
            c->prev = 0;
            continue;
        }
        c->prev = ch;
    }
    return k;
}

/* Returns events completed; sets *done when the response body ended. -1 on framing error. */
static long feed_body(conn_t *c, const char *p, size_t n, int *done) {
    long k = 0;
    if (c->body_mode != BODY_CHUNKED) {
        if (c->body_mode == BODY_LENGTH && (long)n > c->remaining) n = (size_t)c->remaining;
        k = scan_sse(c, p, n);
        if (c->body_mode == BODY_LENGTH) {
            c->remaining -= (long)n;
            if (c->remaining == 0) *done = 1;
        }
        return k;
    }
    size_t i = 0;
    while (i < n && !*done) {
        char ch = p[i];
        switch (c->cstate) {
        case CS_SIZE:
            if (ch == '\n') {
                c->cstate = c->csize ? CS_DATA : CS_TRAILER;
                c->trailer_line_len = 0;
            } else if (ch == ';') {
                c->cstate = CS_EXT;
            } else if (ch != '\r') {
                int d;
                if (ch >= '0' && ch <= '9') d = ch - '0';
                else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
                else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10;
                else return -1;
                c->csize = c->csize * 16 + d;
            }
            i++;
            break;
        case CS_EXT:
            if (ch == '\n') {
                c->cstate = c->csize ? CS_DATA : CS_TRAILER;
                c->trailer_line_len = 0;
            }
            i++;
            break;
        case CS_DATA: {
            size_t take = n - i;
            if ((long)take > c->csize) take = (size_t)c->csize;
            k += scan_sse(c, p + i, take);
            c->csize -= (long)take;
            i += take;
            if (c->csize == 0) c->cstate = CS_DATA_END;
            break;
        }
        case CS_DATA_END:
            if (ch == '\n') c->cstate = CS_SIZE;
            i++;
            break;
        case CS_TRAILER:
            if (ch == '\n') {
                if (c->trailer_line_len == 0) *done = 1;
                c->trailer_line_len = 0;
            } else if (ch != '\r') {
                c->trailer_line_len++;
            }
            i++;
            break;
        }
    }
    return k;
}

static void parse_headers(conn_t *c) {
    c->status = atoi(c->hdr + 9);
    c->body_mode = BODY_CLOSE;
    char *line = strstr(c->hdr, "\r\n");
    while (line && line[2] != '\r') {
        line += 2;
        if (!strncasecmp(line, "transfer-encoding:", 18) && strcasestr(line, "chunked") &&
            strcasestr(line, "chunked") < strstr(line, "\r\n"))
            c->body_mode = BODY_CHUNKED;
        else if (!strncasecmp(line, "content-length:", 15) && c->body_mode != BODY_CHUNKED) {
            c->body_mode = BODY_LENGTH;
            c->remaining = atol(line + 15);
        } else if (!strncasecmp(line, "connection:", 11)) {
            char *end = strstr(line, "\r\n");
            char *cl = strcasestr(line, "close");
            if (cl && cl < end) c->keep_alive = 0;
        }
        line = strstr(line, "\r\n");
    }
    if (!strncmp(c->hdr, "HTTP/1.0", 8)) c->keep_alive = 0;
}

static void finish_response(conn_t *c, double now, double duration_end) {
    if (c->status != 200) {
        http_errors++;
        errors++;
    } else {
        streams_ok++;
        push(&durations, (now - c->req_start) * 1000.0);
        if (expected_events > 0 && c->events != expected_events) short_streams++;
    }
    if (!c->keep_alive || c->body_mode == BODY_CLOSE) conn_close(c);
    c->state = ST_IDLE;
    if (now < duration_end) start_request(c, now);
}

static void on_events(conn_t *c, long k, double now) {
    if (k <= 0) return;
    c->events += k;
    n_events += k;
    if (now >= window_start && now < window_end) window_events += k;
    if (!c->got_first) {
        c->got_first = 1;
        push(&ttfb, (now - c->req_start) * 1000.0);
    } else {
        push(&gaps, (now - c->last_event) * 1000.0);
    }
    for (long j = 1; j < k; j++) push(&gaps, 0.0);
    c->last_event = now;
}

static void fail(conn_t *c, double now, double duration_end) {
    errors++;
    conn_close(c);
    if (now < duration_end) c->next_start = now + 0.01;
}

static void on_readable(conn_t *c, char *buf, size_t bufsz, double duration_end) {
    ssize_t r = read(c->fd, buf, bufsz);
    double now = now_s();
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (c->state == ST_IDLE) {
        /* the server closed a keep-alive connection between requests: not an error */
        conn_close(c);
        return;
    }
    if (r <= 0) {
        if (c->state == ST_BODY && c->body_mode == BODY_CLOSE && r == 0) {
            finish_response(c, now, duration_end);
            return;
        }
        fail(c, now, duration_end);
        return;
    }
    const char *p = buf;
    size_t n = (size_t)r;
    if (c->state == ST_HEADERS) {
        size_t room = sizeof c->hdr - 1 - c->hdr_len;
        size_t take = n < room ? n : room;
        memcpy(c->hdr + c->hdr_len, p, take);
        c->hdr_len += take;
        c->hdr[c->hdr_len] = 0;
        char *end = strstr(c->hdr, "\r\n\r\n");
        if (!end) {
            if (c->hdr_len >= sizeof c->hdr - 1) fail(c, now, duration_end);
            return;
        }
        size_t hlen = (size_t)(end - c->hdr) + 4;
        size_t body_in_hdr = c->hdr_len - hlen;
        parse_headers(c);
        c->state = ST_BODY;
        /* body bytes that arrived with the headers */
        p = p + take - body_in_hdr;
        n = body_in_hdr + (n - take);
        if (c->body_mode == BODY_LENGTH && c->remaining == 0) {
            finish_response(c, now, duration_end);
            return;
        }
    }
    int done = 0;
    long k = feed_body(c, p, n, &done);
    if (k < 0) {
        fail(c, now, duration_end);
        return;
    }
    if (c->status == 200) on_events(c, k, now);
    if (done) finish_response(c, now, duration_end);
}

static void usage(void) {
    fprintf(stderr,
            "usage: sseclient -p PORT [-a 127.0.0.1] [-u /v1/chat/completions] [-c conns] [-d duration_s]\n"
            "                 [-r ramp_s] [-x hardstop_s] [-n max_tokens] [-s pace_ms] [-m model] [-H 'K: V']...\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *path = "/v1/chat/completions", *model = "fake";
    int port = 0, nconns = 64, ntok = 100, pace = 0, opt;
    double duration = 10, ramp = 1, hardstop = 45;
    char headers[4096] = "";
    while ((opt = getopt(argc, argv, "a:p:u:c:d:r:x:n:s:m:H:")) != -1) {
        switch (opt) {
        case 'a': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'u': path = optarg; break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'r': ramp = atof(optarg); break;
        case 'x': hardstop = atof(optarg); break;
        case 'n': ntok = atoi(optarg); break;
        case 's': pace = atoi(optarg); break;
        case 'm': model = optarg; break;
        case 'H':
            if (strlen(headers) + strlen(optarg) + 3 >= sizeof headers) usage();
            strcat(headers, optarg);
            strcat(headers, "\r\n");
            break;
        default: usage();
        }
    }
    if (!port || nconns < 1) usage();
    if (hardstop < duration) hardstop = duration;
    expected_events = ntok + 3; /* role + tokens + finish + [DONE] */
    char body[512];
    int blen = snprintf(body, sizeof body,
                        "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                        "\"max_tokens\":%d,\"seed\":%d,\"stream\":true}",
                        model, ntok, pace);
    request_len = (size_t)snprintf(request, sizeof request,
                                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                                   "Accept: text/event-stream\r\n%sContent-Length: %d\r\n\r\n%s",
                                   path, host, port, headers, blen, body);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) usage();

    epfd = epoll_create1(0);
    conn_t *conns = calloc((size_t)nconns, sizeof(conn_t));
    t0 = now_s();
    double duration_end = t0 + duration, hard_end = t0 + hardstop;
    window_start = t0 + (ramp < duration ? ramp : 0);
    window_end = duration_end;
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].next_start = t0 + ramp * i / nconns + 1e-9;
    }
    size_t bufsz = 65536;
    char *buf = malloc(bufsz);
    struct epoll_event evs[512];
    double now = t0, next_scan = 0;
    for (;;) {
        now = now_s();
        if (now >= hard_end) break;
        int pending = 0, active = 0;
        if (now >= next_scan) {
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if (c->next_start > 0) {
                    if (now >= duration_end) c->next_start = 0;
                    else if (now >= c->next_start) start_request(c, now);
                    else pending++;
                }
                if (c->state != ST_IDLE) active++;
            }
            next_scan = now + 0.001;
            if (!pending && !active && now >= duration_end) break;
        }
        int timeout = 1;
        int n = epoll_wait(epfd, evs, 512, timeout);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == ST_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                double t = now_s();
                if (err) {
                    connect_errors++;
                    fail(c, t, duration_end);
                } else if (send_request(c) < 0) {
                    fail(c, t, duration_end);
                }
                continue;
            }
            on_readable(c, buf, bufsz, duration_end);
        }
    }
    double elapsed = now_s() - t0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state != ST_IDLE) {
            unfinished++;
            conn_close(&conns[i]);
        }
    double window = window_end - window_start;
    printf("{\"conns\":%d,\"duration_s\":%.3f,\"ramp_s\":%.3f,\"elapsed_s\":%.3f,\"requests\":%ld,"
           "\"events\":%ld,\"window_events\":%ld,\"events_per_s\":%.1f,\"expected_events\":%ld,"
           "\"streams_ok\":%ld,\"short_streams\":%ld,\"errors\":%ld,\"http_errors\":%ld,"
           "\"connect_errors\":%ld,\"unfinished\":%ld,",
           nconns, duration, ramp, elapsed, requests_sent, n_events, window_events,
           window > 0 ? window_events / window : 0.0, expected_events, streams_ok, short_streams, errors,
           http_errors, connect_errors, unfinished);
    print_stats("ttfb_ms", &ttfb, 0);
    print_stats("gap_ms", &gaps, 0);
    print_stats("stream_ms", &durations, 1);
    printf("}\n");
    return 0;
}
