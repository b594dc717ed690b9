/* test_store.c - the thread-safe object cache: keys, reads, secondary indexes kept right on
 * update and delete, the change observer, replace semantics, a randomized model check, and
 * concurrent readers and writers. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/store.h"

/* {"metadata":{"name":N,"namespace":NS,"resourceVersion":RV,"labels":{"tenant":T},"ownerReferences":[..]}} */
static json_t *mk(const char *ns, const char *name, const char *rv, const char *tenant) {
  json_t *meta = json_pack("{ss ss}", "name", name, "resourceVersion", rv);
  if (ns)
    json_object_set_new(meta, "namespace", json_string(ns));
  if (tenant)
    json_object_set_new(meta, "labels", json_pack("{ss}", "tenant", tenant));
  return json_pack("{so}", "metadata", meta);
}

static void add_owner(json_t *obj, const char *uid) {
  json_t *meta = json_object_get(obj, "metadata");
  json_t *refs = json_object_get(meta, "ownerReferences");
  if (!refs) {
    refs = json_array();
    json_object_set_new(meta, "ownerReferences", refs);
  }
  json_array_append_new(refs, json_pack("{ss}", "uid", uid));
}

static int by_tenant(const json_t *obj, void *ud, struct tn_index_values *out) {
  const char *t = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), "tenant"));
  return t ? tn_index_values_add(out, t) : 0;
}

static int by_owner(const json_t *obj, void *ud, struct tn_index_values *out) {
  size_t i;
  json_t *r;
  json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i, r) {
    int rc = tn_index_values_add(out, json_string_value(json_object_get(r, "uid")));
    if (rc)
      return rc;
  }
  return 0;
}

static void upsert(struct tn_store *s, json_t *obj) {
  struct tn_error err;
  cr_assert_eq(tn_store_upsert(s, obj, &err), 0, "%s", err.message);
  json_decref(obj);
}

/* The sorted names of an array of objects, joined by ','. */
static char *names(json_t *arr) {
  size_t n = json_array_size(arr);
  const char **v = calloc(n + 1, sizeof *v);
  for (size_t i = 0; i < n; i++) {
    json_t *x = json_array_get(arr, i);
    v[i] = json_is_string(x) ? json_string_value(x)
                             : json_string_value(json_object_get(json_object_get(x, "metadata"), "name"));
  }
  for (size_t i = 1; i < n; i++) /* insertion sort: small arrays */
    for (size_t j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
      const char *t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  size_t len = 1;
  for (size_t i = 0; i < n; i++)
    len += strlen(v[i]) + 1;
  char *out = calloc(1, len);
  for (size_t i = 0; i < n; i++) {
    if (i)
      strcat(out, ",");
    strcat(out, v[i]);
  }
  free(v);
  json_decref(arr);
  return out;
}

static void assert_names(json_t *arr, const char *want) {
  cr_assert_not_null(arr);
  char *got = names(arr);
  cr_assert_str_eq(got, want);
  free(got);
}

static void assert_index(struct tn_store *s, const char *index, const char *value, const char *want) {
  struct tn_error err;
  json_t *arr = tn_store_by_index(s, index, value, &err);
  cr_assert_not_null(arr, "%s", err.message);
  char *got = names(arr);
  cr_assert_str_eq(got, want, "index %s=%s: got [%s], want [%s]", index, value, got, want);
  free(got);
}

Test(store, keys_reads_updates_and_deletes) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  upsert(s, mk("ns1", "a", "1", NULL));
  upsert(s, mk("ns2", "a", "2", NULL));
  upsert(s, mk(NULL, "cluster-wide", "3", NULL));
  upsert(s, mk("", "empty-ns", "4", NULL));
  cr_assert_eq(tn_store_len(s), 4);
  assert_names(tn_store_keys(s), "cluster-wide,empty-ns,ns1/a,ns2/a");

  json_t *got = tn_store_get(s, "ns2/a");
  cr_assert_not_null(got);
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")),
                   "2");
  /* The result is the caller's own tree. */
  json_object_set_new(json_object_get(got, "metadata"), "resourceVersion", json_string("changed"));
  json_decref(got);
  got = tn_store_get(s, "ns2/a");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")),
                   "2");
  json_decref(got);
  cr_assert_null(tn_store_get(s, "a"));
  cr_assert_null(tn_store_get(s, "ns3/a"));

  upsert(s, mk("ns2", "a", "5", NULL));
  cr_assert_eq(tn_store_len(s), 4, "an update does not add");
  got = tn_store_get(s, "ns2/a");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")),
                   "5");
  json_decref(got);

  cr_assert_eq(tn_store_delete(s, "ns2/a", NULL, &err), 0);
  cr_assert_eq(tn_store_delete(s, "ns2/a", NULL, &err), TN_ENOTFOUND);
  cr_assert(strstr(err.message, "ns2/a") != NULL);
  cr_assert_null(tn_store_get(s, "ns2/a"));
  cr_assert_eq(tn_store_len(s), 3);
  assert_names(tn_store_list(s), "a,cluster-wide,empty-ns");

  json_t *nameless = json_pack("{s{ss}}", "metadata", "namespace", "x");
  cr_assert_eq(tn_store_upsert(s, nameless, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "metadata.name") != NULL, "%s", err.message);
  json_decref(nameless);
  tn_store_free(s);
  tn_store_free(NULL);
}

Test(store, key_of) {
  json_t *o = mk("ns", "n", "1", NULL);
  char *k = tn_store_key_of(o);
  cr_assert_str_eq(k, "ns/n");
  free(k);
  json_decref(o);
  o = mk(NULL, "n", "1", NULL);
  k = tn_store_key_of(o);
  cr_assert_str_eq(k, "n");
  free(k);
  json_decref(o);
  o = json_pack("{s{}}", "metadata");
  cr_assert_null(tn_store_key_of(o));
  json_decref(o);
}

Test(store, indexes_follow_updates_and_deletes) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  cr_assert_eq(tn_store_add_index(s, "owner", by_owner, NULL, &err), 0);
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), TN_EEXISTS);

  json_t *a = mk("ns", "a", "1", "acme");
  add_owner(a, "u1");
  add_owner(a, "u2");
  add_owner(a, "u2"); /* duplicate values count once */
  upsert(s, a);
  json_t *b = mk("ns", "b", "1", "acme");
  add_owner(b, "u2");
  upsert(s, b);
  upsert(s, mk("ns", "c", "1", "globex"));
  upsert(s, mk("ns", "d", "1", NULL)); /* no value: in no entry */

  assert_index(s, "tenant", "acme", "a,b");
  assert_index(s, "tenant", "globex", "c");
  assert_index(s, "tenant", "nobody", "");
  assert_index(s, "owner", "u1", "a");
  assert_index(s, "owner", "u2", "a,b");
  assert_names(tn_store_index_values(s, "tenant"), "acme,globex");
  cr_assert_null(tn_store_by_index(s, "missing", "x", &err));
  cr_assert_eq(err.code, TN_ENOTFOUND);
  cr_assert_null(tn_store_index_values(s, "missing"));

  /* a moves from acme to globex and loses owner u1: the old values no longer find it. */
  a = mk("ns", "a", "2", "globex");
  add_owner(a, "u2");
  upsert(s, a);
  assert_index(s, "tenant", "acme", "b");
  assert_index(s, "tenant", "globex", "a,c");
  assert_index(s, "owner", "u1", "");
  assert_index(s, "owner", "u2", "a,b");
  assert_names(tn_store_index_values(s, "owner"), "u2");

  /* An index entry returns the current object, not the one that was indexed first. */
  json_t *got = tn_store_by_index(s, "tenant", "globex", &err);
  size_t i;
  json_t *x;
  json_array_foreach(got, i, x) {
    if (strcmp(json_string_value(json_object_get(json_object_get(x, "metadata"), "name")), "a") == 0)
      cr_assert_str_eq(json_string_value(json_object_get(json_object_get(x, "metadata"), "resourceVersion")),
                       "2");
  }
  json_decref(got);

  cr_assert_eq(tn_store_delete(s, "ns/b", NULL, &err), 0);
  assert_index(s, "tenant", "acme", "");
  assert_index(s, "owner", "u2", "a");
  assert_names(tn_store_index_values(s, "tenant"), "globex");
  cr_assert_eq(tn_store_delete(s, "ns/a", NULL, &err), 0);
  cr_assert_eq(tn_store_delete(s, "ns/c", NULL, &err), 0);
  assert_names(tn_store_index_values(s, "tenant"), "");
  assert_names(tn_store_index_values(s, "owner"), "");
  tn_store_free(s);
}

Test(store, an_index_added_later_covers_existing_objects) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  upsert(s, mk("ns", "a", "1", "acme"));
  upsert(s, mk("ns", "b", "1", "acme"));
  upsert(s, mk("ns", "c", "1", "globex"));
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  assert_index(s, "tenant", "acme", "a,b");
  assert_index(s, "tenant", "globex", "c");
  tn_store_free(s);
}

/* Objects cached before an index existed carry no packed values for it: an update or a delete
 * must still take them out of the index (found by decoding them). */
Test(store, objects_cached_before_an_index_leave_it_on_update_and_delete) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  upsert(s, mk("ns", "a", "1", "acme"));
  upsert(s, mk("ns", "b", "1", "acme"));
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  upsert(s, mk("ns", "a", "2", "globex"));
  assert_index(s, "tenant", "acme", "b");
  assert_index(s, "tenant", "globex", "a");
  cr_assert_eq(tn_store_delete(s, "ns/b", NULL, &err), 0);
  assert_index(s, "tenant", "acme", "");
  cr_assert_eq(tn_store_add_index(s, "owner", by_owner, NULL, &err), 0);
  upsert(s, mk("ns", "a", "3", "initech")); /* packed with one index, now two */
  assert_index(s, "tenant", "globex", "");
  assert_index(s, "tenant", "initech", "a");
  assert_names(tn_store_index_values(s, "tenant"), "initech");
  tn_store_free(s);
}

static _Atomic int index_calls;
static int counting_by_tenant(const json_t *obj, void *ud, struct tn_index_values *out) {
  index_calls++;
  return by_tenant(obj, ud, out);
}

/* An update indexes the new object once and a delete indexes nothing: the old values are kept
 * with the object (before, every update and delete decoded the old object to find them). */
Test(store, updates_and_deletes_do_not_recompute_the_old_values) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", counting_by_tenant, NULL, &err), 0);
  /* Long enough to be compressed, with many values: the packed values follow the deflated text. */
  json_t *a = mk("ns", "a", "1", "acme");
  json_object_set_new(a, "spec", json_pack("{s:s}", "padding", "the same text, again and again, and again"));
  upsert(s, a);
  index_calls = 0;
  upsert(s, mk("ns", "a", "2", "globex"));
  cr_assert_eq(index_calls, 1);
  assert_index(s, "tenant", "acme", "");
  assert_index(s, "tenant", "globex", "a");
  cr_assert_eq(tn_store_delete(s, "ns/a", NULL, &err), 0);
  cr_assert_eq(index_calls, 1);
  assert_names(tn_store_index_values(s, "tenant"), "");
  tn_store_free(s);
}

static int refuse_bad(const json_t *obj, void *ud, struct tn_index_values *out) {
  const char *t = json_string_value(
      json_object_get(json_object_get(json_object_get(obj, "metadata"), "labels"), "tenant"));
  if (t && strcmp(t, "bad") == 0)
    return TN_EINVALID;
  return t ? tn_index_values_add(out, t) : 0;
}

Test(store, an_index_function_error_leaves_the_store_unchanged) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", refuse_bad, NULL, &err), 0);
  upsert(s, mk("ns", "a", "1", "acme"));
  json_t *bad = mk("ns", "a", "2", "bad");
  cr_assert_eq(tn_store_upsert(s, bad, &err), TN_EINVALID);
  cr_assert(strstr(err.message, "index tenant") != NULL, "%s", err.message);
  json_decref(bad);
  json_t *got = tn_store_get(s, "ns/a");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(got, "metadata"), "resourceVersion")),
                   "1");
  json_decref(got);
  assert_index(s, "tenant", "acme", "a");
  tn_store_free(s);
}

Test(store, a_value_shared_by_many_objects) {
  /* Past 8 objects a value's set becomes a hash set; deleting must stay exact both ways. */
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  char name[32];
  for (int i = 0; i < 3000; i++) {
    snprintf(name, sizeof name, "o%04d", i);
    upsert(s, mk("ns", name, "1", i % 3 == 0 ? "big" : "other"));
  }
  json_t *arr = tn_store_by_index(s, "tenant", "big", &err);
  cr_assert_eq(json_array_size(arr), 1000);
  json_decref(arr);
  for (int i = 0; i < 3000; i += 3) {
    if (i == 0 || i == 2997)
      continue; /* keep two */
    snprintf(name, sizeof name, "ns/o%04d", i);
    cr_assert_eq(tn_store_delete(s, name, NULL, &err), 0);
  }
  assert_index(s, "tenant", "big", "o0000,o2997");
  arr = tn_store_by_index(s, "tenant", "other", &err);
  cr_assert_eq(json_array_size(arr), 2000);
  json_decref(arr);
  cr_assert_eq(tn_store_len(s), 2002);
  tn_store_free(s);
}

/* Records what the observer is told as "TYPE key old_rv->cur_rv". */
struct changes {
  char log[64][64];
  int n;
};

static const char *rv_of(struct tn_store_obj *o) {
  static _Thread_local char buf[2][32];
  static _Thread_local int which;
  if (!o)
    return "-";
  json_t *j = tn_store_obj_decode(o);
  char *b = buf[which++ & 1];
  snprintf(b, 32, "%s",
           json_string_value(json_object_get(json_object_get(j, "metadata"), "resourceVersion")));
  json_decref(j);
  return b;
}

static void observe(void *ud, enum tn_store_change change, struct tn_store_obj *old,
                    struct tn_store_obj *cur) {
  struct changes *c = ud;
  static const char *names_[] = {"?", "ADDED", "UPDATED", "DELETED"};
  const char *key = tn_store_obj_key(cur ? cur : old);
  const char *o = rv_of(old), *n = rv_of(cur);
  if (c->n < 64)
    snprintf(c->log[c->n++], 64, "%s %s %s->%s", names_[change], key, o, n);
}

Test(store, the_observer_sees_every_change_in_order) {
  struct tn_store *s = tn_store_new();
  struct changes c = {.n = 0};
  struct tn_error err;
  tn_store_set_observer(s, observe, &c);
  upsert(s, mk("ns", "a", "1", NULL));
  upsert(s, mk("ns", "a", "2", NULL));
  upsert(s, mk("ns", "a", "2", NULL)); /* the same resourceVersion again is still an update */
  json_t *final = mk("ns", "a", "3", NULL);
  cr_assert_eq(tn_store_delete(s, "ns/a", final, &err), 0);
  json_decref(final);
  upsert(s, mk("ns", "b", "4", NULL));
  cr_assert_eq(tn_store_delete(s, "ns/b", NULL, &err), 0);
  cr_assert_eq(c.n, 6);
  cr_assert_str_eq(c.log[0], "ADDED ns/a -->1");
  cr_assert_str_eq(c.log[1], "UPDATED ns/a 1->2");
  cr_assert_str_eq(c.log[2], "UPDATED ns/a 2->2");
  cr_assert_str_eq(c.log[3], "DELETED ns/a 2->3", "the final state reported by the server is passed along");
  cr_assert_str_eq(c.log[4], "ADDED ns/b -->4");
  cr_assert_str_eq(c.log[5], "DELETED ns/b 4->-");
  tn_store_set_observer(s, NULL, NULL);
  upsert(s, mk("ns", "c", "5", NULL));
  cr_assert_eq(c.n, 6);
  tn_store_free(s);
}

Test(store, replace_deletes_what_is_gone_and_updates_the_rest) {
  struct tn_store *s = tn_store_new();
  struct changes c = {.n = 0};
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  upsert(s, mk("ns", "a", "1", "acme"));
  upsert(s, mk("ns", "b", "1", "acme"));
  upsert(s, mk("ns", "c", "1", "globex"));
  tn_store_set_observer(s, observe, &c);

  json_t *objs = json_array();
  json_array_append_new(objs, mk("ns", "b", "1", "globex")); /* unchanged resourceVersion, new label */
  json_array_append_new(objs, mk("ns", "d", "7", "acme"));
  cr_assert_eq(tn_store_replace(s, objs, &err), 0, "%s", err.message);
  json_decref(objs);

  assert_names(tn_store_keys(s), "ns/b,ns/d");
  assert_index(s, "tenant", "acme", "d");
  assert_index(s, "tenant", "globex", "b");
  cr_assert_eq(c.n, 4);
  cr_assert_str_eq(c.log[0], "UPDATED ns/b 1->1");
  cr_assert_str_eq(c.log[1], "ADDED ns/d -->7");
  /* The deletions carry the last known state; their order is the table's. */
  cr_assert((strcmp(c.log[2], "DELETED ns/a 1->-") == 0 && strcmp(c.log[3], "DELETED ns/c 1->-") == 0) ||
                (strcmp(c.log[3], "DELETED ns/a 1->-") == 0 && strcmp(c.log[2], "DELETED ns/c 1->-") == 0),
            "%s / %s", c.log[2], c.log[3]);

  /* An interrupted replace deletes nothing; beginning again starts a new generation. */
  tn_store_replace_begin(s);
  upsert(s, mk("ns", "b", "8", "globex"));
  tn_store_replace_begin(s);
  upsert(s, mk("ns", "d", "9", "acme"));
  cr_assert_eq(tn_store_replace_end(s), 1);
  assert_names(tn_store_keys(s), "ns/d");
  /* An empty replace empties the store. */
  tn_store_replace_begin(s);
  cr_assert_eq(tn_store_replace_end(s), 1);
  cr_assert_eq(tn_store_len(s), 0);
  assert_names(tn_store_index_values(s, "tenant"), "");
  tn_store_free(s);
}

Test(store, replace_shrinks_after_a_mass_deletion) {
  struct tn_store *s = tn_store_new();
  char name[32];
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof name, "o%d", i);
    upsert(s, mk(NULL, name, "1", NULL));
  }
  tn_store_replace_begin(s);
  upsert(s, mk(NULL, "o42", "2", NULL));
  upsert(s, mk(NULL, "new", "2", NULL));
  cr_assert_eq(tn_store_replace_end(s), 4999);
  assert_names(tn_store_keys(s), "new,o42");
  for (int i = 0; i < 5000; i++) { /* the table still works after shrinking */
    snprintf(name, sizeof name, "o%d", i);
    json_t *g = tn_store_get(s, name);
    cr_assert((g != NULL) == (i == 42), "%s", name);
    json_decref(g);
  }
  tn_store_free(s);
}

/* Random operations against a model (a JSON object key -> tenant), checking every read. */
Test(store, randomized_operations_match_a_model) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  json_t *model = json_object();
  unsigned seed = 12345;
  const char *tenants[] = {"t0", "t1", "t2", "t3", "t4"};
  char key[32], name[32];
  for (int step = 0; step < 20000; step++) {
    int k = rand_r(&seed) % 300;
    snprintf(name, sizeof name, "n%d", k);
    snprintf(key, sizeof key, "ns/n%d", k);
    int op = rand_r(&seed) % 10;
    if (op < 6) {
      const char *t = tenants[rand_r(&seed) % 5];
      upsert(s, mk("ns", name, "1", t));
      json_object_set_new(model, key, json_string(t));
    } else if (op < 9) {
      int rc = tn_store_delete(s, key, NULL, &err);
      cr_assert_eq(rc, json_object_get(model, key) ? 0 : TN_ENOTFOUND, "step %d", step);
      json_object_del(model, key);
    } else {
      json_t *g = tn_store_get(s, key);
      cr_assert_eq(g != NULL, json_object_get(model, key) != NULL, "step %d key %s", step, key);
      json_decref(g);
    }
    if (step % 1000 != 999)
      continue;
    cr_assert_eq(tn_store_len(s), json_object_size(model));
    for (int t = 0; t < 5; t++) {
      json_t *arr = tn_store_by_index(s, "tenant", tenants[t], &err);
      size_t want = 0;
      const char *mk_;
      json_t *mv;
      json_object_foreach(model, mk_, mv) want += strcmp(json_string_value(mv), tenants[t]) == 0;
      cr_assert_eq(json_array_size(arr), want, "step %d tenant %s", step, tenants[t]);
      size_t i;
      json_t *x;
      json_array_foreach(arr, i, x) {
        char *kk = tn_store_key_of(x);
        cr_assert_str_eq(json_string_value(json_object_get(model, kk)), tenants[t]);
        free(kk);
      }
      json_decref(arr);
    }
  }
  json_decref(model);
  tn_store_free(s);
}

/* ---- concurrency ------------------------------------------------------------------------------ */

struct shared {
  struct tn_store *s;
  int id;
  _Atomic int stop;
  _Atomic long reads;
};

/* Each writer owns names w<id>-<k>; an object's label tenant always equals its data.tenant, so
 * readers can check that every object they see is whole and is found under the right value. */
static void *writer(void *p) {
  struct shared *sh = p;
  unsigned seed = (unsigned)sh->id * 7919u;
  char name[32];
  for (int i = 0; i < 4000; i++) {
    int k = rand_r(&seed) % 50;
    snprintf(name, sizeof name, "w%d-%d", sh->id, k);
    if (rand_r(&seed) % 4 == 0) {
      char key[40];
      snprintf(key, sizeof key, "ns/%s", name);
      tn_store_delete(sh->s, key, NULL, NULL);
    } else {
      char t[8];
      snprintf(t, sizeof t, "t%d", rand_r(&seed) % 4);
      json_t *o = mk("ns", name, "1", t);
      json_object_set_new(o, "data", json_pack("{ss}", "tenant", t));
      if (tn_store_upsert(sh->s, o, NULL) != 0)
        abort();
      json_decref(o);
    }
  }
  return NULL;
}

static void check_whole(json_t *o, const char *want_tenant) {
  const char *label =
      json_string_value(json_object_get(json_object_get(json_object_get(o, "metadata"), "labels"), "tenant"));
  const char *data = json_string_value(json_object_get(json_object_get(o, "data"), "tenant"));
  if (!label || !data || strcmp(label, data) != 0 || (want_tenant && strcmp(label, want_tenant) != 0))
    abort(); /* criterion asserts are not for threads */
}

static void *reader(void *p) {
  struct shared *sh = p;
  char t[8], key[40];
  int i = 0;
  while (!sh->stop) {
    snprintf(t, sizeof t, "t%d", i % 4);
    json_t *arr = tn_store_by_index(sh->s, "tenant", t, NULL);
    size_t j;
    json_t *o;
    json_array_foreach(arr, j, o) check_whole(o, t);
    json_decref(arr);
    snprintf(key, sizeof key, "ns/w%d-%d", i % 4, i % 50);
    o = tn_store_get(sh->s, key);
    if (o)
      check_whole(o, NULL);
    json_decref(o);
    if (i % 16 == 0) {
      arr = tn_store_list(sh->s);
      json_array_foreach(arr, j, o) check_whole(o, NULL);
      json_decref(arr);
    }
    sh->reads++;
    i++;
  }
  return NULL;
}

Test(store, concurrent_readers_and_writers, .timeout = 120) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  struct shared w[4], r[4];
  pthread_t wt[4], rt[4];
  for (int i = 0; i < 4; i++) {
    r[i] = (struct shared){.s = s, .id = i};
    cr_assert_eq(pthread_create(&rt[i], NULL, reader, &r[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    w[i] = (struct shared){.s = s, .id = i};
    cr_assert_eq(pthread_create(&wt[i], NULL, writer, &w[i]), 0);
  }
  for (int i = 0; i < 4; i++)
    pthread_join(wt[i], NULL);
  for (int i = 0; i < 4; i++) {
    r[i].stop = 1;
    pthread_join(rt[i], NULL);
    cr_assert_gt(r[i].reads, 0);
  }
  /* Quiescent: the indexes agree exactly with the objects. */
  json_t *all = tn_store_list(s);
  size_t total = 0;
  for (int t = 0; t < 4; t++) {
    char tv[8];
    snprintf(tv, sizeof tv, "t%d", t);
    json_t *arr = tn_store_by_index(s, "tenant", tv, &err);
    size_t j;
    json_t *o;
    json_array_foreach(arr, j, o) check_whole(o, tv);
    total += json_array_size(arr);
    json_decref(arr);
  }
  cr_assert_eq(total, json_array_size(all));
  cr_assert_eq(tn_store_len(s), json_array_size(all));
  cr_assert_leq(json_array_size(all), 200);
  json_decref(all);
  tn_store_free(s);
}

/* ---- projection ------------------------------------------------------------------------------- */

Test(store, project_keeps_only_the_listed_paths) {
  json_t *ns =
      json_loads("{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"acme-prod\","
                 "\"uid\":\"u\",\"resourceVersion\":\"7\",\"labels\":{\"a\":\"b\"},\"managedFields\":[{}]},"
                 "\"spec\":{\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":\"Active\"}}",
                 0, NULL);
  const char *paths[] = {"metadata.name",
                         "metadata.resourceVersion",
                         "metadata.labels",
                         "metadata.ownerReferences",
                         "status.phase",
                         "spec.finalizers.x",
                         NULL};
  json_t *p = tn_store_project(ns, paths);
  json_t *want =
      json_loads("{\"metadata\":{\"name\":\"acme-prod\",\"resourceVersion\":\"7\",\"labels\":{\"a\":\"b\"}},"
                 "\"status\":{\"phase\":\"Active\"}}",
                 0, NULL);
  cr_assert(json_equal(p, want), "%s", json_dumps(p, 0));
  /* A deep copy: changing the source leaves it alone. */
  json_object_set_new(json_object_get(json_object_get(ns, "metadata"), "labels"), "a",
                      json_string("changed"));
  cr_assert(json_equal(p, want));
  json_decref(p);
  json_decref(want);
  json_decref(ns);
}

/* ---- compressed storage ------------------------------------------------------------------------- */

/* An object like a cached Tenant: i picks its name and values, pad (bytes) makes it bigger. */
static json_t *mk_big(int i, size_t pad) {
  char name[32], ns[40], uid[40];
  snprintf(name, sizeof name, "tenant-%05d", i);
  snprintf(ns, sizeof ns, "%s-prod", name);
  snprintf(uid, sizeof uid, "%08x-aaaa-bbbb-cccc-%012d", (unsigned)i * 2654435761u, i);
  json_t *conds = json_array();
  static const char *const types[] = {"Ready", "Placed", "NamespacesReady", "NetworkIsolated",
                                      "QuotaApplied"};
  for (int c = 0; c < 5; c++)
    json_array_append_new(conds,
                          json_pack("{ss ss ss ss si}", "type", types[c], "status", i % 3 ? "True" : "False",
                                    "reason", "Converged", "message",
                                    "every object of the tenant is as desired", "observedGeneration", i));
  char *p = calloc(1, pad + 1);
  for (size_t k = 0; k < pad; k++)
    p[k] = (char)('a' + (k * 7 + (size_t)i) % 26);
  json_t *o =
      json_pack("{s:s, s:{s:s, s:s, s:{s:s}}, s:{s:s, s:[s, s], s:s}, s:{s:o, s:[s]}}", "kind", "Tenant",
                "metadata", "name", name, "uid", uid, "labels", "tenant", name, "spec", "plan", "standard",
                "environments", "prod", "staging", "pad", p, "status", "conditions", conds, "namespaces", ns);
  free(p);
  return o;
}

static void assert_reads_back(struct tn_store *s, const json_t *want) {
  char *key = tn_store_key_of(want);
  json_t *got = tn_store_get(s, key);
  cr_assert(json_equal(got, (json_t *)want), "%s does not decode to what was stored", key);
  struct tn_store_obj *o = tn_store_get_obj(s, key);
  cr_assert_not_null(o);
  size_t len = 0;
  const char *text = tn_store_obj_json(o, &len);
  char *compact = json_dumps(want, JSON_COMPACT);
  cr_assert_not_null(text);
  cr_assert_eq(len, strlen(compact));
  cr_assert_str_eq(text, compact, "the JSON text of %s differs", key);
  free(compact);
  tn_store_obj_unref(o);
  json_decref(got);
  free(key);
}

Test(store, compressed_objects_read_back_exactly_and_take_less_room) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  cr_assert_eq(tn_store_add_index(s, "tenant", by_tenant, NULL, &err), 0);
  size_t plain = 0;
  json_t *objs[300];
  for (int i = 0; i < 300; i++) {
    /* small ones (stored plain), ~1 KB, ~3 KB, and some beyond the 4 KiB window */
    size_t pad = i % 10 == 9 ? 9000 : (size_t)(i % 3) * 900;
    objs[i] = mk_big(i, pad);
    char *t = json_dumps(objs[i], JSON_COMPACT);
    plain += strlen(t) + 1;
    free(t);
    cr_assert_eq(tn_store_upsert(s, objs[i], &err), 0, "%s", err.message);
  }
  for (int i = 0; i < 300; i++)
    assert_reads_back(s, objs[i]);
  /* The index values were computed from the objects, and decoding for unindexing works. */
  assert_index(s, "tenant", "tenant-00042", "tenant-00042");
  size_t bytes = tn_store_bytes(s);
  cr_assert_lt(bytes, plain / 2, "%zu bytes stored for %zu bytes of JSON", bytes, plain);
  /* Updates replace, deletes give the room back exactly. */
  for (int i = 0; i < 300; i += 2) {
    json_object_set_new(json_object_get(objs[i], "spec"), "plan", json_string("premium"));
    cr_assert_eq(tn_store_upsert(s, objs[i], &err), 0);
  }
  for (int i = 0; i < 300; i++)
    assert_reads_back(s, objs[i]);
  for (int i = 0; i < 300; i++) {
    char *key = tn_store_key_of(objs[i]);
    cr_assert_eq(tn_store_delete(s, key, i % 2 ? objs[i] : NULL, &err), 0);
    free(key);
    json_decref(objs[i]);
  }
  cr_assert_eq(tn_store_bytes(s), 0);
  assert_index(s, "tenant", "tenant-00042", "");
  tn_store_free(s);
}

Test(store, objects_outlive_a_dictionary_change_and_the_store) {
  struct tn_store *s = tn_store_new();
  struct tn_error err;
  json_t *first = mk_big(1, 0), *big = mk_big(2, 2500); /* the second doubles the dictionary's size */
  cr_assert_eq(tn_store_upsert(s, first, &err), 0);
  cr_assert_eq(tn_store_upsert(s, big, &err), 0);
  struct tn_store_obj *a = tn_store_get_obj(s, "tenant-00001"), *b = tn_store_get_obj(s, "tenant-00002");
  for (int i = 3; i < 50; i++) {
    json_t *o = mk_big(i, 2500);
    cr_assert_eq(tn_store_upsert(s, o, &err), 0);
    assert_reads_back(s, o);
    json_decref(o);
  }
  assert_reads_back(s, first);
  tn_store_free(s); /* references held: the objects and their dictionaries stay readable */
  json_t *ga = tn_store_obj_decode(a), *gb = tn_store_obj_decode(b);
  cr_assert(json_equal(ga, first));
  cr_assert(json_equal(gb, big));
  json_decref(ga);
  json_decref(gb);
  tn_store_obj_unref(a);
  tn_store_obj_unref(b);
  json_decref(first);
  json_decref(big);
}
