/* test_hygiene.c - the running operator keeps its secrets to itself: started with --pg-dsn-file as
 * an unprivileged user, no password is in its command line, it is not dumpable (another process
 * of the same user can read neither its environment nor its memory) and cannot write a core
 * file, and it still converges and writes the audit trail with the DSN it read from the file. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kube/client.h"
#include "tn_operator.h"
#include "tn_test.h"

#define NOBODY 65534

static char dir[64];
static struct tn_test_operator op;

/* The whole of a file (malloc'd, NUL-terminated); NULL when unreadable. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  char *buf = malloc(1 << 20);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

static char *b64_of(const char *pem) {
  size_t n = strlen(pem);
  char *out = malloc(4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)pem, (int)n);
  return out;
}

/* PEM text of a file-or-data pair of the loaded kubeconfig. */
static char *pem_of(const char *file, const char *data) {
  if (data)
    return strdup(data);
  char *t = file ? slurp(file, NULL) : NULL;
  cr_assert_not_null(t, "cannot read %s", file ? file : "(none)");
  return t;
}

static void write_file(const char *path, const char *text, mode_t mode) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
  cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  cr_assert_eq(chown(path, NOBODY, NOBODY), 0);
  cr_assert_eq(chmod(path, mode), 0);
}

/* The private stack's DSN with its sslrootcert copied where nobody can read it. */
static char *dsn_for_nobody(void) {
  const char *dsn = tn_test_env("TENANCY_PG_DSN");
  const char *p = strstr(dsn, "sslrootcert=");
  cr_assert_not_null(p, "the stack's DSN has no sslrootcert: %s", "(not shown)");
  const char *v = p + strlen("sslrootcert="), *end = v + strcspn(v, "&");
  char ca_path[300], src[512];
  snprintf(src, sizeof src, "%.*s", (int)(end - v), v);
  snprintf(ca_path, sizeof ca_path, "%s/pg-ca.crt", dir);
  char *ca = slurp(src, NULL);
  cr_assert_not_null(ca, "%s", src);
  write_file(ca_path, ca, 0400);
  free(ca);
  char *out = malloc(strlen(dsn) + sizeof ca_path + 1);
  sprintf(out, "%.*s%s%s", (int)(v - dsn), dsn, ca_path, end);
  return out;
}

/* A kubeconfig with embedded credentials (the stack's own reference files nobody cannot read). */
static void kubeconfig_for_nobody(const char *path) {
  struct tn_kube_config c;
  struct tn_error err = {0};
  cr_assert_eq(tn_kube_config_load(NULL, NULL, &c, &err), 0, "%s", err.message);
  char *ca = pem_of(c.ca_file, c.ca_data), *cert = pem_of(c.cert_file, c.cert_data),
       *key = pem_of(c.key_file, c.key_data);
  char *ca64 = b64_of(ca), *cert64 = b64_of(cert), *key64 = b64_of(key);
  size_t n = strlen(ca64) + strlen(cert64) + strlen(key64) + 1024;
  char *text = malloc(n);
  snprintf(text, n,
           "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
           "clusters: [{name: x, cluster: {server: \"%s\", certificate-authority-data: %s}}]\n"
           "contexts: [{name: x, context: {cluster: x, user: x}}]\n"
           "users: [{name: x, user: {client-certificate-data: %s, client-key-data: %s}}]\n",
           c.server, ca64, cert64, key64);
  write_file(path, text, 0400);
  free(text);
  free(ca), free(cert), free(key), free(ca64), free(cert64), free(key64);
  tn_kube_config_cleanup(&c);
}

static void setup(void) {
  cr_assert_eq(geteuid(), 0, "this suite drops to uid %d: run it as root", NOBODY);
  tn_test_install_api();
  snprintf(dir, sizeof dir, "/tmp/tn-hygiene-XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  cr_assert_eq(chown(dir, NOBODY, NOBODY), 0);
}

static void teardown(void) {
  tn_test_operator_stop(&op, SIGTERM, 40);
  char *out = NULL;
  tn_test_sh(&out, "rm -rf '%s'", dir);
  free(out);
}

TestSuite(hygiene, .init = setup, .fini = teardown, .timeout = 180);

/* Whether a process running as nobody can open path for reading (in a child, so the test keeps
 * its identity). */
static bool nobody_can_read(const char *path) {
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    if (setgid(NOBODY) || setuid(NOBODY))
      _exit(2);
    int fd = open(path, O_RDONLY);
    char b[16];
    _exit(fd >= 0 && read(fd, b, sizeof b) >= 0 ? 0 : 1);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 2, "the probe could not become nobody");
  return WEXITSTATUS(st) == 0;
}

static uid_t owner_of(const char *path) {
  struct stat sb;
  cr_assert_eq(stat(path, &sb), 0, "%s: %s", path, strerror(errno));
  return sb.st_uid;
}

Test(hygiene, operator_is_not_dumpable_and_keeps_the_dsn_out_of_its_command_line) {
  char kc[128], dsn_path[128], flag_kc[160], flag_dsn[160];
  snprintf(kc, sizeof kc, "%s/kubeconfig", dir);
  snprintf(dsn_path, sizeof dsn_path, "%s/pg-dsn", dir);
  kubeconfig_for_nobody(kc);
  char *dsn = dsn_for_nobody();
  char *with_newline = malloc(strlen(dsn) + 2);
  sprintf(with_newline, "%s\n", dsn); /* as `kubectl create secret --from-file` often has it */
  write_file(dsn_path, with_newline, 0400);
  free(with_newline);
  /* The password of the stack's DSN: postgresql://user:PASSWORD@host... */
  const char *at = strchr(dsn, '@'), *colon = strchr(dsn + strlen("postgresql://"), ':');
  cr_assert(at && colon && colon < at, "the stack's DSN carries no password to look for");
  char password[128];
  snprintf(password, sizeof password, "%.*s", (int)(at - colon - 1), colon + 1);
  cr_assert_gt(strlen(password), 8);

  snprintf(flag_kc, sizeof flag_kc, "--kubeconfig=%s", kc);
  snprintf(flag_dsn, sizeof flag_dsn, "--pg-dsn-file=%s", dsn_path);
  /* Only the file: the environment must not hand it the DSN (the child inherits ours). */
  char *saved = strdup(tn_test_env("TENANCY_PG_DSN"));
  unsetenv("TENANCY_PG_DSN");
  tn_test_operator_start_as(&op, NOBODY, NOBODY, (const char *const[]){flag_kc, flag_dsn, NULL});
  setenv("TENANCY_PG_DSN", saved, 1);
  free(saved);
  if (!tn_test_operator_wait_ready(&op, 90)) {
    tn_test_operator_dump_log(&op);
    cr_assert_fail("the operator (as nobody, --pg-dsn-file) never became ready");
  }

  char path[128];
  /* It runs as nobody... */
  snprintf(path, sizeof path, "/proc/%d/status", (int)op.pid);
  char *status = slurp(path, NULL);
  cr_assert_not_null(status);
  cr_assert(strstr(status, "\nUid:\t65534\t65534\t65534\t65534\n"), "%s", status);
  free(status);
  /* ...yet its /proc files are root's: the kernel's mark of a non-dumpable process. */
  snprintf(path, sizeof path, "/proc/%d/environ", (int)op.pid);
  cr_assert_eq(owner_of(path), 0, "/proc/<operator>/environ is owned by %d: the operator is dumpable",
               (int)owner_of(path));
  /* The attacker: another process of the same user reads neither its environment nor its memory. */
  cr_assert_not(nobody_can_read(path), "a process running as nobody read the operator's environ");
  snprintf(path, sizeof path, "/proc/%d/mem", (int)op.pid);
  cr_assert_not(nobody_can_read(path), "a process running as nobody opened the operator's mem");

  /* The control: a dumpable process of the same user is readable, so the probe itself works. */
  pid_t ctl = fork();
  cr_assert_neq(ctl, -1);
  if (ctl == 0) {
    /* exec after the change of identity: setuid alone leaves a process non-dumpable until its
     * next execve, which is exactly what the operator undoes with prctl. */
    if (setgid(NOBODY) || setuid(NOBODY))
      _exit(2);
    execl("/bin/sleep", "sleep", "60", (char *)NULL);
    _exit(127);
  }
  usleep(300 * 1000);
  snprintf(path, sizeof path, "/proc/%d/environ", (int)ctl);
  uid_t ctl_owner = owner_of(path);
  bool ctl_readable = nobody_can_read(path);
  kill(ctl, SIGKILL);
  waitpid(ctl, NULL, 0);
  cr_assert_eq(ctl_owner, NOBODY, "the control's environ is owned by %d", (int)ctl_owner);
  cr_assert(ctl_readable, "the probe cannot even read a dumpable process of its own user");

  /* No core file, whatever happens: soft and hard limit 0. */
  snprintf(path, sizeof path, "/proc/%d/limits", (int)op.pid);
  char *limits = slurp(path, NULL);
  cr_assert_not_null(limits);
  const char *core = strstr(limits, "Max core file size");
  cr_assert_not_null(core);
  unsigned long soft = 1, hard = 1;
  cr_assert_eq(sscanf(core + strlen("Max core file size"), "%lu %lu", &soft, &hard), 2, "%.80s", core);
  cr_assert(soft == 0 && hard == 0, "core limits %lu %lu", soft, hard);
  free(limits);

  /* The command line names the file, never the DSN or its password. */
  size_t n = 0;
  snprintf(path, sizeof path, "/proc/%d/cmdline", (int)op.pid);
  char *cmdline = slurp(path, &n);
  cr_assert_not_null(cmdline);
  for (size_t i = 0; i < n; i++)
    if (cmdline[i] == '\0')
      cmdline[i] = ' ';
  cr_assert(strstr(cmdline, "--pg-dsn-file="), "%s", cmdline);
  cr_assert_null(strstr(cmdline, password), "the password is in the command line");
  cr_assert_null(strstr(cmdline, "postgresql://"), "a DSN is in the command line");
  free(cmdline);

  /* And the DSN from the file works: the audit trail is on (it would warn "no --pg-dsn"). */
  char *log = slurp(op.log_path, NULL);
  cr_assert_not_null(log);
  cr_assert(strstr(log, "audit trail: table tenancy.audit_events"), "the operator did not use the DSN file");
  cr_assert_null(strstr(log, password), "the password is in the operator's log");
  free(log);
  free(dsn);
}

/* A mistyped secret-bearing flag stops the program without printing its value. */
Test(hygiene, a_refused_flag_never_prints_its_value) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "'%s' --pg-dns='postgresql://app:Hunter2Secret@db/app' 2>&1",
                      tn_test_env("TENANCY_OPERATOR_BIN"));
  cr_assert_eq(rc, 2, "exit %d: %s", rc, out);
  cr_assert(strstr(out, "unknown flag --pg-dns"), "%s", out);
  cr_assert_null(strstr(out, "Hunter2Secret"), "%s", out);
  free(out);
  rc = tn_test_sh(&out, "'%s' --pg-dsn-file=/nonexistent/dsn 2>&1", tn_test_env("TENANCY_OPERATOR_BIN"));
  cr_assert_eq(rc, 2, "exit %d: %s", rc, out);
  cr_assert(strstr(out, "--pg-dsn-file: cannot open /nonexistent/dsn: No such file or directory"), "%s", out);
  free(out);
}
