/* test_httpfast.c - the epoll backend of the HTTP server (httpfast.c): every test of
 * test_httpserver.c again with TENANCY_HTTP_BACKEND=epoll (suite "httpserver"), then what only
 * this backend promises (suite "httpfast"): pipelining with the responses in one write, partial
 * reads and writes, slow clients, oversized headers, TLS handshake failures, the connection cap,
 * worker spread, and a clean shutdown with connections open. */
#define _GNU_SOURCE /* strcasestr */
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/time.h>

/* every server of the included suite runs on the epoll backend */
__attribute__((constructor)) static void use_epoll(void) { setenv("TENANCY_HTTP_BACKEND", "epoll", 1); }

#include "test_httpserver.c"

TestSuite(httpfast, .init = setup, .fini = teardown);

/* ---- helpers ---- */

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void send_all(int fd, const char *s, size_t n) {
  while (n) {
    ssize_t w = write(fd, s, n);
    cr_assert_gt(w, 0);
    s += w;
    n -= (size_t)w;
  }
}

/* Reads until `count` complete responses (by Content-Length) are in b, or EOF/timeout.
 * Returns how many complete responses were read. */
static int read_responses(int fd, SSL *ssl, struct tn_buf *b, int count) {
  int got = 0;
  size_t pos = 0;
  char tmp[65536];
  while (got < count) {
    const char *hend = b->len > pos ? strstr(b->data + pos, "\r\n\r\n") : NULL;
    if (hend) {
      const char *cl = strcasestr(b->data + pos, "content-length:");
      size_t blen = cl && cl < hend ? strtoul(cl + 15, NULL, 10) : 0;
      size_t total = (size_t)(hend + 4 - (b->data + pos)) + blen;
      if (b->len - pos >= total) {
        pos += total;
        got++;
        continue;
      }
    }
    ssize_t n = ssl ? SSL_read(ssl, tmp, sizeof tmp) : read(fd, tmp, sizeof tmp);
    if (n <= 0)
      break;
    cr_assert_eq(tn_buf_append(b, tmp, (size_t)n), 0);
  }
  return got;
}

static int count_of(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

/* True when the peer closed fd within timeout_s (read returns 0 or an error). */
static bool closed_within(int fd, double timeout_s) {
  double t0 = tn_mono_now();
  char buf[4096];
  while (tn_mono_now() - t0 < timeout_s) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 100) == 1) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0)
        return true;
    }
  }
  return false;
}

static struct tn_httpserver *fast_server(const struct tn_http_tls *tls, int workers,
                                         const struct tn_http_limits *limits, size_t *big_size) {
  struct tn_httpserver *srv = NULL;
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_httpserver_new("127.0.0.1:0", tls, &srv, &err), 0, "%s", err.message);
  cr_assert_eq(tn_httpserver_set_backend(srv, TN_HTTP_BACKEND_EPOLL), 0);
  cr_assert_eq(tn_httpserver_set_workers(srv, workers), 0);
  if (limits)
    cr_assert_eq(tn_httpserver_set_limits(srv, limits), 0);
  echo_routes(srv, NULL);
  cr_assert_eq(tn_httpserver_route(srv, "GET", "/worker", which_worker, NULL), 0);
  if (big_size)
    cr_assert_eq(tn_httpserver_route(srv, "GET", "/big", big, big_size), 0);
  cr_assert_eq(tn_httpserver_start(srv, &err), 0, "%s", err.message);
  cr_assert_eq(tn_httpserver_set_backend(srv, TN_HTTP_BACKEND_LWS), -EBUSY);
  return srv;
}

/* ---- pipelining ---- */

Test(httpfast, pipelined_requests_are_answered_in_order_on_one_connection) {
  atomic_store(&echo_calls, 0);
  struct tn_httpserver *srv = fast_server(NULL, 1, NULL, NULL);
  int fd = connect_to(tn_httpserver_port(srv));
  /* 20 requests in one write, a POST with a body among them */
  struct tn_buf req;
  tn_buf_init(&req, 1 << 20);
  for (int i = 0; i < 20; i++) {
    if (i == 7)
      tn_buf_printf(
          &req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/x\r\nContent-Length: 5\r\n\r\nb%04d",
          i);
    else
      tn_buf_printf(&req, "GET /echo?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", i);
  }
  send_all(fd, req.data, req.len);
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(read_responses(fd, NULL, &b, 20), 20, "got: %s", tn_buf_str(&b));
  cr_assert_eq(count_of(b.data, "HTTP/1.1 201 Created"), 20);
  cr_assert_eq(count_of(b.data, "connection: close"), 0);
  cr_assert_not_null(strstr(b.data, "POST /echo text/x\nb0007"), "%s", b.data);
  /* in order: the POST's answer is the eighth */
  const char *p = b.data;
  for (int i = 0; i < 7; i++)
    p = strstr(p, "GET /echo") + 1;
  cr_assert(strstr(p, "POST /echo") < strstr(p, "GET /echo"));
  cr_assert_eq(atomic_load(&echo_calls), 20);
  /* the connection stays usable */
  tn_buf_reset(&b);
  send_all(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", 31);
  cr_assert_eq(read_responses(fd, NULL, &b, 1), 1);
  close(fd);
  tn_buf_cleanup(&b);
  tn_buf_cleanup(&req);
  tn_httpserver_free(srv);
}

Test(httpfast, pipelined_responses_past_the_write_mark_all_go_out) {
  /* 16 responses of 100 KB asked in one write: the server stops answering at its mark of unsent
   * bytes, sends, and must come back to the rest even when the send never blocked */
  size_t size = 100000;
  struct tn_httpserver *srv = fast_server(NULL, 1, NULL, &size);
  for (int round = 0; round < 5; round++) {
    int fd = connect_to(tn_httpserver_port(srv));
    struct tn_buf req, b;
    tn_buf_init(&req, 1 << 20);
    tn_buf_init(&b, 64u << 20);
    for (int i = 0; i < 16; i++)
      tn_buf_appends(&req, "GET /big HTTP/1.1\r\n\r\n");
    send_all(fd, req.data, req.len);
    double t0 = tn_mono_now();
    cr_assert_eq(read_responses(fd, NULL, &b, 16), 16);
    cr_assert_lt(tn_mono_now() - t0, 2.0);
    close(fd);
    tn_buf_cleanup(&b);
    tn_buf_cleanup(&req);
  }
  tn_httpserver_free(srv);
}

Test(httpfast, a_request_split_into_single_bytes_is_answered) {
  struct tn_httpserver *srv = fast_server(NULL, 1, NULL, NULL);
  int fd = connect_to(tn_httpserver_port(srv));
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const char *r = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /echo HTTP/1.1\r\n\r\n";
  for (const char *p = r; *p; p++) {
    send_all(fd, p, 1);
    usleep(2000);
  }
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  cr_assert_eq(read_responses(fd, NULL, &b, 2), 2, "%s", tn_buf_str(&b));
  cr_assert_not_null(strstr(b.data, "\nabc"));
  close(fd);
  tn_buf_cleanup(&b);
  tn_httpserver_free(srv);
}

Test(httpfast, large_responses_reach_a_slow_reader_whole) {
  size_t size = 2u << 20;
  struct tn_httpserver *srv = fast_server(NULL, 1, NULL, &size);
  int fd = connect_to(tn_httpserver_port(srv));
  int small = 32768;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  send_all(fd, "GET /big HTTP/1.1\r\n\r\nGET /big HTTP/1.1\r\n\r\n", 42);
  usleep(300 * 1000); /* the server's socket buffer fills: partial writes */
  struct tn_buf b;
  tn_buf_init(&b, 64u << 20);
  cr_assert_eq(read_responses(fd, NULL, &b, 2), 2);
  const char *body = strstr(b.data, "\r\n\r\n") + 4;
  for (size_t i = 0; i < size; i += 4093)
    cr_assert_eq(body[i], (char)('a' + (i * 7 + i / 4096) % 26), "byte %zu", i);
  close(fd);
  tn_buf_cleanup(&b);
  tn_httpserver_free(srv);
}

/* ---- limits ---- */

Test(httpfast, slow_clients_are_cut_off_at_the_timeout) {
  struct tn_http_limits l = {.timeout_s = 1};
  struct tn_httpserver *srv = fast_server(NULL, 1, &l, NULL);
  int port = tn_httpserver_port(srv);
  /* slowloris: a byte every 200 ms never completes the headers in time */
  int fd = connect_to(port);
  double t0 = tn_mono_now();
  const char *r = "GET /echo HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
  bool closed = false;
  for (const char *p = r; *p && !closed; p++) {
    if (send(fd, p, 1, MSG_NOSIGNAL) != 1)
      closed = true;
    closed = closed || closed_within(fd, 0.2);
  }
  double dt = tn_mono_now() - t0;
  cr_assert(closed, "the trickling connection is still open after %.1f s", dt);
  cr_assert_lt(dt, 4.0);
  close(fd);
  /* an idle keep-alive connection goes too; a client that does not read its answers as well */
  fd = connect_to(port);
  cr_assert(closed_within(fd, 4.0));
  close(fd);
  tn_httpserver_free(srv);
}

Test(httpfast, oversized_headers_get_431_and_close) {
  struct tn_httpserver *srv = fast_server(NULL, 1, NULL, NULL);
  int fd = connect_to(tn_httpserver_port(srv));
  char *h = malloc(40000);
  int n = snprintf(h, 40000, "GET /echo HTTP/1.1\r\nX-Big: ");
  memset(h + n, 'x', 30000);
  memcpy(h + n + 30000, "\r\n\r\n", 5);
  (void)!send(fd, h, strlen(h), MSG_NOSIGNAL);
  char buf[512] = "";
  ssize_t got = read(fd, buf, sizeof buf - 1);
  cr_assert_gt(got, 12);
  cr_assert_eq(atoi(buf + 9), 431, "%s", buf);
  cr_assert(closed_within(fd, 3.0));
  close(fd);
  /* a bad request line: 400 and close; a chunked body: 411 and close */
  fd = connect_to(tn_httpserver_port(srv));
  send_all(fd, "GET nothing\r\n\r\n", 15);
  cr_assert_eq(read_status(fd, 3), 400);
  close(fd);
  fd = connect_to(tn_httpserver_port(srv));
  const char *te = "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  send_all(fd, te, strlen(te));
  cr_assert_eq(read_status(fd, 3), 411);
  close(fd);
  fd = connect_to(tn_httpserver_port(srv));
  const char *smug = "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd";
  send_all(fd, smug, strlen(smug));
  cr_assert_eq(read_status(fd, 3), 400);
  close(fd);
  fd = connect_to(tn_httpserver_port(srv));
  send_all(fd, "GET /../echo HTTP/1.1\r\n\r\n", 25);
  cr_assert_eq(read_status(fd, 3), 400);
  close(fd);
  free(h);
  tn_httpserver_free(srv);
}

Test(httpfast, connections_past_the_cap_are_closed_and_the_others_served) {
  struct tn_http_limits l = {.max_connections = 4};
  struct tn_httpserver *srv = fast_server(NULL, 1, &l, NULL);
  int port = tn_httpserver_port(srv);
  int fds[4];
  for (int i = 0; i < 4; i++)
    fds[i] = connect_to(port);
  usleep(200 * 1000);
  int extra = connect_to(port);
  cr_assert(closed_within(extra, 3.0), "a fifth connection was kept");
  close(extra);
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  for (int i = 0; i < 4; i++) {
    tn_buf_reset(&b);
    send_all(fds[i], "GET /echo HTTP/1.1\r\n\r\n", 22);
    cr_assert_eq(read_responses(fds[i], NULL, &b, 1), 1);
  }
  close(fds[0]);
  usleep(200 * 1000);
  int again = connect_to(port); /* a slot is free again */
  tn_buf_reset(&b);
  send_all(again, "GET /echo HTTP/1.1\r\n\r\n", 22);
  cr_assert_eq(read_responses(again, NULL, &b, 1), 1);
  close(again);
  for (int i = 1; i < 4; i++)
    close(fds[i]);
  tn_buf_cleanup(&b);
  tn_httpserver_free(srv);
}

Test(httpfast, connections_spread_over_the_workers) {
  struct tn_httpserver *srv = fast_server(NULL, 2, NULL, NULL);
  int port = tn_httpserver_port(srv);
  bool seen[2] = {false, false};
  struct tn_buf b;
  tn_buf_init(&b, 1 << 20);
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = connect_to(port);
    tn_buf_reset(&b);
    send_all(fds[i], "GET /worker HTTP/1.1\r\n\r\n", 24);
    cr_assert_eq(read_responses(fds[i], NULL, &b, 1), 1);
    int wk = atoi(strstr(b.data, "\r\n\r\n") + 4);
    cr_assert(wk == 0 || wk == 1, "%s", b.data);
    seen[wk] = true;
  }
  cr_assert(seen[0] && seen[1], "round robin uses both workers");
  for (int i = 0; i < 4; i++)
    close(fds[i]);
  tn_buf_cleanup(&b);
  tn_httpserver_free(srv);
}

/* ---- TLS ---- */

static void make_cert(char *dir, char *cert, char *key, size_t n) {
  cr_assert_not_null(mkdtemp(dir));
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
                      "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 "
                      "-keyout %s/tls.key -out %s/tls.crt",
                      dir, dir);
  cr_assert_eq(rc, 0, "openssl: %s", out);
  free(out);
  snprintf(cert, n, "%s/tls.crt", dir);
  snprintf(key, n, "%s/tls.key", dir);
}

static SSL *tls_connect(SSL_CTX *ctx, int fd) {
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set1_host(ssl, "127.0.0.1");
  return SSL_connect(ssl) == 1 ? ssl : (SSL_free(ssl), NULL);
}

Test(httpfast, tls_pipelining_and_failed_handshakes) {
  char dir[] = "/tmp/tn-httpfast-tls-XXXXXX", cert[96], key[96];
  make_cert(dir, cert, key, sizeof cert);
  struct tn_http_tls tls = {cert, key};
  struct tn_httpserver *srv = fast_server(&tls, 2, NULL, NULL);
  int port = tn_httpserver_port(srv);
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  cr_assert_eq(SSL_CTX_load_verify_locations(ctx, cert, NULL), 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

  /* 64 requests in one SSL_write, all answered */
  int fd = connect_to(port);
  SSL *ssl = tls_connect(ctx, fd);
  cr_assert_not_null(ssl);
  struct tn_buf req, b;
  tn_buf_init(&req, 1 << 20);
  tn_buf_init(&b, 8 << 20);
  for (int i = 0; i < 64; i++)
    tn_buf_printf(&req, "GET /echo HTTP/1.1\r\nAuthorization: Bearer t%d\r\n\r\n", i);
  cr_assert_eq(SSL_write(ssl, req.data, (int)req.len), (int)req.len);
  cr_assert_eq(read_responses(fd, ssl, &b, 64), 64);
  cr_assert_eq(count_of(b.data, "HTTP/1.1 201"), 64);
  SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);

  /* a client that only speaks TLS 1.1 fails the handshake; so does plain text and garbage */
  SSL_CTX *old = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
  SSL_CTX_set_security_level(old, 0);
  fd = connect_to(port);
  ssl = tls_connect(old, fd);
  cr_assert_null(ssl, "a TLS 1.1 handshake succeeded");
  close(fd);
  ERR_clear_error();
  fd = connect_to(port);
  send_all(fd, "GET /echo HTTP/1.1\r\n\r\n", 22);
  cr_assert(closed_within(fd, 3.0));
  close(fd);
  /* a certificate the client does not trust: its handshake fails, the server lives on */
  SSL_CTX *untrusting = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(untrusting, SSL_VERIFY_PEER, NULL);
  fd = connect_to(port);
  cr_assert_null(tls_connect(untrusting, fd));
  close(fd);
  ERR_clear_error();
  /* a handshake that never finishes is cut off: TLS ClientHello header only, then silence */
  struct tn_http_limits l = {.timeout_s = 1};
  struct tn_httpserver *srv2 = fast_server(&tls, 1, &l, NULL);
  fd = connect_to(tn_httpserver_port(srv2));
  send_all(fd, "\x16\x03\x01\x02\x00", 5);
  cr_assert(closed_within(fd, 4.0));
  close(fd);
  tn_httpserver_free(srv2);

  /* and a good client still gets through */
  fd = connect_to(port);
  ssl = tls_connect(ctx, fd);
  cr_assert_not_null(ssl);
  tn_buf_reset(&b);
  cr_assert_eq(SSL_write(ssl, "GET /echo HTTP/1.1\r\n\r\n", 22), 22);
  cr_assert_eq(read_responses(fd, ssl, &b, 1), 1);
  SSL_free(ssl);
  close(fd);
  SSL_CTX_free(untrusting);
  SSL_CTX_free(old);
  SSL_CTX_free(ctx);
  tn_buf_cleanup(&req);
  tn_buf_cleanup(&b);
  tn_httpserver_free(srv);
  tn_test_sh(NULL, "rm -rf %s", dir);
}

/* ---- shutdown ---- */

Test(httpfast, free_with_connections_open_is_prompt_and_clean) {
  char dir[] = "/tmp/tn-httpfast-stop-XXXXXX", cert[96], key[96];
  make_cert(dir, cert, key, sizeof cert);
  struct tn_http_tls tls = {cert, key};
  for (int round = 0; round < 3; round++) {
    struct tn_httpserver *srv = fast_server(round == 1 ? &tls : NULL, 2, NULL, NULL);
    int port = tn_httpserver_port(srv);
    int idle = connect_to(port);
    int mid = connect_to(port);
    send_all(mid, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc", 48); /* body pending */
    usleep(100 * 1000);
    double t0 = tn_mono_now();
    tn_httpserver_free(srv);
    cr_assert_lt(tn_mono_now() - t0, 2.0);
    cr_assert(closed_within(idle, 2.0));
    cr_assert(closed_within(mid, 2.0));
    close(idle);
    close(mid);
  }
  tn_test_sh(NULL, "rm -rf %s", dir);
}

/* libwebsockets 4.1.6 leaves OpenSSL state allocated at exit when two of its TLS servers live in
 * one process (docs/internals/admission.md). The operator's second TLS listener, the read API, is
 * on this backend now: a TLS server of each kind together must leave nothing for LeakSanitizer
 * (hack/test.sh fails a suite whose log has a LeakSanitizer report). */
Test(httpfast, a_tls_server_of_each_backend_in_one_process_exits_clean) {
  unsetenv("TENANCY_HTTP_BACKEND"); /* this test picks the backends itself */
  char dir[] = "/tmp/tn-httpfast-two-XXXXXX", cert[96], key[96];
  make_cert(dir, cert, key, sizeof cert);
  struct tn_http_tls tls = {cert, key};
  struct tn_httpserver *lws = NULL;
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_httpserver_new("127.0.0.1:0", &tls, &lws, &err), 0);
  echo_routes(lws, NULL);
  cr_assert_eq(tn_httpserver_start(lws, &err), 0, "%s", err.message);
  struct tn_httpserver *fast = fast_server(&tls, 2, NULL, NULL);
  char url[128];
  struct reply r;
  struct tn_httpserver *both[] = {lws, fast};
  for (int i = 0; i < 2; i++) {
    url_of(url, sizeof url, both[i], "https", "/echo");
    fetch(url, &(struct req){.ca_file = cert}, &r);
    cr_assert_eq(r.status, 201);
    tn_buf_cleanup(&r.body);
  }
  tn_httpserver_free(fast);
  tn_httpserver_free(lws);
  tn_test_sh(NULL, "rm -rf %s", dir);
}
