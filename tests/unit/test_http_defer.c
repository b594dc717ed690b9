/* test_http_defer.c - tn_http_defer on the epoll backend: deferred work runs on the job threads,
 * not the service thread (another connection is answered while a job blocks); a connection's
 * pipelined requests keep their order around a deferred one; a full queue answers 503; a client
 * that leaves while its job runs, and a server freed with jobs in flight, are clean (ASan/LSan);
 * and the shared problem details (tn_http_problem). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "runtime/httpserver.h"
#include "util/buf.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pthread_t service_thread;     /* the thread that ran the last quick handler */
static atomic_bool gate_open = true; /* jobs with ms=-1 wait for it */
static atomic_bool job_on_service_thread;
static atomic_int jobs_run, args_freed;

static void free_arg(void *p) {
  atomic_fetch_add(&args_freed, 1);
  free(p);
}

/* The deferred part: sleeps ms (the query's), answers "slow <n>" with a header. */
static int slow_job(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  int *ms = ud;
  if (pthread_equal(pthread_self(), service_thread))
    atomic_store(&job_on_service_thread, true);
  cr_assert_eq(req->worker, TN_HTTP_DEFERRED_WORKER);
  if (*ms < 0)
    while (!atomic_load(&gate_open))
      usleep(1000);
  else
    usleep((useconds_t)*ms * 1000);
  atomic_fetch_add(&jobs_run, 1);
  resp->status = 202;
  (void)tn_http_response_header(resp, "X-Job", "done");
  const char *n = tn_http_query(req, "n");
  return tn_buf_printf(&resp->body, "slow %s auth=%s", n ? n : "-", req->authorization);
}

static int slow(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  (void)ud;
  service_thread = pthread_self();
  int *ms = malloc(sizeof *ms);
  const char *q = tn_http_query(req, "ms");
  *ms = q ? atoi(q) : 300;
  return tn_http_defer(req, resp, slow_job, ms, free_arg);
}

static int quick(const struct tn_http_request *req, struct tn_http_response *resp, void *ud) {
  (void)ud;
  const char *n = tn_http_query(req, "n");
  return tn_buf_printf(&resp->body, "quick %s", n ? n : "-");
}

static struct tn_httpserver *server(int job_threads) {
  struct tn_httpserver *srv = NULL;
  struct tn_error err;
  tn_error_clear(&err);
  cr_assert_eq(tn_httpserver_new("127.0.0.1:0", NULL, &srv, &err), 0, "%s", err.message);
  cr_assert_eq(tn_httpserver_set_backend(srv, TN_HTTP_BACKEND_EPOLL), 0);
  cr_assert_eq(tn_httpserver_set_workers(srv, 1), 0);
  cr_assert_eq(tn_httpserver_set_job_threads(srv, job_threads), 0);
  cr_assert_eq(tn_httpserver_set_job_threads(srv, 0), -EINVAL);
  cr_assert_eq(tn_httpserver_route(srv, "GET", "/slow", slow, NULL), 0);
  cr_assert_eq(tn_httpserver_route(srv, "GET", "/quick", quick, NULL), 0);
  cr_assert_eq(tn_httpserver_start(srv, &err), 0, "%s", err.message);
  cr_assert_eq(tn_httpserver_set_job_threads(srv, 2), -EBUSY);
  return srv;
}

static int connect_to(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
  struct timeval tv = {.tv_sec = 10};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

static void send_str(int fd, const char *s) {
  size_t n = strlen(s);
  while (n) {
    ssize_t w = write(fd, s, n);
    cr_assert_gt(w, 0);
    s += w;
    n -= (size_t)w;
  }
}

/* Reads until `count` complete responses are in b (by Content-Length), or EOF/timeout. */
static int read_responses(int fd, struct tn_buf *b, int count) {
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
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0)
      break;
    cr_assert_eq(tn_buf_append(b, tmp, (size_t)n), 0);
  }
  return got;
}

Test(http_defer, a_blocking_job_does_not_hold_up_the_service_thread) {
  atomic_store(&job_on_service_thread, false);
  struct tn_httpserver *srv = server(2);
  int port = tn_httpserver_port(srv);
  int a = connect_to(port), b = connect_to(port);
  double t0 = now_s();
  send_str(a, "GET /slow?ms=800&n=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n");
  usleep(50 * 1000);
  /* the one service thread answers another connection while the job sleeps */
  send_str(b, "GET /quick?n=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  struct tn_buf rb;
  tn_buf_init(&rb, 1 << 20);
  cr_assert_eq(read_responses(b, &rb, 1), 1);
  double quick_s = now_s() - t0;
  cr_assert_not_null(strstr(rb.data, "quick 2"));
  cr_assert_lt(quick_s, 0.6, "the quick request waited %.3f s for the slow job", quick_s);
  tn_buf_reset(&rb);
  cr_assert_eq(read_responses(a, &rb, 1), 1);
  cr_assert_not_null(strstr(rb.data, "HTTP/1.1 202"), "%s", rb.data);
  cr_assert_not_null(strcasestr(rb.data, "x-job: done"), "%s", rb.data);
  cr_assert_not_null(strstr(rb.data, "slow 1 auth=Bearer abc"), "the job got a copy of the request: %s",
                     rb.data);
  cr_assert_geq(now_s() - t0, 0.75);
  cr_assert_not(atomic_load(&job_on_service_thread), "the job ran on the service thread");
  close(a);
  close(b);
  tn_buf_cleanup(&rb);
  tn_httpserver_free(srv);
}

Test(http_defer, pipelined_requests_keep_their_order_around_a_deferred_one) {
  struct tn_httpserver *srv = server(2);
  int fd = connect_to(tn_httpserver_port(srv));
  send_str(fd, "GET /quick?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /slow?ms=200&n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /quick?n=3 HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /slow?ms=10&n=4 HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /quick?n=5 HTTP/1.1\r\nHost: x\r\n\r\n");
  struct tn_buf rb;
  tn_buf_init(&rb, 1 << 20);
  cr_assert_eq(read_responses(fd, &rb, 5), 5, "%s", tn_buf_str(&rb));
  const char *p1 = strstr(rb.data, "quick 1"), *p2 = strstr(rb.data, "slow 2"),
             *p3 = strstr(rb.data, "quick 3"), *p4 = strstr(rb.data, "slow 4"),
             *p5 = strstr(rb.data, "quick 5");
  cr_assert(p1 && p2 && p3 && p4 && p5, "%s", rb.data);
  cr_assert(p1 < p2 && p2 < p3 && p3 < p4 && p4 < p5, "out of order: %s", rb.data);
  /* the connection stays usable */
  tn_buf_reset(&rb);
  send_str(fd, "GET /slow?ms=1&n=6 HTTP/1.1\r\nHost: x\r\n\r\n");
  cr_assert_eq(read_responses(fd, &rb, 1), 1);
  cr_assert_not_null(strstr(rb.data, "slow 6"));
  close(fd);
  tn_buf_cleanup(&rb);
  tn_httpserver_free(srv);
}

Test(http_defer, a_full_queue_answers_503_and_frees_the_argument) {
  atomic_store(&args_freed, 0);
  atomic_store(&jobs_run, 0);
  struct tn_httpserver *srv = server(1);
  int port = tn_httpserver_port(srv);
  enum { N = TN_HTTP_JOB_QUEUE + 8 };
  static int fds[N];
  atomic_store(&gate_open, false); /* the one job thread blocks on its first job */
  for (int i = 0; i < N; i++) {
    fds[i] = connect_to(port);
    send_str(fds[i], "GET /slow?ms=-1 HTTP/1.1\r\nHost: x\r\n\r\n");
  }
  /* one job runs, TN_HTTP_JOB_QUEUE wait, the rest are refused: wait for the refusals */
  usleep(500 * 1000);
  atomic_store(&gate_open, true);
  int ok = 0, busy = 0;
  struct tn_buf rb;
  tn_buf_init(&rb, 1 << 20);
  for (int i = 0; i < N; i++) {
    tn_buf_reset(&rb);
    cr_assert_eq(read_responses(fds[i], &rb, 1), 1, "connection %d", i);
    if (strstr(rb.data, "HTTP/1.1 202"))
      ok++;
    else if (strstr(rb.data, "HTTP/1.1 503")) {
      busy++;
      cr_assert_not_null(strcasestr(rb.data, "retry-after: 1"));
      cr_assert_not_null(strstr(rb.data, "\"status\":503"), "a problem detail: %s", rb.data);
    }
    close(fds[i]);
  }
  cr_assert_eq(ok + busy, N);
  cr_assert_eq(ok, TN_HTTP_JOB_QUEUE + 1, "one running and a full queue are served");
  cr_assert_eq(busy, N - TN_HTTP_JOB_QUEUE - 1, "the others are refused");
  tn_buf_cleanup(&rb);
  tn_httpserver_free(srv);
  cr_assert_eq(atomic_load(&args_freed), N, "every argument is freed, run or refused");
}

Test(http_defer, clients_that_leave_and_a_server_freed_with_jobs_in_flight_are_clean) {
  atomic_store(&args_freed, 0);
  struct tn_httpserver *srv = server(2);
  int port = tn_httpserver_port(srv);
  int a = connect_to(port);
  send_str(a, "GET /slow?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n");
  usleep(20 * 1000);
  close(a); /* gone while its job runs */
  usleep(300 * 1000);
  int b = connect_to(port), c = connect_to(port), d = connect_to(port);
  send_str(b, "GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n");
  send_str(c, "GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n");
  send_str(d, "GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n"); /* queued behind the two threads */
  usleep(50 * 1000);
  tn_httpserver_free(srv); /* two jobs running, one queued */
  cr_assert_eq(atomic_load(&args_freed), 4);
  close(b);
  close(c);
  close(d);
}

Test(http_defer, problem_details_are_shared) {
  struct tn_http_response r = {.status = 200};
  tn_buf_init(&r.body, 1 << 16);
  tn_buf_appends(&r.body, "earlier");
  cr_assert_eq(tn_http_problem(&r, "/x/y", 404, "not-found", "no tenant %s", "acme"), 0);
  cr_assert_eq(r.status, 404);
  cr_assert_str_eq(r.content_type, "application/problem+json");
  json_t *j = json_loads(tn_buf_str(&r.body), 0, NULL);
  cr_assert_not_null(j, "%s", tn_buf_str(&r.body));
  cr_assert_str_eq(json_string_value(json_object_get(j, "type")), "https://tenancy.dev/problems/not-found");
  cr_assert_str_eq(json_string_value(json_object_get(j, "title")), "Not Found");
  cr_assert_eq(json_integer_value(json_object_get(j, "status")), 404);
  cr_assert_str_eq(json_string_value(json_object_get(j, "detail")), "no tenant acme");
  cr_assert_str_eq(json_string_value(json_object_get(j, "instance")), "/x/y");
  json_decref(j);
  cr_assert_str_eq(tn_http_reason(502), "Bad Gateway");
  cr_assert_str_eq(tn_http_reason(429), "Too Many Requests");
  tn_buf_cleanup(&r.body);
}
