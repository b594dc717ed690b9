/* tenantctl_completion.c - `tenantctl completion bash|zsh|fish`: shell completion scripts for
 * tenantctl and kubectl-tenant (commands from the command table, flags, values, and tenant ids
 * from `tenantctl get -o name`). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tenantctl.h"

static void commands(FILE *f) {
  for (const struct tctl_command *c = tctl_commands; c->name; c++)
    fprintf(f, "%s%s", c == tctl_commands ? "" : " ", c->name);
}

static const char *const globals =
    "--kubeconfig --context --namespace --as --as-group --request-timeout --help";

static void bash(FILE *f) {
  fprintf(f, "# bash completion for tenantctl and kubectl-tenant: source <(tenantctl completion bash)\n"
             "_tenantctl_tenants() {\n"
             "  \"${COMP_WORDS[0]}\" get -o name 2>/dev/null | sed 's|^tenant.tenancy.dev/||'\n"
             "}\n"
             "_tenantctl() {\n"
             "  local cur=\"${COMP_WORDS[COMP_CWORD]}\" prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
             "  local cmds=\"");
  commands(f);
  fprintf(
      f,
      "\"\n"
      "  if [[ $COMP_CWORD -eq 1 ]]; then\n"
      "    COMPREPLY=($(compgen -W \"$cmds\" -- \"$cur\")); return\n"
      "  fi\n"
      "  local cmd=\"${COMP_WORDS[1]}\"\n"
      "  case \"$prev\" in\n"
      "    -o|--output) COMPREPLY=($(compgen -W \"table wide json yaml name\" -- \"$cur\")); return ;;\n"
      "    --isolation) COMPREPLY=($(compgen -W \"shared dedicated hybrid\" -- \"$cur\")); return ;;\n"
      "    --state) COMPREPLY=($(compgen -W \"Draft Active Suspended Archived Deleted\" -- \"$cur\")); "
      "return ;;\n"
      "    --dry-run) COMPREPLY=($(compgen -W \"none server client\" -- \"$cur\")); return ;;\n"
      "    --kubeconfig) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n"
      "    --context) COMPREPLY=($(compgen -W \"$(kubectl config get-contexts -o name 2>/dev/null)\" -- "
      "\"$cur\")); return ;;\n"
      "    --confirm|--reason|--plan|--region|--allowed-region|--env|--display-name|--contact|--external-id|"
      "--label|--value|-l|--selector|--as|--as-group|-n|--namespace|--request-timeout) return ;;\n"
      "  esac\n"
      "  if [[ \"$cur\" == -* ]]; then\n"
      "    local flags=\"%s\"\n"
      "    case \"$cmd\" in\n"
      "      get|list) flags=\"$flags --output --selector --state --plan --region --no-headers\" ;;\n"
      "      create) flags=\"$flags --plan --isolation --region --allowed-region --residency-flag --env "
      "--display-name --contact --external-id --state --reason --label --dry-run --output\" ;;\n"
      "      activate|suspend|resume|archive) flags=\"$flags --reason\" ;;\n"
      "      delete) flags=\"$flags --confirm --reason\" ;;\n"
      "      rotate) flags=\"$flags --value\" ;;\n"
      "      events) flags=\"$flags --output\" ;;\n"
      "      describe) flags=\"$flags --audit-rows\" ;;\n"
      "    esac\n"
      "    COMPREPLY=($(compgen -W \"$flags\" -- \"$cur\")); return\n"
      "  fi\n"
      "  case \"$cmd\" in\n"
      "    completion) [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W \"bash zsh fish\" -- \"$cur\")) "
      ";;\n"
      "    audit) [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W \"verify list init prune\" -- "
      "\"$cur\")) ;;\n"
      "    rotate)\n"
      "      if [[ $COMP_CWORD -eq 2 ]]; then COMPREPLY=($(compgen -W \"credentials keys\" -- \"$cur\"))\n"
      "      else COMPREPLY=($(compgen -W \"$(_tenantctl_tenants)\" -- \"$cur\")); fi ;;\n"
      "    create) ;;\n"
      "    *) COMPREPLY=($(compgen -W \"$(_tenantctl_tenants)\" -- \"$cur\")) ;;\n"
      "  esac\n"
      "}\n"
      "complete -F _tenantctl tenantctl kubectl-tenant\n",
      globals);
}

static void zsh(FILE *f) {
  fprintf(f, "#compdef tenantctl kubectl-tenant\n"
             "# zsh completion for tenantctl: source <(tenantctl completion zsh)\n"
             "autoload -U +X bashcompinit && bashcompinit\n");
  bash(f);
}

static void fish(FILE *f) {
  fprintf(f, "# fish completion for tenantctl: tenantctl completion fish | source\n"
             "function __tenantctl_tenants\n"
             "    tenantctl get -o name 2>/dev/null | string replace 'tenant.tenancy.dev/' ''\n"
             "end\n");
  for (const char *prog = "tenantctl"; prog;
       prog = strcmp(prog, "tenantctl") == 0 ? "kubectl-tenant" : NULL) {
    fprintf(f, "complete -c %s -f\n", prog);
    for (const struct tctl_command *c = tctl_commands; c->name; c++) {
      fprintf(f, "complete -c %s -n '__fish_use_subcommand' -a %s -d '", prog, c->name);
      for (const char *p = c->summary; *p; p++)
        fprintf(f, *p == '\'' || *p == '\\' ? "\\%c" : "%c", *p);
      fprintf(f, "'\n");
    }
    fprintf(
        f,
        "complete -c %s -n '__fish_seen_subcommand_from get list describe activate suspend resume archive "
        "delete "
        "events' -a '(__tenantctl_tenants)'\n"
        "complete -c %s -n '__fish_seen_subcommand_from rotate' -a 'credentials keys (__tenantctl_tenants)'\n"
        "complete -c %s -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n"
        "complete -c %s -n '__fish_seen_subcommand_from audit' -a 'verify list init prune'\n"
        "complete -c %s -s o -l output -x -a 'table wide json yaml name'\n"
        "complete -c %s -l isolation -x -a 'shared dedicated hybrid'\n"
        "complete -c %s -l state -x -a 'Draft Active Suspended Archived Deleted'\n"
        "complete -c %s -l dry-run -x -a 'none server client'\n"
        "complete -c %s -l kubeconfig -r -F\n"
        "complete -c %s -l context -x -a '(kubectl config get-contexts -o name 2>/dev/null)'\n"
        "complete -c %s -s n -l namespace -x\n"
        "complete -c %s -l as -x\n"
        "complete -c %s -l as-group -x\n"
        "complete -c %s -l confirm -x\n"
        "complete -c %s -l reason -x\n",
        prog, prog, prog, prog, prog, prog, prog, prog, prog, prog, prog, prog, prog, prog, prog);
  }
}

int tctl_cmd_completion(int argc, char **argv) {
  if (argc == 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
    printf("Usage: %s completion bash|zsh|fish\n"
           "\n"
           "Prints a completion script. bash: source <(%s completion bash) (or save it in\n"
           "/etc/bash_completion.d/tenantctl); zsh: source <(%s completion zsh); fish:\n"
           "%s completion fish | source.\n",
           tctl_prog, "tenantctl", "tenantctl", "tenantctl");
    return 0;
  }
  if (argc != 2)
    return tctl_usage_error("completion", "completion takes one shell: bash, zsh or fish");
  if (!strcmp(argv[1], "bash"))
    bash(stdout);
  else if (!strcmp(argv[1], "zsh"))
    zsh(stdout);
  else if (!strcmp(argv[1], "fish"))
    fish(stdout);
  else
    return tctl_usage_error("completion", "unknown shell \"%s\": bash, zsh or fish", argv[1]);
  return 0;
}

/* ---- kubectl plugin completion (kubectl >= 1.26 runs kubectl_complete-tenant) ------------------ */

static void candidate(const char *cur, const char *word) {
  if (strncmp(word, cur, strlen(cur)) == 0)
    printf("%s\n", word);
}

static void candidates(const char *cur, const char *words) {
  char w[64];
  while (*words) {
    size_t n = strcspn(words, " ");
    if (n < sizeof w) {
      memcpy(w, words, n);
      w[n] = '\0';
      candidate(cur, w);
    }
    words += n + (words[n] == ' ');
  }
}

static void tenants(const char *cur) {
  struct tn_kube *k = NULL;
  FILE *quiet = freopen("/dev/null", "w", stderr); /* no error text inside a completion */
  (void)quiet;
  if (tctl_connect(&k))
    return;
  char *cont = NULL;
  struct tn_error err = {0};
  do {
    json_t *page = NULL;
    if (tctl_list_page(k, &tctl_tenants_gvr, NULL, NULL, NULL, 500, cont, &page, &err))
      break;
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(page, "items"), i, t) {
      const char *name = tctl_str(t, "metadata.name");
      if (name)
        candidate(cur, name);
    }
    free(cont);
    const char *c = tctl_str(page, "metadata.continue");
    cont = c && *c ? strdup(c) : NULL;
    json_decref(page);
  } while (cont);
  free(cont);
  tn_kube_free(k);
}

int tctl_plugin_complete(int argc, char **argv) {
  /* argv[1..]: the words after `kubectl tenant`, the last one being completed (maybe ""). */
  const char *cur = argc > 1 ? argv[argc - 1] : "";
  const char *prev = argc > 2 ? argv[argc - 2] : "";
  const char *cmd = argc > 2 ? argv[1] : "";
  int pos = argc - 1; /* 1-based position of the word being completed */
  if (!strcmp(prev, "-o") || !strcmp(prev, "--output"))
    candidates(cur, "table wide json yaml name");
  else if (!strcmp(prev, "--isolation"))
    candidates(cur, "shared dedicated hybrid");
  else if (!strcmp(prev, "--state"))
    candidates(cur, "Draft Active Suspended Archived Deleted");
  else if (!strcmp(prev, "--dry-run"))
    candidates(cur, "none server client");
  else if (prev[0] == '-' && !strchr(prev, '=') && strcmp(prev, "--no-headers") && strcmp(prev, "--help"))
    ; /* the value of another flag: nothing to offer */
  else if (cur[0] == '-')
    candidates(cur,
               "--output --selector --state --plan --region --no-headers --isolation --allowed-region "
               "--residency-flag --env --display-name --contact --external-id --reason --label --dry-run "
               "--confirm --value --audit-rows --kubeconfig --context --namespace --as --as-group "
               "--request-timeout --help");
  else if (pos == 1)
    for (const struct tctl_command *c = tctl_commands; c->name; c++)
      candidate(cur, c->name);
  else if (!strcmp(cmd, "completion"))
    candidates(cur, pos == 2 ? "bash zsh fish" : "");
  else if (!strcmp(cmd, "audit"))
    candidates(cur, pos == 2 ? "verify list init prune" : "");
  else if (!strcmp(cmd, "rotate") && pos == 2)
    candidates(cur, "credentials keys");
  else if (strcmp(cmd, "create") != 0)
    tenants(cur);
  printf(":4\n"); /* cobra's ShellCompDirectiveNoFileComp */
  return 0;
}
