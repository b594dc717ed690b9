/* test_identity.c - the operator's own identity and who asked for a change (docs/security.md).
 *
 * 1. With exactly the RBAC and the admission policy of manifests/deploy/, the operator's
 *    ServiceAccount (impersonated: kubectl --as) cannot write outside what it manages: no
 *    RoleBinding to anything but the tenant roles, no Secret in kube-system, default or an
 *    unmanaged namespace, no change to a namespace it does not manage, no other webhook
 *    configuration. RBAC alone would allow most of it (auth can-i says yes): the policy is what
 *    refuses.
 * 2. Who asked for a change is recorded by the API server on the Tenant (annotations written by
 *    the MutatingAdmissionPolicy of manifests/deploy/45-actor-policy.yaml): with two operator
 *    replicas (one serves the webhook, the other reconciles) and across a restart between the
 *    edit and the reconcile, the audit trail names the user; a forged AdmissionReview POSTed to
 *    the webhook port of either replica changes no record; nobody can set the annotations by hand. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tn_operator.h"
#include "tn_test.h"

#define SA "system:serviceaccount:tenancy-system:tenancy-operator"
#define AS_SA "--as=" SA

static void install(void) {
  tn_test_install_api();
  const char *root = tn_test_env("TENANCY_ROOT");
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "kubectl apply -f '%s/manifests/deploy/00-namespace.yaml' -f '%s/manifests/deploy/10-rbac.yaml' "
      "-f '%s/manifests/deploy/15-operator-policy.yaml' >/dev/null",
      root, root, root);
  cr_assert_eq(rc, 0, "installing the operator's RBAC and policy: %s", out);
  free(out);
}

TestSuite(identity, .init = install, .timeout = 300);

/* Runs CMD (a kubectl command as the operator) expecting a refusal; returns its output. */
static char *refused(const char *what, const char *cmd) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "%s", cmd);
  cr_expect_neq(rc, 0, "the operator's ServiceAccount could %s: %s", what, out);
  return out;
}

/* Expects CMD refused by the policy tenancy-operator-scope (its message in the output). */
static void refused_by_policy(const char *what, const char *cmd) {
  char *out = refused(what, cmd);
  cr_expect(strstr(out, "tenancy-operator-scope") && strstr(out, "tenancy-operator may"),
            "%s: refused, but not by the admission policy: %s", what, out);
  free(out);
}

static void allowed(const char *what, const char *cmd) {
  char *out = NULL;
  int rc = tn_test_sh(&out, "%s", cmd);
  cr_expect_eq(rc, 0, "the operator's ServiceAccount must be able to %s: %s", what, out);
  free(out);
}

static void can_i_yes(const char *args) {
  char *out = NULL;
  tn_test_sh(&out, "kubectl auth can-i %s " AS_SA " 2>/dev/null", args);
  cr_expect_str_eq(out, "yes\n", "RBAC alone allows `%s` (what this test shows the policy refuses)", args);
  free(out);
}

Test(identity, the_operator_cannot_write_outside_what_it_manages) {
  char managed[64], unmanaged[64], cmd[2048];
  tn_test_unique_name(managed, sizeof managed, "tn-idm");
  tn_test_unique_name(unmanaged, sizeof unmanaged, "tn-idu");
  char *out = NULL;
  int rc = tn_test_sh(&out,
                      "kubectl create namespace %s >/dev/null && kubectl label namespace %s "
                      "app.kubernetes.io/managed-by=tenancy-operator >/dev/null && "
                      "kubectl create namespace %s >/dev/null",
                      managed, managed, unmanaged);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* The policy is live once it refuses (its informer needs a moment after an apply). */
  rc = tn_test_sh_until(
      30, &out,
      "kubectl -n default create secret generic tn-probe --from-literal=a=b --dry-run=server " AS_SA
      " 2>&1 | grep -q tenancy-operator-scope");
  cr_assert_eq(rc, 0, "the admission policy never took effect: %s", out);
  free(out);

  /* What RBAC alone grants (cluster-wide, because tenant namespaces are made at run time). */
  can_i_yes("create secrets -n kube-system");
  can_i_yes("create rolebindings -n kube-system");
  can_i_yes("delete namespaces");
  can_i_yes("create validatingwebhookconfigurations");

  /* Bindings: never cluster-admin, never outside a managed namespace. */
  snprintf(
      cmd, sizeof cmd,
      "kubectl -n kube-system create rolebinding tn-evil --clusterrole=cluster-admin --user=mallory " AS_SA);
  free(refused("bind cluster-admin in kube-system", cmd));
  snprintf(cmd, sizeof cmd,
           "kubectl -n %s create rolebinding tn-evil --clusterrole=cluster-admin --user=mallory " AS_SA,
           managed);
  free(refused("bind cluster-admin in a tenant namespace", cmd));
  snprintf(cmd, sizeof cmd,
           "kubectl -n kube-system create rolebinding tn-evil --clusterrole=tenancy-tenant-admin "
           "--user=mallory " AS_SA);
  refused_by_policy("bind a tenant role in kube-system", cmd);
  snprintf(
      cmd, sizeof cmd,
      "kubectl -n %s create rolebinding tn-evil --clusterrole=tenancy-tenant-admin --user=mallory " AS_SA,
      unmanaged);
  refused_by_policy("bind a tenant role in an unmanaged namespace", cmd);
  /* a Role of the namespace (it could be anything a namespace admin wrote) is not a tenant role */
  snprintf(cmd, sizeof cmd, "kubectl -n %s create rolebinding tn-evil --role=anything --user=mallory " AS_SA,
           managed);
  free(refused("bind a namespace Role", cmd));

  /* Secrets: only in managed namespaces and its own. */
  const char *secret_in[] = {"kube-system", "default", unmanaged};
  for (size_t i = 0; i < 3; i++) {
    snprintf(cmd, sizeof cmd, "kubectl -n %s create secret generic tn-evil --from-literal=a=b " AS_SA,
             secret_in[i]);
    char what[128];
    snprintf(what, sizeof what, "create a Secret in %s", secret_in[i]);
    refused_by_policy(what, cmd);
  }

  /* Namespaces: not an unmanaged one (delete, adopt by label, or create one without the label). */
  snprintf(cmd, sizeof cmd, "kubectl delete namespace %s --wait=false " AS_SA, unmanaged);
  refused_by_policy("delete an unmanaged namespace", cmd);
  snprintf(cmd, sizeof cmd, "kubectl label namespace %s app.kubernetes.io/managed-by=tenancy-operator " AS_SA,
           unmanaged);
  refused_by_policy("adopt an unmanaged namespace by labelling it", cmd);
  snprintf(cmd, sizeof cmd, "kubectl create namespace %s-x " AS_SA, unmanaged);
  refused_by_policy("create a namespace it would not manage", cmd);
  rc = tn_test_sh(&out, "kubectl get namespace %s -o jsonpath='{.status.phase}'", unmanaged);
  cr_expect_str_eq(out, "Active", "the unmanaged namespace is gone or going");
  free(out);

  /* Webhook configurations: only its own, only for tenancy.dev objects. */
#define VWC                                                                                                  \
  "printf '%%s' '{\"apiVersion\":\"admissionregistration.k8s.io/v1\",\"kind\":"                              \
  "\"ValidatingWebhookConfiguration\",\"metadata\":{\"name\":\"%s\"},\"webhooks\":[{\"name\":"               \
  "\"secrets.evil.example\",\"admissionReviewVersions\":[\"v1\"],\"sideEffects\":\"None\","                  \
  "\"failurePolicy\":\"Ignore\",\"rules\":[{\"apiGroups\":[\"%s\"],\"apiVersions\":[\"v1\"],"                \
  "\"operations\":[\"CREATE\",\"UPDATE\"],\"resources\":[\"%s\"]}],\"clientConfig\":{\"url\":"               \
  "\"https://evil.example/hook\"}}]}' | kubectl create %s -f - " AS_SA
  snprintf(cmd, sizeof cmd, VWC, "tn-evil", "", "secrets", "");
  refused_by_policy("register a webhook configuration of another name", cmd);
  snprintf(cmd, sizeof cmd, VWC, "tn-evil", "tenancy.dev", "tenants", "");
  refused_by_policy("register a webhook configuration of another name, even for tenants", cmd);
  snprintf(cmd, sizeof cmd, VWC, "tenancy-operator", "", "secrets", "--dry-run=server");
  refused_by_policy("make its own webhook configuration see Secrets", cmd);
  /* cluster-scoped objects of other kinds */
  snprintf(cmd, sizeof cmd,
           "kubectl create clusterrolebinding tn-evil --clusterrole=tenancy-tenant-viewer "
           "--user=mallory " AS_SA);
  free(refused("create a ClusterRoleBinding", cmd));

  /* What it needs still works (server dry runs go through every admission step). */
  snprintf(cmd, sizeof cmd,
           "kubectl -n %s create secret generic tn-ok --from-literal=a=b --dry-run=server " AS_SA, managed);
  allowed("create a Secret in a managed namespace", cmd);
  snprintf(
      cmd, sizeof cmd,
      "kubectl -n tenancy-system create secret generic tn-ok --from-literal=a=b --dry-run=server " AS_SA);
  allowed("create a Secret in its own namespace", cmd);
  snprintf(cmd, sizeof cmd,
           "kubectl -n %s create rolebinding tn-ok --clusterrole=tenancy-tenant-developer --group=devs "
           "--dry-run=server " AS_SA,
           managed);
  allowed("bind a tenant role in a managed namespace", cmd);
  snprintf(cmd, sizeof cmd,
           "printf '%%s' '{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"%s-y\","
           "\"labels\":{\"app.kubernetes.io/managed-by\":\"tenancy-operator\"}}}' | "
           "kubectl create --dry-run=server -f - " AS_SA,
           managed);
  allowed("create a namespace it manages", cmd);
  snprintf(cmd, sizeof cmd, "kubectl delete namespace %s --dry-run=server " AS_SA, managed);
  allowed("delete a namespace it manages", cmd);

  /* Nothing of the attempts exists. */
  rc = tn_test_sh(&out,
                  "kubectl -n kube-system get rolebinding tn-evil --ignore-not-found -o name; "
                  "kubectl -n %s get rolebinding tn-evil --ignore-not-found -o name; "
                  "kubectl -n kube-system get secret tn-evil --ignore-not-found -o name; "
                  "kubectl -n default get secret tn-evil --ignore-not-found -o name; "
                  "kubectl get validatingwebhookconfiguration tn-evil --ignore-not-found -o name; "
                  "kubectl get clusterrolebinding tn-evil --ignore-not-found -o name",
                  managed);
  cr_expect_str_eq(out, "", "objects the operator's identity must not be able to make exist");
  free(out);
  tn_test_sh(NULL,
             "kubectl -n kube-system delete rolebinding,secret tn-evil --ignore-not-found; "
             "kubectl -n default delete secret tn-evil --ignore-not-found; "
             "kubectl delete validatingwebhookconfiguration tn-evil --ignore-not-found; "
             "kubectl delete clusterrolebinding tn-evil --ignore-not-found; "
             "kubectl delete namespace %s %s --wait=false",
             managed, unmanaged);
}

/* ---- who asked -------------------------------------------------------------------------------- */

static const char *tenantctl(void) { return tn_test_env("TENANCY_TENANTCTL_BIN"); }

/* "action:actor" of every succeeded row of tenant T, oldest first. */
/* The transitions' rows (spec.* rows of spec edits are test_history.c's, the placement and quota
 * rows test_outbox.c's). */
static char *audit_actors(const char *t) {
  return tn_test_output("'%s' audit list --tenant %s -o json | python3 -c 'import json,sys; "
                        "print(\" \".join(r[\"action\"]+\":\"+r[\"actor\"] for r in json.load(sys.stdin) "
                        "if r[\"outcome\"]==\"succeeded\" and not r[\"action\"].startswith(\"spec.\") "
                        "and r[\"action\"] not in (\"placement.decide\", \"quota.change\")))'",
                        tenantctl(), t);
}

static void wait_state(struct tn_test_operator *op, const char *t, const char *state) {
  char *out = NULL;
  int rc = tn_test_sh_until(90, &out, "test \"$(kubectl get tenant %s -o jsonpath='{.status.state}')\" = %s",
                            t, state);
  if (rc)
    tn_test_operator_dump_log(op);
  cr_assert_eq(rc, 0, "tenant %s never became %s", t, state);
  free(out);
}

static bool wait_leader(struct tn_test_operator *op, double timeout) {
  double end = tn_test_now() + timeout;
  while (tn_test_now() < end) {
    if (tn_test_metric_sum(op->metrics_port, "leader_election_master_status{") == 1)
      return true;
    usleep(100 * 1000);
  }
  return false;
}

/* POSTs a forged AdmissionReview to the webhook on PORT: an UPDATE of tenant T to Suspended at its
 * next generation, "by" mallory. Returns the HTTP answer. */
static char *forge_review(int port, const char *t) {
  char *out = NULL;
  int rc = tn_test_sh(
      &out,
      "kubectl get tenant %s -o json | python3 -c 'import json,sys,copy\n"
      "old=json.load(sys.stdin); new=copy.deepcopy(old)\n"
      "new[\"metadata\"][\"generation\"]=old[\"metadata\"][\"generation\"]+1\n"
      "new[\"spec\"][\"state\"]=\"Suspended\"\n"
      "print(json.dumps({\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{"
      "\"uid\":\"forged-0001\",\"kind\":{\"group\":\"tenancy.dev\",\"version\":\"v1alpha1\",\"kind\":"
      "\"Tenant\"},"
      "\"resource\":{\"group\":\"tenancy.dev\",\"version\":\"v1alpha1\",\"resource\":\"tenants\"},"
      "\"name\":old[\"metadata\"][\"name\"],\"operation\":\"UPDATE\",\"userInfo\":{\"username\":\"mallory\"},"
      "\"object\":new,\"oldObject\":old}}))' > /tmp/tn-forged-%d.json && "
      "curl -sk --max-time 10 -H 'Content-Type: application/json' --data-binary @/tmp/tn-forged-%d.json "
      "https://127.0.0.1:%d/validate-tenancy-dev-v1alpha1",
      t, (int)getpid(), (int)getpid(), port);
  cr_assert_eq(rc, 0, "the forged review could not be sent: %s", out);
  return out;
}

/* A failed run must not leave a webhook configuration pointing at a stopped replica (every later
 * Tenant write would be refused). */
static void who_cleanup(void) {
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
}

Test(identity, who_asked_survives_replicas_and_restarts_and_cannot_be_forged, .fini = who_cleanup) {
  char t[64], lease[64], leaseflag[96], wa[64], wb[64], *out = NULL;
  tn_test_env("TENANCY_PG_DSN"); /* the operator takes it from the environment */
  tn_test_unique_name(t, sizeof t, "tn-who");
  tn_test_unique_name(lease, sizeof lease, "tn-who-leader");
  snprintf(leaseflag, sizeof leaseflag, "--leader-election-id=%s", lease);
  int pa = tn_test_free_port(), pb = tn_test_free_port();
  while (pb == pa)
    pb = tn_test_free_port();
  snprintf(wa, sizeof wa, "--webhook-bind-address=127.0.0.1:%d", pa);
  snprintf(wb, sizeof wb, "--webhook-bind-address=127.0.0.1:%d", pb);
  /* alice and bob may write Tenants, nothing else */
  int rc = tn_test_sh(
      &out, "kubectl create clusterrole tn-who-tenant-editor --verb=get,list,watch,create,update,patch "
            "--resource=tenants.tenancy.dev --dry-run=client -o yaml | kubectl apply -f - >/dev/null && "
            "kubectl create clusterrolebinding tn-who-tenant-editor --clusterrole=tn-who-tenant-editor "
            "--user=alice --user=bob --dry-run=client -o yaml | kubectl apply -f - >/dev/null");
  cr_assert_eq(rc, 0, "%s", out);
  free(out);

  /* Two replicas: A leads and reconciles; B registers the webhook last, so B hears every review. */
  struct tn_test_operator a, b;
  tn_test_operator_start(&a, (const char *const[]){"--leader-elect", "--leader-election-namespace=default",
                                                   leaseflag, wa, NULL});
  cr_assert(wait_leader(&a, 30), "replica A did not become leader");
  tn_test_operator_start(&b, (const char *const[]){"--leader-elect", "--leader-election-namespace=default",
                                                   leaseflag, wb, NULL});
  if (!tn_test_operator_wait_ready(&b, 60)) {
    tn_test_operator_dump_log(&b);
    cr_assert_fail("replica B never became ready");
  }
  char *url = tn_test_output("kubectl get validatingwebhookconfiguration tenancy-operator "
                             "-o jsonpath='{.webhooks[0].clientConfig.url}'");
  char want_url[128];
  snprintf(want_url, sizeof want_url, "https://127.0.0.1:%d/validate-tenancy-dev-v1alpha1", pb);
  cr_assert_str_eq(url, want_url, "the webhook must point at replica B");
  free(url);

  /* alice creates an Active tenant: B's webhook reviews it, A reconciles it. */
  rc = tn_test_sh(&out,
                  "printf '%%s' '{\"apiVersion\":\"tenancy.dev/v1alpha1\",\"kind\":\"Tenant\",\"metadata\":{"
                  "\"name\":\"%s\"},\"spec\":{\"state\":\"Active\",\"plan\":\"standard\",\"environments\":"
                  "[\"prod\"]}}' | kubectl apply -f - --as=alice",
                  t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_state(&a, t, "Active");
  char *by = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.metadata.annotations.tenancy\\.dev/last-requested-by}'", t);
  cr_expect_str_eq(by, "alice", "the API server did not record the requester on the tenant");
  free(by);

  /* mallory, who can reach the webhook ports, forges a review of the next generation on both. */
  int ports[] = {pa, pb};
  for (int i = 0; i < 2; i++) {
    char *answer = forge_review(ports[i], t);
    cr_expect(strstr(answer, "\"forged-0001\""), "the webhook did not answer the forged review: %s", answer);
    free(answer);
  }

  /* Nobody sets the record by hand (before alice suspends it: a Suspended tenant's spec cannot
   * change): not alone ... */
  rc = tn_test_sh(&out,
                  "kubectl annotate tenant %s --overwrite tenancy.dev/last-requested-by=mallory --as=bob", t);
  cr_expect_neq(rc, 0, "bob rewrote who asked: %s", out);
  cr_expect(strstr(out, "tenancy-operator-actor"), "refused, but not by the actor policy: %s", out);
  free(out);
  /* ... nor along with a spec change (the API server writes the real requester over it). */
  rc = tn_test_sh(&out,
                  "kubectl patch tenant %s --type=merge --as=bob -p '{\"metadata\":{\"annotations\":{"
                  "\"tenancy.dev/last-requested-by\":\"mallory\"}},"
                  "\"spec\":{\"displayName\":\"renamed by bob\"}}'",
                  t);
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
  by = tn_test_output(
      "kubectl get tenant %s -o jsonpath='{.metadata.annotations.tenancy\\.dev/last-requested-by}'", t);
  cr_expect_str_eq(by, "bob", "a requester-supplied annotation was kept");
  free(by);

  /* alice suspends it: that generation is hers, whatever the forged review said. */
  rc = tn_test_sh(
      &out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Suspended\"}}' --as=alice", t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  wait_state(&a, t, "Suspended");

  /* A restart between the edit and the reconcile: both replicas stop; alice resumes the tenant
   * while no operator runs (no webhook either); a fresh process reconciles it. */
  cr_assert_eq(tn_test_operator_stop(&b, SIGTERM, 40), 0);
  cr_assert_eq(tn_test_operator_stop(&a, SIGTERM, 40), 0);
  tn_test_sh(NULL, "kubectl delete validatingwebhookconfiguration tenancy-operator --ignore-not-found");
  rc = tn_test_sh(
      &out, "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Active\"}}' --as=alice", t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  struct tn_test_operator c;
  tn_test_operator_start(&c, (const char *const[]){"--leader-elect=false", NULL});
  wait_state(&c, t, "Active");

  char *rows = audit_actors(t);
  cr_expect_str_eq(rows, "create:alice activate:alice suspend:alice resume:alice",
                   "the audit trail must name alice for every transition she asked for");
  cr_expect(!strstr(rows, "mallory"), "a forged review reached the audit trail: %s", rows);
  free(rows);
  rc = tn_test_sh(&out, "'%s' audit verify", tenantctl());
  cr_expect_eq(rc, 0, "%s", out);
  free(out);

  /* Archived (by the admin), it may go; the operator removes its finalizer. */
  rc = tn_test_sh(&out,
                  "kubectl patch tenant %s --type=merge -p '{\"spec\":{\"state\":\"Archived\"}}' && "
                  "kubectl wait --for=jsonpath='{.status.state}'=Archived tenant/%s --timeout=60s && "
                  "kubectl delete tenant %s --wait --timeout=120s",
                  t, t, t);
  cr_expect_eq(rc, 0, "%s", out);
  free(out);
  tn_test_operator_stop(&c, SIGTERM, 40);
  tn_test_sh(
      NULL,
      "kubectl delete tenant %s --wait=false; kubectl delete clusterrolebinding,clusterrole "
      "tn-who-tenant-editor --ignore-not-found; kubectl -n default delete lease %s --ignore-not-found; "
      "rm -f /tmp/tn-forged-%d.json",
      t, lease, (int)getpid());
}
