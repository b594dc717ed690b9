{{/* _helpers.tpl - names, labels and derived values shared by the chart's templates. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "tenancy-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: fullnameOverride, else the release name when it contains
the chart name, else <release>-<chart>. Truncated to 63 characters (DNS label).
*/}}
{{- define "tenancy-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: <name>-<version>. */}}
{{- define "tenancy-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the operator pods (never change them across upgrades). */}}
{{- define "tenancy-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tenancy-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "tenancy-operator.labels" -}}
helm.sh/chart: {{ include "tenancy-operator.chart" . }}
{{ include "tenancy-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tenancy-operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "tenancy-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tenancy-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Namespace of the leader-election Lease (and of its Role). */}}
{{- define "tenancy-operator.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* Name of the leader-election Lease. */}}
{{- define "tenancy-operator.leaderElectionId" -}}
{{- default (printf "%s-leader" (include "tenancy-operator.fullname" .)) .Values.leaderElection.id }}
{{- end }}

{{/* The container image: repository:tag or repository@digest. */}}
{{- define "tenancy-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the PostgreSQL DSN. */}}
{{- define "tenancy-operator.dsnSecretName" -}}
{{- default (printf "%s-db" (include "tenancy-operator.fullname" .)) .Values.database.dsnSecret.name }}
{{- end }}

{{/* Name of the webhook's serving certificate Secret (in the release namespace). */}}
{{- define "tenancy-operator.webhookCertSecret" -}}
{{- default (printf "%s-webhook-tls" (include "tenancy-operator.fullname" .)) .Values.webhook.certSecret }}
{{- end }}

{{/* Refuses value combinations that would deploy something broken. */}}
{{- define "tenancy-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled=true: replicas without leader election would reconcile the same tenants concurrently" }}
{{- end }}
{{- $ports := list (int .Values.probes.port) }}
{{- if .Values.metrics.enabled }}{{ $ports = append $ports (int .Values.metrics.port) }}{{ end }}
{{- if .Values.webhook.enabled }}{{ $ports = append $ports (int .Values.webhook.port) }}{{ end }}
{{- if ne (len $ports) (len (uniq $ports)) }}
{{- fail "probes.port, metrics.port and webhook.port must differ" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.minAvailable .Values.podDisruptionBudget.maxUnavailable }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" }}
{{- end }}
{{- if and .Values.certManager.enabled (not .Values.webhook.enabled) }}
{{- fail "certManager.enabled issues the webhook's certificate: it needs webhook.enabled=true" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (and .Values.metrics.enabled .Values.metrics.service.enabled)) }}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled and metrics.service.enabled" }}
{{- end }}
{{- end }}

{{/*
The namespaces the operator writes in besides the ones it manages, as a CEL list literal: the release
namespace, and the leader-election Lease's when that is another one (operator-scope-policy.yaml).
*/}}
{{- define "tenancy-operator.ownNamespaces" -}}
{{- $lease := include "tenancy-operator.leaderElectionNamespace" . -}}
{{- if and .Values.leaderElection.enabled (ne $lease .Release.Namespace) -}}
['{{ .Release.Namespace }}', '{{ $lease }}']
{{- else -}}
['{{ .Release.Namespace }}']
{{- end -}}
{{- end }}

{{/*
Whether the read API is served: api.enabled and a certificate, the webhook's or api.tlsSecret.
Without either it is off (--api-bind-address=0).
*/}}
{{- define "tenancy-operator.apiServed" -}}
{{- if and .Values.api.enabled (or .Values.webhook.enabled .Values.api.tlsSecret) }}true{{- end }}
{{- end }}

{{/* Annotations on the templated CRDs (crds.yaml): keep them on uninstall, plus crds.annotations. */}}
{{- define "tenancy-operator.crdAnnotations" -}}
{{- if .Values.crds.keep }}
helm.sh/resource-policy: keep
{{- end }}
{{- with .Values.crds.annotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Whether the operator registers the ValidatingWebhookConfiguration itself (and writes its
caBundle): in the self-managed certificate mode; with certManager.enabled the cainjector does. */}}
{{- define "tenancy-operator.managesWebhookConfiguration" -}}
{{- if and .Values.webhook.enabled (not .Values.certManager.enabled) }}true{{- end }}
{{- end }}

{{/* The cert-manager Certificate of the webhook (and its Secret's name is webhookCertSecret). */}}
{{- define "tenancy-operator.webhookCertificate" -}}
{{- printf "%s-webhook" (include "tenancy-operator.fullname" .) }}
{{- end }}

{{/* The Pod labels of the helm test hooks (never the operator's selector labels). */}}
{{- define "tenancy-operator.testLabels" -}}
app.kubernetes.io/name: {{ include "tenancy-operator.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tenancy-operator
{{- end }}

{{/* The annotations of a `helm test` hook of weight .weight, deleted once the tests passed (and
before the next run, should one fail). */}}
{{- define "tenancy-operator.testHook" -}}
helm.sh/hook: test
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* The pod spec of a `helm test` pod up to its container's env (restricted Pod Security). */}}
{{- define "tenancy-operator.testPodSpec" -}}
serviceAccountName: {{ include "tenancy-operator.fullname" . }}-test
restartPolicy: Never
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: test
    image: {{ printf "%s:%s" .Values.tests.image.repository .Values.tests.image.tag | quote }}
    imagePullPolicy: {{ .Values.tests.image.pullPolicy }}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities:
        drop: [ALL]
    resources:
      requests: {cpu: 10m, memory: 16Mi}
      limits: {memory: 64Mi}
{{- end }}
