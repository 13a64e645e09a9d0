{{/* Chart name, overridable. */}}
{{- define "cryptopipe-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: RELEASE-NAME, or RELEASE when it already contains the chart name. Truncated to 52 so
the longest suffix ("-crd-observer", 11 + dash) keeps names within 63 characters.
*/}}
{{- define "cryptopipe-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cryptopipe-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries. */}}
{{- define "cryptopipe-operator.labels" -}}
helm.sh/chart: {{ include "cryptopipe-operator.chart" . }}
{{ include "cryptopipe-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cryptopipe
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels: a stable subset (Deployment selectors are immutable). */}}
{{- define "cryptopipe-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cryptopipe-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "cryptopipe-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cryptopipe-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cryptopipe-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator needs in every namespace it serves: the rules of its Role (namespaced mode) or
ClusterRole (cluster mode). No wildcards; each rule says why it is there.
*/}}
{{- define "cryptopipe-operator.rules" -}}
# its own resource: kopf watches it and patches finalizers and its progress annotations
- apiGroups: ["cryptopipeline.io"]
  resources: ["cryptopipelines"]
  verbs: ["get", "list", "watch", "patch"]
# conditions, observedGeneration, checkpointGeneration
- apiGroups: ["cryptopipeline.io"]
  resources: ["cryptopipelines/status"]
  verbs: ["get", "patch"]
# ownerReferences with blockOwnerDeletion on the children: clusters running the
# OwnerReferencesPermissionEnforcement admission plugin require update on the owner's finalizers
- apiGroups: ["cryptopipeline.io"]
  resources: ["cryptopipelines/finalizers"]
  verbs: ["update"]
# kopf's and the handlers' Events about what changed
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# the children: server-side apply (patch, and create for the first apply), read back for the
# status (get, and list KafkaTopics by label for deletionPolicy: Retain). No watch: a timer reads
# their status. No delete either (garbage collection removes them through their ownerReferences),
# except on deployments: an optional child the spec turns off (the lake monitor, spec.monitor)
# is deleted by name, and only when labelled and owned as that pipeline's.
- apiGroups: ["kafka.strimzi.io"]
  resources: ["kafkatopics"]
  verbs: ["get", "list", "create", "patch"]
- apiGroups: ["sparkoperator.k8s.io"]
  resources: ["sparkapplications"]
  verbs: ["get", "list", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "create", "patch", "delete"]
# the pipeline's NetworkPolicies (operator/cryptopipe_operator/render_network.py); delete when
# spec.networkPolicy.enabled turns them off (by name, only when labelled and owned as that pipeline's)
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "list", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "create", "patch"]
# services are children too (the ingestion metrics Service); watch and delete are held only so the
# operator may grant them to the Spark driver, whose Role (operator/cryptopipe_operator/render_spark.py,
# render_role) holds them: Kubernetes forbids granting what the granter does not hold
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# held only to grant them to the Spark driver (same reason)
- apiGroups: [""]
  resources: ["pods", "configmaps", "persistentvolumeclaims"]
  verbs: ["create", "get", "list", "watch", "patch", "update", "delete", "deletecollection"]
{{- if .Values.rbac.readSinkSecrets }}
# the sink's S3 credentials (by name from spec.sink.credentialsSecretRef), to remove the lake
# prefix and checkpoints under deletionPolicy: Delete; get only, never list or watch
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
Checks what values.schema.json cannot (cross-field rules), collects every problem and fails once
listing them all.
*/}}
{{- define "cryptopipe-operator.validateValues" -}}
{{- $problems := list }}
{{- $v := .Values }}
{{- if and (not $v.serviceAccount.create) (not $v.serviceAccount.name) }}
{{- $problems = append $problems "serviceAccount.name: must name an existing ServiceAccount when serviceAccount.create is false" }}
{{- end }}
{{- if and $v.serviceMonitor.enabled (not $v.metrics.enabled) }}
{{- $problems = append $problems "serviceMonitor.enabled: needs metrics.enabled (the ServiceMonitor scrapes the metrics Service)" }}
{{- end }}
{{- if and $v.metrics.enabled (eq (int $v.metrics.port) (int $v.operator.healthPort)) }}
{{- $problems = append $problems (printf "metrics.port: %v is also operator.healthPort; kopf's liveness server and /metrics need different ports" $v.metrics.port) }}
{{- end }}
{{- if gt (int $v.replicaCount) 1 }}
{{- $problems = append $problems (printf "replicaCount: %v, but kopf runs --standalone (no peering): more than one replica would reconcile every CryptoPipeline twice" $v.replicaCount) }}
{{- end }}
{{- range $ns := $v.watchNamespaces }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString $ns)) }}
{{- $problems = append $problems (printf "watchNamespaces: %q is not a namespace name (DNS label)" (toString $ns)) }}
{{- end }}
{{- end }}
{{- if ne (len (uniq $v.watchNamespaces)) (len $v.watchNamespaces) }}
{{- $problems = append $problems "watchNamespaces: lists a namespace more than once" }}
{{- end }}
{{- if $v.serviceMonitor.enabled }}
{{- $interval := $v.serviceMonitor.interval | toString }}
{{- $timeout := $v.serviceMonitor.scrapeTimeout | toString }}
{{- if and (regexMatch "^[0-9]+s$" $interval) (regexMatch "^[0-9]+s$" $timeout) }}
{{- if gt (int (trimSuffix "s" $timeout)) (int (trimSuffix "s" $interval)) }}
{{- $problems = append $problems (printf "serviceMonitor.scrapeTimeout: %s is longer than serviceMonitor.interval %s" $timeout $interval) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $e := $v.operator.extraEnv }}
{{- if hasKey $e "value" }}
{{- if regexMatch "(?i)(secret|password|token|key)" (toString $e.name) }}
{{- $problems = append $problems (printf "operator.extraEnv: %s looks like a secret; pass it with valueFrom.secretKeyRef, not value" $e.name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if $problems }}
{{- fail (printf "\n\nInvalid values for the cryptopipe-operator chart (%d problems):\n  - %s\n" (len $problems) (join "\n  - " $problems)) }}
{{- end }}
{{- end }}
