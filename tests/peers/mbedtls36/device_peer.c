/*
 * device-peer: the device's TLS stack as a test peer.
 *
 * mbedTLS 3.6 built with the device's configuration (config.h), called the
 * way MicroPython's extmod/modtls_mbedtls.c calls it: default preset, ONE
 * anchor parsed with mbedtls_x509_crt_parse on exactly the file's bytes,
 * mbedtls_ssl_set_hostname, own key then certificate via
 * mbedtls_pk_parse_key / mbedtls_x509_crt_parse, a verify callback that only
 * records, DTLS HelloVerifyRequest cookies bound to the client's address.
 * See docs/device-behaviour.md for what it measured.
 *
 *   device-peer client --host H --port P [--dtls] [--ca ca.der]
 *       [--hostname NAME] [--cert c.der --key k.der] [--send TEXT]
 *       [--timeout S] [--time UNIX|unset] [--firmware 1.28|1.29]
 *   device-peer server --port P [--dtls] --cert s.der --key k.der
 *       [--ca client-ca.der] [--count N] [--reply TEXT] [--timeout S]
 *       [--time UNIX|unset] [--firmware 1.28|1.29]
 *   device-peer verify      (JSON lines on stdin, see verify_main)
 *   device-peer loadkey FILE [--firmware 1.29]
 *   device-peer loadcert FILE [--firmware 1.29]
 *   device-peer loadchain CERT KEY [--firmware 1.29]   (load_cert_chain, plus
 *       whether the key matches the certificate: mbedtls_pk_check_pair)
 *   device-peer suites      (IANA names of the suites the client offers)
 *   device-peer version
 *
 * client/server take the same flags and print the same JSON as
 * tests/peers/mbedtls_peer.py: one line per connection
 *   {"ok","error","code","version","cipher","received","peer_subject",
 *    "verify"}
 * "code" is the negative mbedTLS error MicroPython raises, "error" its
 * MBEDTLS_ERR_ name (high+low parts joined by '+' when combined); for
 * -0x2700 "verify" lists the flags' texts as mbedtls_x509_crt_verify_info
 * writes them (one entry per line, without prefix; MicroPython raises
 * ValueError with the same lines, each prefixed by "\n"). "peer_subject" is
 * known only when the peer's certificate went through verification (the
 * device's build does not keep the peer certificate). The server first prints
 * {"listening": PORT}. Exit: 0 all ok, 1 some failed, 2 bad arguments/files.
 * --timeout bounds the whole run.
 */
#define _GNU_SOURCE
#define MBEDTLS_ALLOW_PRIVATE_ACCESS /* ssl->state, for the version report */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mbedtls/base64.h"
#include "mbedtls/build_info.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/error.h"
#include "mbedtls/net_sockets.h"
#include "mbedtls/oid.h"
#include "mbedtls/pk.h"
#include "mbedtls/platform.h"
#include "mbedtls/platform_time.h"
#include "mbedtls/ssl.h"
#include "mbedtls/ssl_ciphersuites.h"
#include "mbedtls/ssl_cookie.h"
#include "mbedtls/x509_crt.h"
#include "ssl_ciphersuites_internal.h" /* mbedtls_ssl_ciphersuite_uses_psk */

#if !defined(MBEDTLS_CAN_ECDH) || !defined(MBEDTLS_PK_CAN_ECDSA_SIGN) || \
    !defined(MBEDTLS_PK_HAVE_ECC_KEYS)
#error "config.h must give CAN_ECDH, PK_CAN_ECDSA_SIGN and PK_HAVE_ECC_KEYS"
#endif
#if defined(MBEDTLS_SSL_PROTO_TLS1_3) || defined(MBEDTLS_USE_PSA_CRYPTO) || \
    defined(MBEDTLS_X509_RSASSA_PSS_SUPPORT) || defined(MBEDTLS_SSL_KEEP_PEER_CERTIFICATE)
#error "config.h enables something the device does not have"
#endif

#define EXIT_BAD 2
#define CHUNK (16384 + 2048)
/* MicroPython's epoch: an unset RTC reads 2000-01-01T00:00:00Z. */
#define DEVICE_EPOCH_UNSET 946684800LL

/* --- small utilities --------------------------------------------------------- */

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t now_ms(void) {
    return (uint64_t)(now_mono() * 1000.0);
}

/* A growable string, for JSON output. */
typedef struct {
    char *p;
    size_t len, cap;
} str_t;

static void s_grow(str_t *s, size_t more) {
    if (s->len + more + 1 > s->cap) {
        s->cap = (s->len + more + 1) * 2;
        s->p = realloc(s->p, s->cap);
        if (!s->p) {
            perror("realloc");
            exit(EXIT_BAD);
        }
    }
}

static void s_add(str_t *s, const char *data, size_t n) {
    s_grow(s, n);
    memcpy(s->p + s->len, data, n);
    s->len += n;
    s->p[s->len] = 0;
}

/* Appends a string literal. */
#define s_lit(s, lit) s_add((s), (lit), sizeof(lit) - 1)

static void s_printf(str_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    s_grow(s, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

/* Appends `data` as a JSON string (or null when data is NULL). */
static void s_json(str_t *s, const char *data, size_t n) {
    if (!data) {
        s_lit(s, "null");
        return;
    }
    s_lit(s, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            s_add(s, e, 2);
        } else if (c == '\n') {
            s_lit(s, "\\n");
        } else if (c == '\r') {
            s_lit(s, "\\r");
        } else if (c == '\t') {
            s_lit(s, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            s_printf(s, "\\u%04x", c);
        } else if (c >= 0x80) {
            /* Keep valid UTF-8 as is; other bytes become U+FFFD. */
            size_t need = (c >= 0xf0 && c < 0xf8) ? 3 : (c >= 0xe0) ? 2 : (c >= 0xc2 && c < 0xe0) ? 1 : 0;
            size_t k = 0;
            if (need && i + need < n + 0) {
                for (k = 1; k <= need; k++) {
                    if (((unsigned char)data[i + k] & 0xc0) != 0x80) {
                        break;
                    }
                }
            }
            if (need && k == need + 1) {
                s_add(s, data + i, need + 1);
                i += need;
            } else {
                s_lit(s, "\\ufffd");
            }
        } else {
            s_add(s, (const char *)&c, 1);
        }
    }
    s_lit(s, "\"");
}

static void s_jsonz(str_t *s, const char *z) {
    s_json(s, z, z ? strlen(z) : 0);
}

static void emit(str_t *s) {
    fwrite(s->p, 1, s->len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    free(s->p);
    s->p = NULL;
    s->len = s->cap = 0;
}

/* --- error names -------------------------------------------------------------- */

typedef struct {
    int code;
    const char *name;
} errname_t;

static const errname_t ERRNAMES[] = {
#include "errnames.inc"
};

static const char *exact_name(int code) {
    /* Several modules may share a value; prefer the TLS/X.509/PK names. */
    static const char *prefer[] = {"MBEDTLS_ERR_SSL_", "MBEDTLS_ERR_X509_", "MBEDTLS_ERR_PK_", "MBEDTLS_ERR_"};
    for (size_t p = 0; p < sizeof(prefer) / sizeof(prefer[0]); p++) {
        for (size_t i = 0; i < sizeof(ERRNAMES) / sizeof(ERRNAMES[0]); i++) {
            if (ERRNAMES[i].code == code && strncmp(ERRNAMES[i].name, prefer[p], strlen(prefer[p])) == 0) {
                return ERRNAMES[i].name;
            }
        }
    }
    return NULL;
}

/* The MBEDTLS_ERR_ name of a negative code; combined codes (a high-level
 * error plus a low-level one, as mbedtls_strerror splits them) give
 * "HIGH+LOW". */
static void error_name(int code, char *out, size_t n) {
    const char *exact = exact_name(code);
    if (exact) {
        snprintf(out, n, "%s", exact);
        return;
    }
    int pos = -code;
    int high = pos & 0xFF80, low = pos & 0x7F;
    const char *h = high ? exact_name(-high) : NULL;
    const char *l = low ? exact_name(-low) : NULL;
    if (h && l) {
        snprintf(out, n, "%s+%s", h, l);
    } else if (h || l) {
        snprintf(out, n, "%s", h ? h : l);
    } else {
        snprintf(out, n, "-0x%04X", (unsigned)pos);
    }
}

/* --- the device clock ------------------------------------------------------------ */

static long long g_clock_offset = 0; /* device time = host time + offset */

static mbedtls_time_t device_time(mbedtls_time_t *t) {
    mbedtls_time_t now = (mbedtls_time_t)(time(NULL) + g_clock_offset);
    if (t) {
        *t = now;
    }
    return now;
}

/* Sets the device clock to `when` (seconds since 1970). */
static void set_device_time(long long when) {
    g_clock_offset = when - (long long)time(NULL);
    mbedtls_platform_set_time(device_time);
}

/* --time UNIX|unset|now */
static int parse_time(const char *arg) {
    if (strcmp(arg, "unset") == 0) {
        set_device_time(DEVICE_EPOCH_UNSET);
        return 0;
    }
    if (strcmp(arg, "now") == 0) {
        return 0;
    }
    char *end;
    long long v = strtoll(arg, &end, 10);
    if (*arg == 0 || *end != 0) {
        return -1;
    }
    set_device_time(v);
    return 0;
}

/* --- files, loaded as the device loads them -------------------------------------- */

typedef struct {
    unsigned char *data; /* always followed by one NUL byte */
    size_t len;
} blob_t;

static int read_blob(const char *path, blob_t *out, char *err, size_t errn) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errn, "%s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap + 1);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
    }
    fclose(f);
    buf[len] = 0;
    out->data = buf;
    out->len = len;
    return 0;
}

static int g_firmware_nul = 0; /* --firmware 1.29: PEM gets its NUL */

/* The length MicroPython passes for a buffer (asn1_get_data): the bytes as
 * they are; firmware with MBEDTLS_PEM_PARSE_C enabled in its build (>= 1.29)
 * adds the terminating NUL when the text holds "-----BEGIN ". */
static size_t device_len(const blob_t *b) {
    if (g_firmware_nul && strstr((const char *)b->data, "-----BEGIN ") != NULL) {
        return b->len + 1;
    }
    return b->len;
}

/* --- one TLS/DTLS endpoint --------------------------------------------------------- */

typedef struct {
    int is_server, dtls;
    const char *host, *hostname, *cert, *key, *ca, *send, *reply;
    int port, count;
    double timeout;
} args_t;

typedef struct {
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_ssl_config conf;
    mbedtls_x509_crt cacert, cert;
    mbedtls_pk_context pkey;
    mbedtls_ssl_cookie_ctx cookie;
    int authmode;
    /* what the verify callback recorded */
    char peer_subject[512];
    int have_subject;
} context_t;

typedef struct {
    int fd;
    double deadline;
    int dtls;
    /* DTLS server: the one client served on the shared socket (the socket
     * is not connected: disconnecting an autobound UDP socket loses its
     * port) */
    struct sockaddr_in peer;
    int has_peer;
    /* DTLS timer, as modtls_mbedtls.c keeps it */
    uint64_t timer_start, timer_int, timer_fin;
} io_t;

static int verify_record(void *ctx, mbedtls_x509_crt *crt, int depth, uint32_t *flags) {
    context_t *c = ctx;
    (void)flags; /* only records, like MicroPython's ssl_sock_cert_verify */
    if (depth == 0) {
        int n = mbedtls_x509_dn_gets(c->peer_subject, sizeof(c->peer_subject), &crt->subject);
        c->have_subject = n >= 0;
    }
    return 0;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len) {
    io_t *io = ctx;
    ssize_t n = io->has_peer
        ? sendto(io->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&io->peer, sizeof(io->peer))
        : send(io->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
        return (int)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        struct pollfd p = {.fd = io->fd, .events = POLLOUT};
        poll(&p, 1, 10); /* wait a little for room instead of spinning */
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    }
    if (errno == EPIPE || errno == ECONNRESET || errno == ECONNREFUSED) {
        /* The peer hung up, usually after a fatal alert: drop the output and
         * let the next read surface that alert. */
        return (int)len;
    }
    return MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len) {
    io_t *io = ctx;
    struct pollfd p = {.fd = io->fd, .events = POLLIN};
    /* Short waits, so the handshake loop sees the deadline and DTLS its
     * retransmission timer (MicroPython polls every 1 ms). */
    int r = poll(&p, 1, 10);
    if (r <= 0) {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    ssize_t n;
    if (io->has_peer) {
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        n = recvfrom(io->fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
        if (n >= 0 && (from.sin_addr.s_addr != io->peer.sin_addr.s_addr || from.sin_port != io->peer.sin_port)) {
            return MBEDTLS_ERR_SSL_WANT_READ; /* another client: not served now */
        }
    } else {
        n = recv(io->fd, buf, len, MSG_DONTWAIT);
    }
    if (n >= 0) {
        return (int)n;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return MBEDTLS_ERR_SSL_WANT_READ;
    }
    if (io->dtls && errno == ECONNREFUSED) {
        return MBEDTLS_ERR_SSL_WANT_READ; /* ICMP unreachable: retransmit */
    }
    if (errno == ECONNRESET) {
        return MBEDTLS_ERR_NET_CONN_RESET;
    }
    return MBEDTLS_ERR_NET_RECV_FAILED;
}

static void timer_set(void *ctx, uint32_t int_ms, uint32_t fin_ms) {
    io_t *io = ctx;
    io->timer_int = int_ms;
    io->timer_fin = fin_ms;
    if (fin_ms != 0) {
        io->timer_start = now_ms();
    }
}

static int timer_get(void *ctx) {
    io_t *io = ctx;
    if (io->timer_fin == 0) {
        return -1;
    }
    uint64_t elapsed = now_ms() - io->timer_start;
    if (elapsed >= io->timer_fin) {
        return 2;
    }
    if (elapsed >= io->timer_int) {
        return 1;
    }
    return 0;
}

/* The result of one connection. */
typedef struct {
    int ok;
    char error[512];
    int code, has_code;
    const char *version;
    char cipher[128];
    str_t received;
    uint32_t verify_flags;
    int has_verify;
} result_t;

static void fail(result_t *r, int code, const char *fmt, ...) {
    r->ok = 0;
    if (code) {
        r->code = code;
        r->has_code = 1;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

static void fail_mbedtls(result_t *r, int code) {
    char name[256];
    error_name(code, name, sizeof(name));
    fail(r, code, "%s", name);
}

static void emit_result(result_t *r, context_t *c) {
    str_t s = {0};
    s_printf(&s, "{\"ok\": %s, \"error\": ", r->ok ? "true" : "false");
    s_jsonz(&s, r->ok || !r->error[0] ? NULL : r->error);
    if (r->has_code) {
        s_printf(&s, ", \"code\": %d", r->code);
    } else {
        s_lit(&s, ", \"code\": null");
    }
    s_lit(&s, ", \"version\": ");
    s_jsonz(&s, r->version);
    s_lit(&s, ", \"cipher\": ");
    s_jsonz(&s, r->cipher[0] ? r->cipher : NULL);
    s_lit(&s, ", \"received\": ");
    s_json(&s, r->ok ? (r->received.p ? r->received.p : "") : NULL, r->received.len);
    s_lit(&s, ", \"peer_subject\": ");
    s_jsonz(&s, c && c->have_subject ? c->peer_subject : NULL);
    if (r->has_verify) {
        char info[1024];
        int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", r->verify_flags);
        s_printf(&s, ", \"verify_flags\": %u, \"verify\": [", (unsigned)r->verify_flags);
        int first = 1;
        for (char *line = info; n > 0 && *line;) {
            char *nl = strchr(line, '\n');
            size_t len = nl ? (size_t)(nl - line) : strlen(line);
            if (!first) {
                s_lit(&s, ", ");
            }
            s_json(&s, line, len);
            first = 0;
            line += len + (nl ? 1 : 0);
        }
        s_lit(&s, "]");
    }
    s_lit(&s, "}");
    emit(&s);
    free(r->received.p);
    r->received.p = NULL;
}

static void load_error(const char *what, int code) {
    str_t s = {0};
    char name[256];
    error_name(code, name, sizeof(name));
    s_lit(&s, "{\"ok\": false, \"error\": ");
    char msg[1024];
    snprintf(msg, sizeof(msg), "%s: %s", what, name);
    s_jsonz(&s, msg);
    s_printf(&s, ", \"code\": %d, \"version\": null, \"cipher\": null, \"received\": null, \"peer_subject\": null}", code);
    emit(&s);
}

static void plain_error(const char *msg) {
    str_t s = {0};
    s_lit(&s, "{\"ok\": false, \"error\": ");
    s_jsonz(&s, msg);
    s_lit(&s, ", \"code\": null, \"version\": null, \"cipher\": null, \"received\": null, \"peer_subject\": null}");
    emit(&s);
}

/* SSLContext(protocol) plus load_cert_chain / load_verify_locations, as
 * modtls_mbedtls.c does them. Returns 0, or EXIT_BAD after printing why. */
static int context_setup(context_t *c, const args_t *a) {
    memset(c, 0, sizeof(*c));
    mbedtls_ssl_config_init(&c->conf);
    mbedtls_entropy_init(&c->entropy);
    mbedtls_ctr_drbg_init(&c->drbg);
    mbedtls_x509_crt_init(&c->cacert);
    mbedtls_x509_crt_init(&c->cert);
    mbedtls_pk_init(&c->pkey);
    const unsigned char seed[] = "mpy";
    int ret = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy, seed, sizeof(seed));
    if (ret == 0) {
        ret = mbedtls_ssl_config_defaults(&c->conf, a->is_server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
            a->dtls ? MBEDTLS_SSL_TRANSPORT_DATAGRAM : MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    }
    if (ret != 0) {
        load_error("SSLContext", ret);
        return EXIT_BAD;
    }
    /* Client: verify when given an anchor (scripts set verify_mode =
     * CERT_REQUIRED; the ssl wrapper's default is CERT_NONE). Server: demand
     * a client certificate when given an anchor for it. */
    c->authmode = a->ca ? MBEDTLS_SSL_VERIFY_REQUIRED : MBEDTLS_SSL_VERIFY_NONE;
    mbedtls_ssl_conf_authmode(&c->conf, c->authmode);
    mbedtls_ssl_conf_verify(&c->conf, verify_record, c);
    mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
    if (a->is_server && a->dtls) {
        ret = mbedtls_ssl_cookie_setup(&c->cookie, mbedtls_ctr_drbg_random, &c->drbg);
        if (ret != 0) {
            load_error("cookie setup", ret);
            return EXIT_BAD;
        }
        mbedtls_ssl_conf_dtls_cookies(&c->conf, mbedtls_ssl_cookie_write, mbedtls_ssl_cookie_check, &c->cookie);
    }
    char err[1024];
    if (a->cert) {
        /* load_cert_chain(cert, key): the key first, then the certificate. */
        blob_t key, crt;
        if (read_blob(a->key, &key, err, sizeof(err)) || read_blob(a->cert, &crt, err, sizeof(err))) {
            plain_error(err);
            return EXIT_BAD;
        }
        ret = mbedtls_pk_parse_key(&c->pkey, key.data, device_len(&key), NULL, 0, mbedtls_ctr_drbg_random, &c->drbg);
        if (ret != 0) {
            snprintf(err, sizeof(err), "%s: invalid key", a->key);
            load_error(err, ret);
            return EXIT_BAD;
        }
        ret = mbedtls_x509_crt_parse(&c->cert, crt.data, device_len(&crt));
        if (ret != 0) {
            snprintf(err, sizeof(err), "%s: invalid cert", a->cert);
            load_error(err, ret);
            return EXIT_BAD;
        }
        ret = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->pkey);
        if (ret != 0) {
            load_error("own certificate", ret);
            return EXIT_BAD;
        }
    }
    if (a->ca) {
        blob_t ca;
        if (read_blob(a->ca, &ca, err, sizeof(err))) {
            plain_error(err);
            return EXIT_BAD;
        }
        ret = mbedtls_x509_crt_parse(&c->cacert, ca.data, device_len(&ca));
        if (ret != 0) {
            snprintf(err, sizeof(err), "%s: invalid cert", a->ca);
            load_error(err, ret);
            return EXIT_BAD;
        }
        mbedtls_ssl_conf_ca_chain(&c->conf, &c->cacert, NULL);
    }
    return 0;
}

/* Runs the handshake to its end or the deadline, remembering how far it got. */
static int handshake(mbedtls_ssl_context *ssl, io_t *io, int *reached) {
    for (;;) {
        if (ssl->state > *reached) {
            *reached = ssl->state;
        }
        if (mbedtls_ssl_is_handshake_over(ssl)) {
            return 0;
        }
        int ret = mbedtls_ssl_handshake_step(ssl);
        if (ssl->state > *reached) {
            *reached = ssl->state;
        }
        if (ret != 0 && ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) {
            return ret;
        }
        if (now_mono() >= io->deadline) {
            return MBEDTLS_ERR_SSL_TIMEOUT;
        }
    }
}

static int write_all(mbedtls_ssl_context *ssl, io_t *io, const char *text) {
    size_t len = strlen(text), done = 0;
    while (done < len) {
        int n = mbedtls_ssl_write(ssl, (const unsigned char *)text + done, len - done);
        if (n > 0) {
            done += (size_t)n;
        } else if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE) {
            return n;
        }
        if (now_mono() >= io->deadline) {
            return MBEDTLS_ERR_SSL_TIMEOUT;
        }
    }
    return 0;
}

/* Reads until a newline or the peer's close; 0 or an error. */
static int read_line(mbedtls_ssl_context *ssl, io_t *io, str_t *got) {
    unsigned char buf[CHUNK];
    s_add(got, "", 0);
    while (!memchr(got->p, '\n', got->len) && got->len < CHUNK) {
        int n = mbedtls_ssl_read(ssl, buf, sizeof(buf));
        if (n > 0) {
            s_add(got, (const char *)buf, (size_t)n);
            continue;
        }
        if (n == 0 || n == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || n == MBEDTLS_ERR_SSL_CONN_EOF) {
            return 0; /* the peer closed: what it sent is the answer */
        }
        if (n != MBEDTLS_ERR_SSL_WANT_READ && n != MBEDTLS_ERR_SSL_WANT_WRITE) {
            return n;
        }
        if (now_mono() >= io->deadline) {
            return MBEDTLS_ERR_SSL_TIMEOUT;
        }
    }
    return 0;
}

static void close_notify(mbedtls_ssl_context *ssl, io_t *io) {
    double until = now_mono() + 1.0;
    int ret;
    while ((ret = mbedtls_ssl_close_notify(ssl)) == MBEDTLS_ERR_SSL_WANT_WRITE && now_mono() < until && now_mono() < io->deadline) {
    }
}

/* Fills version/cipher/verify fields from how far the handshake got. */
static void describe(result_t *r, mbedtls_ssl_context *ssl, int reached, int is_server, int ret) {
    /* Past reading the peer's hello, the version and suite are negotiated. */
    int negotiated = is_server ? reached >= MBEDTLS_SSL_SERVER_HELLO : reached >= MBEDTLS_SSL_SERVER_CERTIFICATE;
    if (negotiated) {
        r->version = mbedtls_ssl_get_version(ssl);
        int id = ssl->session_negotiate ? ssl->session_negotiate->ciphersuite : ssl->session ? ssl->session->ciphersuite : 0;
        const char *name = id ? mbedtls_ssl_get_ciphersuite_name(id) : NULL;
        if (name && strcmp(name, "unknown") != 0) {
            snprintf(r->cipher, sizeof(r->cipher), "%s", name);
        }
    }
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        r->verify_flags = mbedtls_ssl_get_verify_result(ssl);
        r->has_verify = 1;
    }
}

/* One connection on a connected socket: handshake, then the line exchange. */
static void converse(result_t *r, context_t *c, const args_t *a, io_t *io, const unsigned char *client_id,
    size_t client_id_len) {
    mbedtls_ssl_context ssl;
    int reached = 0, ret;
    for (int attempt = 0;; attempt++) {
        mbedtls_ssl_init(&ssl);
        ret = mbedtls_ssl_setup(&ssl, &c->conf);
        if (ret == 0 && a->hostname) {
            ret = mbedtls_ssl_set_hostname(&ssl, a->hostname);
        } else if (ret == 0 && !a->is_server && c->authmode == MBEDTLS_SSL_VERIFY_REQUIRED) {
            mbedtls_ssl_free(&ssl);
            fail(r, 0, "CERT_REQUIRED requires server_hostname");
            return;
        }
        if (ret == 0 && a->dtls) {
            mbedtls_ssl_set_timer_cb(&ssl, io, timer_set, timer_get);
        }
        if (ret == 0 && client_id) {
            ret = mbedtls_ssl_set_client_transport_id(&ssl, client_id, client_id_len);
        }
        if (ret != 0) {
            fail_mbedtls(r, ret);
            mbedtls_ssl_free(&ssl);
            return;
        }
        mbedtls_ssl_set_bio(&ssl, io, bio_send, bio_recv, NULL);
        ret = handshake(&ssl, io, &reached);
        if (ret == MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED && attempt == 0) {
            /* The script wraps the socket again: a fresh context reads the
             * ClientHello that carries the cookie. */
            mbedtls_ssl_free(&ssl);
            reached = 0;
            continue;
        }
        break;
    }
    if (ret != 0) {
        describe(r, &ssl, reached, a->is_server, ret);
        fail_mbedtls(r, ret);
        mbedtls_ssl_free(&ssl);
        return;
    }
    describe(r, &ssl, reached, a->is_server, ret);
    if (a->is_server) {
        ret = read_line(&ssl, io, &r->received);
        if (ret == 0) {
            ret = write_all(&ssl, io, a->reply);
        }
    } else {
        ret = write_all(&ssl, io, a->send);
        if (ret == 0) {
            ret = read_line(&ssl, io, &r->received);
        }
    }
    if (ret != 0) {
        fail_mbedtls(r, ret);
    } else {
        r->ok = 1;
        close_notify(&ssl, io);
    }
    mbedtls_ssl_free(&ssl);
}

static int run_client(const args_t *a, double deadline) {
    context_t c;
    int bad = context_setup(&c, a);
    if (bad) {
        return bad;
    }
    result_t r = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)a->port)};
    if (inet_pton(AF_INET, a->host, &sa.sin_addr) != 1) {
        char msg[300];
        snprintf(msg, sizeof(msg), "--host %s: not an IPv4 address", a->host);
        plain_error(msg);
        return EXIT_BAD;
    }
    int fd = socket(AF_INET, a->dtls ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fail(&r, 0, "connect %s:%d: %s", a->host, a->port, strerror(errno));
    } else {
        io_t io = {.fd = fd, .deadline = deadline, .dtls = a->dtls};
        converse(&r, &c, a, &io, NULL, 0);
    }
    close(fd);
    emit_result(&r, &c);
    return r.ok ? 0 : 1;
}

/* Waits for `fd` to be readable until the deadline; 1 ready, 0 timed out. */
static int wait_readable(int fd, double deadline) {
    for (;;) {
        double left = deadline - now_mono();
        if (left <= 0) {
            return 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r > 0) {
            return 1;
        }
        if (r < 0 && errno != EINTR) {
            return 0;
        }
    }
}

/* The address of the next datagram holding a DTLS ClientHello; older
 * datagrams (a late close_notify, a retransmission) are dropped. */
static int next_client_hello(int fd, double deadline, struct sockaddr_in *peer) {
    unsigned char buf[CHUNK];
    for (;;) {
        if (!wait_readable(fd, deadline)) {
            return -1;
        }
        socklen_t sl = sizeof(*peer);
        ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_PEEK, (struct sockaddr *)peer, &sl);
        if (n > 13 && buf[0] == 22 && buf[13] == 1) {
            return 0;
        }
        recv(fd, buf, sizeof(buf), 0);
    }
}

static int run_server(const args_t *a, double deadline) {
    context_t c;
    int bad = context_setup(&c, a);
    if (bad) {
        return bad;
    }
    int lfd = socket(AF_INET, a->dtls ? SOCK_DGRAM : SOCK_STREAM, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)a->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || (!a->dtls && listen(lfd, 8) != 0)) {
        char msg[200];
        snprintf(msg, sizeof(msg), "bind 127.0.0.1:%d: %s", a->port, strerror(errno));
        plain_error(msg);
        return EXIT_BAD;
    }
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("{\"listening\": %d}\n", ntohs(sa.sin_port));
    fflush(stdout);
    int all_ok = 1;
    for (int i = 0; i < a->count; i++) {
        result_t r = {0};
        c.have_subject = 0;
        if (a->dtls) {
            struct sockaddr_in peer;
            if (next_client_hello(lfd, deadline, &peer) != 0) {
                fail(&r, MBEDTLS_ERR_SSL_TIMEOUT, "timed out waiting for a connection");
            } else {
                char id[64];
                snprintf(id, sizeof(id), "%s:%d", inet_ntoa(peer.sin_addr), ntohs(peer.sin_port));
                io_t io = {.fd = lfd, .deadline = deadline, .dtls = 1, .peer = peer, .has_peer = 1};
                converse(&r, &c, a, &io, (const unsigned char *)id, strlen(id));
            }
        } else if (!wait_readable(lfd, deadline)) {
            fail(&r, MBEDTLS_ERR_SSL_TIMEOUT, "timed out waiting for a connection");
        } else {
            int fd = accept(lfd, NULL, NULL);
            io_t io = {.fd = fd, .deadline = deadline, .dtls = 0};
            converse(&r, &c, a, &io, NULL, 0);
            close(fd);
        }
        all_ok &= r.ok;
        emit_result(&r, &c);
    }
    close(lfd);
    return all_ok ? 0 : 1;
}

/* --- suites, loadkey, loadcert ------------------------------------------------------- */

static int suites_main(void) {
    /* What ssl_write_client_hello_cipher_suites offers: the default list
     * filtered by version (TLS 1.2) and without PSK suites (no PSK set). */
    str_t s = {0};
    s_lit(&s, "[");
    int first = 1;
    for (const int *id = mbedtls_ssl_list_ciphersuites(); *id; id++) {
        const mbedtls_ssl_ciphersuite_t *info = mbedtls_ssl_ciphersuite_from_id(*id);
        if (!info || mbedtls_ssl_ciphersuite_uses_psk(info)) {
            continue;
        }
        char name[128];
        snprintf(name, sizeof(name), "%s", mbedtls_ssl_ciphersuite_get_name(info));
        for (char *p = name; *p; p++) {
            if (*p == '-') {
                *p = '_';
            }
        }
        if (!first) {
            s_lit(&s, ", ");
        }
        s_jsonz(&s, name);
        first = 0;
    }
    s_lit(&s, "]");
    emit(&s);
    return 0;
}

static void load_report(int ret, const char *raises, const char *kind, int bits) {
    str_t s = {0};
    char name[256];
    s_printf(&s, "{\"ok\": %s, \"code\": %d, \"error\": ", ret == 0 ? "true" : "false", ret);
    if (ret != 0) {
        error_name(ret, name, sizeof(name));
        s_jsonz(&s, name);
    } else {
        s_lit(&s, "null");
    }
    s_lit(&s, ", \"raises\": ");
    s_jsonz(&s, ret != 0 ? raises : NULL);
    s_lit(&s, ", \"type\": ");
    s_jsonz(&s, kind);
    s_printf(&s, ", \"bits\": %d}", bits);
    emit(&s);
}

static int load_main(int is_key, const char *path) {
    blob_t b;
    char err[1024];
    if (read_blob(path, &b, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return EXIT_BAD;
    }
    int ret;
    if (is_key) {
        mbedtls_entropy_context entropy;
        mbedtls_ctr_drbg_context drbg;
        mbedtls_pk_context pk;
        mbedtls_entropy_init(&entropy);
        mbedtls_ctr_drbg_init(&drbg);
        mbedtls_pk_init(&pk);
        const unsigned char seed[] = "mpy";
        ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, seed, sizeof(seed));
        if (ret == 0) {
            ret = mbedtls_pk_parse_key(&pk, b.data, device_len(&b), NULL, 0, mbedtls_ctr_drbg_random, &drbg);
        }
        load_report(ret, "ValueError('invalid key')", ret == 0 ? mbedtls_pk_get_name(&pk) : NULL,
            ret == 0 ? (int)mbedtls_pk_get_bitlen(&pk) : 0);
    } else {
        mbedtls_x509_crt crt;
        mbedtls_x509_crt_init(&crt);
        ret = mbedtls_x509_crt_parse(&crt, b.data, device_len(&b));
        load_report(ret, "ValueError('invalid cert')", ret == 0 ? mbedtls_pk_get_name(&crt.pk) : NULL,
            ret == 0 ? (int)mbedtls_pk_get_bitlen(&crt.pk) : 0);
    }
    return ret == 0 ? 0 : 1;
}

/* load_cert_chain(cert, key) as the module does it (key, certificate,
 * mbedtls_ssl_conf_own_cert), plus whether the two belong together. */
static int loadchain_main(const char *cert_path, const char *key_path) {
    blob_t kb, cb;
    char err[1024];
    if (read_blob(key_path, &kb, err, sizeof(err)) || read_blob(cert_path, &cb, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return EXIT_BAD;
    }
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_pk_context pk;
    mbedtls_x509_crt crt;
    mbedtls_ssl_config conf;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_pk_init(&pk);
    mbedtls_x509_crt_init(&crt);
    mbedtls_ssl_config_init(&conf);
    const unsigned char seed[] = "mpy";
    int ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, seed, sizeof(seed));
    const char *raises = NULL, *stage = "key";
    if (ret == 0) {
        ret = mbedtls_pk_parse_key(&pk, kb.data, device_len(&kb), NULL, 0, mbedtls_ctr_drbg_random, &drbg);
        raises = "ValueError('invalid key')";
    }
    if (ret == 0) {
        stage = "cert";
        ret = mbedtls_x509_crt_parse(&crt, cb.data, device_len(&cb));
        raises = "ValueError('invalid cert')";
    }
    if (ret == 0) {
        stage = "own_cert";
        mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
        ret = mbedtls_ssl_conf_own_cert(&conf, &crt, &pk);
        raises = NULL;
    }
    int pair = ret == 0 && mbedtls_pk_check_pair(&crt.pk, &pk, mbedtls_ctr_drbg_random, &drbg) == 0;
    str_t s = {0};
    char name[256];
    s_printf(&s, "{\"ok\": %s, \"code\": %d, \"error\": ", ret == 0 ? "true" : "false", ret);
    if (ret != 0) {
        error_name(ret, name, sizeof(name));
        s_jsonz(&s, name);
    } else {
        s_lit(&s, "null");
    }
    s_lit(&s, ", \"stage\": ");
    s_jsonz(&s, ret != 0 ? stage : NULL);
    s_lit(&s, ", \"raises\": ");
    s_jsonz(&s, ret != 0 ? raises : NULL);
    s_printf(&s, ", \"pair\": %s}", pair ? "true" : "false");
    emit(&s);
    return ret == 0 && pair ? 0 : 1;
}

/* --- verify: batch X.509 verification ------------------------------------------------ */
/*
 * stdin: one JSON object a line
 *   {"id": ANY, "anchor": "<b64 DER>", "chain": ["<b64 DER>", ...],
 *    "hostname": "name" | null, "time": UNIX}
 * stdout: one JSON object a line, in order
 *   {"id": ANY, "anchor": null | {"code": N, "error": NAME},
 *    "parse": null | {"index": i, "code": N, "error": NAME},
 *    "skipped": [i...], "ret": N, "flags": N | null, "texts": [...],
 *    "server_auth": bool | null}
 * The anchor is parsed as load_verify_locations does (mbedtls_x509_crt_parse
 * on the bytes), each chain certificate as the TLS layer parses the peer's
 * Certificate message (mbedtls_x509_crt_parse_der_nocopy, certificates with
 * an unknown signature algorithm skipped, the first other failure fatal),
 * then mbedtls_x509_crt_verify_with_profile(chain, anchor, NULL, default
 * profile, hostname, &flags, NULL, NULL) with the device clock at "time".
 * "server_auth" is whether the leaf's EKU allows serverAuth (the TLS
 * client checks it after verification, -0x7A00 when not).
 */

typedef struct {
    const char *p;
} json_t;

static void j_ws(json_t *j) {
    while (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n') {
        j->p++;
    }
}

/* Parses a JSON string into a malloc'd buffer (NUL-terminated). */
static char *j_string(json_t *j, size_t *outlen) {
    j_ws(j);
    if (*j->p != '"') {
        return NULL;
    }
    j->p++;
    str_t s = {0};
    s_lit(&s, "");
    while (*j->p && *j->p != '"') {
        if (*j->p == '\\') {
            j->p++;
            char c = *j->p;
            const char *map = "\"\"\\\\//b\bf\fn\nr\rt\t";
            const char *m = NULL;
            for (const char *q = map; *q; q += 2) {
                if (*q == c) {
                    m = q + 1;
                    break;
                }
            }
            if (m) {
                s_add(&s, m, 1);
                j->p++;
            } else if (c == 'u') {
                unsigned v = 0;
                for (int k = 1; k <= 4; k++) {
                    char h = j->p[k];
                    v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
                }
                j->p += 5;
                char u[3];
                if (v < 0x80) {
                    u[0] = (char)v;
                    s_add(&s, u, 1);
                } else if (v < 0x800) {
                    u[0] = (char)(0xc0 | (v >> 6));
                    u[1] = (char)(0x80 | (v & 0x3f));
                    s_add(&s, u, 2);
                } else {
                    u[0] = (char)(0xe0 | (v >> 12));
                    u[1] = (char)(0x80 | ((v >> 6) & 0x3f));
                    u[2] = (char)(0x80 | (v & 0x3f));
                    s_add(&s, u, 3);
                }
            } else {
                free(s.p);
                return NULL;
            }
        } else {
            s_add(&s, j->p, 1);
            j->p++;
        }
    }
    if (*j->p != '"') {
        free(s.p);
        return NULL;
    }
    j->p++;
    if (outlen) {
        *outlen = s.len;
    }
    return s.p;
}

/* Skips any JSON value; 0 on success. */
static int j_skip(json_t *j) {
    j_ws(j);
    char c = *j->p;
    if (c == '"') {
        char *s = j_string(j, NULL);
        free(s);
        return s ? 0 : -1;
    }
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        j_ws(j);
        if (*j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (c == '{') {
                char *k = j_string(j, NULL);
                if (!k) {
                    return -1;
                }
                free(k);
                j_ws(j);
                if (*j->p != ':') {
                    return -1;
                }
                j->p++;
            }
            if (j_skip(j)) {
                return -1;
            }
            j_ws(j);
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == close) {
                j->p++;
                return 0;
            }
            return -1;
        }
    }
    const char *start = j->p;
    while (*j->p && !strchr(",}] \t\r\n", *j->p)) {
        j->p++;
    }
    return j->p > start ? 0 : -1;
}

static unsigned char *b64(const char *text, size_t *outlen) {
    size_t n = 0, len = strlen(text);
    mbedtls_base64_decode(NULL, 0, &n, (const unsigned char *)text, len);
    unsigned char *buf = malloc(n + 1);
    if (mbedtls_base64_decode(buf, n + 1, &n, (const unsigned char *)text, len) != 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *outlen = n;
    return buf;
}

#define MAX_CHAIN 64

typedef struct {
    char *id_raw;
    char *anchor;
    char *chain[MAX_CHAIN];
    int nchain;
    char *hostname;
    long long when;
    int has_time;
} vreq_t;

static void vreq_free(vreq_t *q) {
    free(q->id_raw);
    free(q->anchor);
    for (int i = 0; i < q->nchain; i++) {
        free(q->chain[i]);
    }
    free(q->hostname);
    memset(q, 0, sizeof(*q));
}

static int vreq_parse(const char *line, vreq_t *q, char *err, size_t errn) {
    json_t j = {line};
    memset(q, 0, sizeof(*q));
    j_ws(&j);
    if (*j.p != '{') {
        snprintf(err, errn, "not a JSON object");
        return -1;
    }
    j.p++;
    for (;;) {
        j_ws(&j);
        if (*j.p == '}') {
            break;
        }
        char *key = j_string(&j, NULL);
        j_ws(&j);
        if (!key || *j.p != ':') {
            free(key);
            snprintf(err, errn, "bad JSON near %.20s", j.p);
            return -1;
        }
        j.p++;
        j_ws(&j);
        int bad = 0;
        if (strcmp(key, "id") == 0) {
            const char *start = j.p;
            bad = j_skip(&j);
            q->id_raw = strndup(start, (size_t)(j.p - start));
        } else if (strcmp(key, "anchor") == 0) {
            q->anchor = j_string(&j, NULL);
            bad = !q->anchor;
        } else if (strcmp(key, "hostname") == 0) {
            if (strncmp(j.p, "null", 4) == 0) {
                j.p += 4;
            } else {
                q->hostname = j_string(&j, NULL);
                bad = !q->hostname;
            }
        } else if (strcmp(key, "time") == 0) {
            char *end;
            q->when = strtoll(j.p, &end, 10);
            bad = end == j.p;
            j.p = end;
            /* a fractional part is ignored */
            while (*j.p && !strchr(",} \t\r\n", *j.p)) {
                j.p++;
            }
            q->has_time = 1;
        } else if (strcmp(key, "chain") == 0) {
            if (*j.p != '[') {
                bad = 1;
            } else {
                j.p++;
                j_ws(&j);
                while (!bad && *j.p != ']') {
                    if (q->nchain == MAX_CHAIN) {
                        bad = 1;
                        break;
                    }
                    q->chain[q->nchain] = j_string(&j, NULL);
                    bad = !q->chain[q->nchain];
                    q->nchain += !bad;
                    j_ws(&j);
                    if (*j.p == ',') {
                        j.p++;
                    } else if (*j.p != ']') {
                        bad = 1;
                    }
                }
                if (!bad) {
                    j.p++;
                }
            }
        } else {
            bad = j_skip(&j);
        }
        if (bad) {
            snprintf(err, errn, "bad value for \"%s\"", key);
            free(key);
            return -1;
        }
        free(key);
        j_ws(&j);
        if (*j.p == ',') {
            j.p++;
        } else if (*j.p != '}') {
            snprintf(err, errn, "bad JSON near %.20s", j.p);
            return -1;
        }
    }
    if (!q->anchor || !q->has_time) {
        snprintf(err, errn, "\"anchor\" and \"time\" are required");
        return -1;
    }
    return 0;
}

static void code_obj(str_t *s, int code, int index) {
    char name[256];
    error_name(code, name, sizeof(name));
    s_lit(s, "{");
    if (index >= 0) {
        s_printf(s, "\"index\": %d, ", index);
    }
    s_printf(s, "\"code\": %d, \"error\": ", code);
    s_jsonz(s, name);
    s_lit(s, "}");
}

static void verify_one(const vreq_t *q, str_t *s) {
    s_lit(s, "{\"id\": ");
    s_add(s, q->id_raw ? q->id_raw : "null", q->id_raw ? strlen(q->id_raw) : 4);
    set_device_time(q->when);

    size_t alen = 0;
    unsigned char *ader = b64(q->anchor, &alen);
    mbedtls_x509_crt anchor, chain;
    mbedtls_x509_crt_init(&anchor);
    mbedtls_x509_crt_init(&chain);
    unsigned char *ders[MAX_CHAIN] = {0};
    int ret = ader ? mbedtls_x509_crt_parse(&anchor, ader, alen) : MBEDTLS_ERR_BASE64_INVALID_CHARACTER;
    s_lit(s, ", \"anchor\": ");
    if (ret != 0) {
        code_obj(s, ret, -1);
        s_lit(s, ", \"parse\": null, \"skipped\": [], \"ret\": null, \"flags\": null, \"texts\": [], \"server_auth\": null}");
        goto done;
    }
    s_lit(s, "null");

    int parse_fail = -1, parse_code = 0, parsed = 0;
    str_t skipped = {0};
    s_lit(&skipped, "[");
    for (int i = 0; i < q->nchain; i++) {
        size_t n = 0;
        ders[i] = b64(q->chain[i], &n);
        int r = ders[i] ? mbedtls_x509_crt_parse_der_nocopy(&chain, ders[i], n) : MBEDTLS_ERR_BASE64_INVALID_CHARACTER;
        if (r == 0) {
            parsed++;
        } else if (r == MBEDTLS_ERR_X509_UNKNOWN_SIG_ALG + MBEDTLS_ERR_OID_NOT_FOUND) {
            s_printf(&skipped, "%s%d", skipped.len > 1 ? ", " : "", i);
        } else {
            parse_fail = i;
            parse_code = r;
            break;
        }
    }
    s_lit(&skipped, "]");
    s_lit(s, ", \"parse\": ");
    if (parse_fail >= 0) {
        code_obj(s, parse_code, parse_fail);
    } else {
        s_lit(s, "null");
    }
    s_printf(s, ", \"skipped\": %s", skipped.p);
    free(skipped.p);
    if (parse_fail >= 0 || parsed == 0) {
        s_lit(s, ", \"ret\": null, \"flags\": null, \"texts\": [], \"server_auth\": null}");
        goto done;
    }
    uint32_t flags = 0;
    ret = mbedtls_x509_crt_verify_with_profile(&chain, &anchor, NULL, &mbedtls_x509_crt_profile_default, q->hostname,
        &flags, NULL, NULL);
    s_printf(s, ", \"ret\": %d, \"flags\": %u, \"texts\": [", ret, (unsigned)flags);
    char info[2048];
    int n = mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
    int first = 1;
    for (char *line = info; n > 0 && *line;) {
        char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (!first) {
            s_lit(s, ", ");
        }
        s_json(s, line, len);
        first = 0;
        line += len + (nl ? 1 : 0);
    }
    int eku = mbedtls_x509_crt_check_extended_key_usage(&chain, MBEDTLS_OID_SERVER_AUTH,
        MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH));
    s_printf(s, "], \"server_auth\": %s}", eku == 0 ? "true" : "false");
done:
    mbedtls_x509_crt_free(&chain);
    mbedtls_x509_crt_free(&anchor);
    free(ader);
    for (int i = 0; i < q->nchain; i++) {
        free(ders[i]);
    }
}

static int verify_main(void) {
    size_t cap = 0;
    char *line = NULL;
    ssize_t n;
    int status = 0;
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (n == 1 && line[0] == '\n') {
            continue;
        }
        vreq_t q;
        char err[256];
        str_t s = {0};
        if (vreq_parse(line, &q, err, sizeof(err)) != 0) {
            s_lit(&s, "{\"id\": ");
            s_add(&s, q.id_raw ? q.id_raw : "null", q.id_raw ? strlen(q.id_raw) : 4);
            s_lit(&s, ", \"bad_input\": ");
            s_jsonz(&s, err);
            s_lit(&s, "}");
            status = EXIT_BAD;
        } else {
            verify_one(&q, &s);
        }
        vreq_free(&q);
        emit(&s);
    }
    free(line);
    return status;
}

/* --- arguments ---------------------------------------------------------------------- */

static void usage(const char *msg) {
    fprintf(stderr,
        "device-peer: %s\n"
        "usage: device-peer client --host H --port P [--dtls] [--ca A.der] [--hostname N]\n"
        "                   [--cert C.der --key K.der] [--send TEXT] [--timeout S]\n"
        "                   [--time UNIX|unset|now] [--firmware 1.28|1.29]\n"
        "       device-peer server --port P --cert C.der --key K.der [--dtls] [--ca A.der]\n"
        "                   [--count N] [--reply TEXT] [--timeout S] [--time ...] [--firmware ...]\n"
        "       device-peer verify < requests.jsonl\n"
        "       device-peer loadkey FILE [--firmware 1.29] | loadcert FILE [--firmware 1.29]\n"
        "       device-peer loadchain CERT KEY [--firmware 1.29]\n"
        "       device-peer suites | version\n",
        msg);
    exit(EXIT_BAD);
}

static int parse_firmware(const char *v) {
    if (strcmp(v, "1.28") == 0 || strcmp(v, "1.27") == 0 || strcmp(v, "1.26") == 0 || strcmp(v, "1.25") == 0) {
        g_firmware_nul = 0;
        return 0;
    }
    if (strcmp(v, "1.29") == 0) {
        g_firmware_nul = 1;
        return 0;
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage("a mode is required");
    }
    const char *mode = argv[1];
    if (strcmp(mode, "version") == 0) {
        printf("{\"mbedtls\": \"%s\"}\n", MBEDTLS_VERSION_STRING);
        return 0;
    }
    if (strcmp(mode, "suites") == 0) {
        return suites_main();
    }
    if (strcmp(mode, "verify") == 0) {
        return verify_main();
    }
    if (strcmp(mode, "loadchain") == 0) {
        if (argc < 4) {
            usage("CERT and KEY are required");
        }
        for (int i = 4; i < argc; i++) {
            if (strcmp(argv[i], "--firmware") == 0 && i + 1 < argc) {
                if (parse_firmware(argv[++i])) {
                    usage("--firmware takes 1.25..1.28 or 1.29");
                }
            } else {
                usage("unknown argument");
            }
        }
        return loadchain_main(argv[2], argv[3]);
    }
    if (strcmp(mode, "loadkey") == 0 || strcmp(mode, "loadcert") == 0) {
        if (argc < 3) {
            usage("FILE is required");
        }
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--firmware") == 0 && i + 1 < argc) {
                if (parse_firmware(argv[++i])) {
                    usage("--firmware takes 1.25..1.28 or 1.29");
                }
            } else {
                usage("unknown argument");
            }
        }
        return load_main(strcmp(mode, "loadkey") == 0, argv[2]);
    }
    args_t a = {0};
    if (strcmp(mode, "server") == 0) {
        a.is_server = 1;
    } else if (strcmp(mode, "client") != 0) {
        usage("unknown mode");
    }
    a.port = -1;
    a.count = 1;
    a.timeout = 10.0;
    a.send = "hello\n";
    a.reply = "hello\n";
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i];
        if (strcmp(k, "--dtls") == 0) {
            a.dtls = 1;
            continue;
        }
        if (i + 1 >= argc) {
            usage("an option is missing its value");
        }
        const char *v = argv[++i];
        if (strcmp(k, "--host") == 0 && !a.is_server) {
            a.host = v;
        } else if (strcmp(k, "--port") == 0) {
            char *end;
            long p = strtol(v, &end, 10);
            if (*end || p < 0 || p > 65535) {
                usage("--port must be 0..65535");
            }
            a.port = (int)p;
        } else if (strcmp(k, "--hostname") == 0 && !a.is_server) {
            a.hostname = v;
        } else if (strcmp(k, "--cert") == 0) {
            a.cert = v;
        } else if (strcmp(k, "--key") == 0) {
            a.key = v;
        } else if (strcmp(k, "--ca") == 0) {
            a.ca = v;
        } else if (strcmp(k, "--send") == 0 && !a.is_server) {
            a.send = v;
        } else if (strcmp(k, "--reply") == 0 && a.is_server) {
            a.reply = v;
        } else if (strcmp(k, "--count") == 0 && a.is_server) {
            a.count = atoi(v);
            if (a.count < 1) {
                usage("--count must be at least 1");
            }
        } else if (strcmp(k, "--timeout") == 0) {
            a.timeout = atof(v);
            if (!(a.timeout > 0)) {
                usage("--timeout must be positive");
            }
        } else if (strcmp(k, "--time") == 0) {
            if (parse_time(v)) {
                usage("--time takes UNIX seconds, 'unset' (2000-01-01) or 'now'");
            }
        } else if (strcmp(k, "--firmware") == 0) {
            if (parse_firmware(v)) {
                usage("--firmware takes 1.25..1.28 or 1.29");
            }
        } else {
            usage("unknown option");
        }
    }
    if (a.port < 0) {
        usage("--port is required");
    }
    if (!a.is_server && !a.host) {
        usage("--host is required");
    }
    if (!a.cert != !a.key) {
        usage("--cert and --key go together");
    }
    if (a.is_server && !a.cert) {
        usage("the server needs --cert and --key");
    }
    double deadline = now_mono() + a.timeout;
    return a.is_server ? run_server(&a, deadline) : run_client(&a, deadline);
}
