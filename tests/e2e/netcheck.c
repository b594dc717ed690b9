/* netcheck.c - the end-to-end suite's network probe, a static binary in an image FROM scratch
 * (no shell, no tools): one pod serves, others try to connect, and NetworkPolicies decide.
 *
 *   netcheck serve PORT                    accept TCP connections, answer "ok\n" to each
 *   netcheck connect HOST PORT [TIMEOUT_MS] exit 0 and print "connected" once the server answers
 *                                          (tries for TIMEOUT_MS, default 3000), exit 1 and print
 *                                          why not (refused, no answer, ...)
 *   netcheck poll HOST PORT                connect every half second for ever, one line each
 *   netcheck tcp HOST PORT [TIMEOUT_MS [DELAY_MS]]
 *                                          as connect, but a completed TCP handshake is enough (a
 *                                          server that speaks first is not needed: PostgreSQL);
 *                                          waits DELAY_MS first: a policy agent (kube-router) puts a
 *                                          new pod's egress rules in place a moment after it starts,
 *                                          and a connection made before that is not judged
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_term(int sig) {
  (void)sig;
  _exit(0);
}

static int serve(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0) {
    fprintf(stderr, "netcheck: cannot listen on %d: %s\n", port, strerror(errno));
    return 1;
  }
  printf("serving on :%d\n", port);
  fflush(stdout);
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0)
      continue;
    (void)!write(c, "ok\n", 3);
    close(c);
  }
}

/* One attempt: 0 when the server answered "ok", 1 when not (why in *why). */
static int attempt(const struct sockaddr_in *a, int timeout_ms, const char **why) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), rc = 1;
  if (s < 0) {
    *why = strerror(errno);
    return 1;
  }
  struct pollfd p = {.fd = s, .events = POLLIN};
  char buf[8] = "";
  if (connect(s, (const struct sockaddr *)a, sizeof *a) != 0 && errno != EINPROGRESS)
    *why = strerror(errno);
  else if (poll(&p, 1, timeout_ms) <= 0)
    *why = "no answer";
  else {
    ssize_t r = read(s, buf, sizeof buf - 1);
    int err = 0;
    socklen_t len = sizeof err;
    if (r >= 3 && strncmp(buf, "ok\n", 3) == 0)
      rc = 0;
    else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
      *why = strerror(err);
    else
      *why = r < 0 ? strerror(errno) : "closed without an answer";
  }
  close(s);
  return rc;
}

/* One TCP handshake: 0 when it completed, 1 when not (why in *why). */
static int handshake(const struct sockaddr_in *a, int timeout_ms, const char **why) {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), rc = 1, err = 0;
  socklen_t len = sizeof err;
  if (s < 0) {
    *why = strerror(errno);
    return 1;
  }
  struct pollfd p = {.fd = s, .events = POLLOUT};
  if (connect(s, (const struct sockaddr *)a, sizeof *a) == 0)
    rc = 0;
  else if (errno != EINPROGRESS)
    *why = strerror(errno);
  else if (poll(&p, 1, timeout_ms) <= 0)
    *why = "no answer";
  else if (getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err)
    *why = strerror(err ? err : errno);
  else
    rc = 0;
  close(s);
  return rc;
}

/* Tries for timeout_ms (a new pod's addresses reach the policy agent's sets within a moment):
 * 0 and "connected" as soon as the server answers, 1 and "blocked: why" when it never did. */
static int connect_to(const char *host, int port, int timeout_ms, bool tcp_only) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    printf("bad address %s\n", host);
    return 2;
  }
  const char *why = "no attempt";
  for (int waited = 0; waited < timeout_ms; waited += 500) {
    if ((tcp_only ? handshake(&a, 400, &why) : attempt(&a, 400, &why)) == 0) {
      printf("connected\n");
      fflush(stdout);
      return 0;
    }
    usleep(100 * 1000);
  }
  printf("blocked: %s for %d ms\n", why, timeout_ms);
  fflush(stdout);
  return 1;
}

int main(int argc, char **argv) {
  signal(SIGTERM, on_term);
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && strcmp(argv[1], "serve") == 0)
    return serve(atoi(argv[2]));
  if ((argc == 4 || argc == 5) && strcmp(argv[1], "connect") == 0)
    return connect_to(argv[2], atoi(argv[3]), argc == 5 ? atoi(argv[4]) : 3000, false);
  if (argc >= 4 && argc <= 6 && strcmp(argv[1], "tcp") == 0) {
    if (argc == 6)
      usleep((useconds_t)atoi(argv[5]) * 1000);
    return connect_to(argv[2], atoi(argv[3]), argc >= 5 ? atoi(argv[4]) : 3000, true);
  }
  if (argc == 4 && strcmp(argv[1], "poll") == 0)
    for (;;) {
      if (connect_to(argv[2], atoi(argv[3]), 500, false) == 2)
        return 2;
      usleep(500 * 1000);
    }
  fprintf(stderr,
          "usage: netcheck serve PORT | netcheck connect HOST PORT [TIMEOUT_MS] | netcheck poll HOST PORT | "
          "netcheck tcp HOST PORT [TIMEOUT_MS [DELAY_MS]]\n");
  return 2;
}
