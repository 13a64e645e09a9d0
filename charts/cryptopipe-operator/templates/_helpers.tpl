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

{{/* The ClusterRole the Spark drivers run with: the chart ships it, the operator only binds it. */}}
{{- define "cryptopipe-operator.sparkDriverRole" -}}
{{- printf "%s-spark-driver" (include "cryptopipe-operator.fullname" .) }}
{{- end }}

{{/*
What the operator needs in every namespace it serves: the rules of its Role (namespaced mode) or
ClusterRole (cluster mode). No wildcards, and no verb the operator's code does not call: each rule
says which call needs it (operator/cryptopipe_operator: kube_api.py's get/apply/request, kopf's
watch and patches; docs/operator.md "RBAC: what the operator holds and why" lists them all).
Server-side apply (kube_api.apply) needs patch, and create too when the object does not exist yet;
reconcile.py GETs every child before applying it (to say in an Event what changed) and reads the
topics, Deployments and SparkApplication back for the status. Nothing here lists or watches a
child (a timer reads their status), and no pod, ConfigMap or Secret is ever written.
*/}}
{{- define "cryptopipe-operator.rules" -}}
# its own resource: kopf lists and watches it, and patches its finalizer and progress annotations
# (get reveals nothing list does not; kubectl-style reads of one pipeline)
- apiGroups: ["cryptopipeline.io"]
  resources: ["cryptopipelines"]
  verbs: ["get", "list", "watch", "patch"]
# conditions, observedGeneration, checkpointGeneration: merge patches of the status subresource
- apiGroups: ["cryptopipeline.io"]
  resources: ["cryptopipelines/status"]
  verbs: ["patch"]
# ownerReferences with blockOwnerDeletion on the children: clusters running the
# OwnerReferencesPermissionEnforcement admission plugin require update on the owner's finalizers
- apiGroups: ["cryptopipeline.io"]
  resources: ["cryptopipelines/finalizers"]
  verbs: ["update"]
# kopf's and the handlers' Events about what changed (POST only)
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# the topics: applied (get, create, patch), and listed by label for deletionPolicy: Retain, which
# unowns them. No delete: garbage collection removes them through their ownerReferences.
- apiGroups: ["kafka.strimzi.io"]
  resources: ["kafkatopics"]
  verbs: ["get", "list", "create", "patch"]
# the candle job: applied, and read back for the status; delete: deletionPolicy Delete stops the
# pipeline's own job (uid precondition) before it touches the lake, so nothing refills it
- apiGroups: ["sparkoperator.k8s.io"]
  resources: ["sparkapplications"]
  verbs: ["get", "create", "patch", "delete"]
# ingestion and the lake monitor: applied, read back for the status; delete: the lake monitor when
# spec.monitor turns it off (by name, and only when labelled and owned as that pipeline's), and the
# pipeline's own ingestion before deletionPolicy Delete touches the lake
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch", "delete"]
# the pipeline's NetworkPolicies (render_network.py); delete when spec.networkPolicy.enabled turns
# them off (by name, only when labelled and owned as that pipeline's)
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch", "delete"]
# the Spark driver's ServiceAccount and the ingestion metrics Service: applied
- apiGroups: [""]
  resources: ["serviceaccounts", "services"]
  verbs: ["get", "create", "patch"]
# the driver's RoleBinding to the chart's Spark driver ClusterRole: applied; delete: the RoleBinding
# of the same ServiceAccount to a per-pipeline Role that operators before it created (a roleRef is
# immutable, so the new binding has a new name and the old one is deleted by name, only when
# labelled and owned as that pipeline's)
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["rolebindings"]
  verbs: ["get", "create", "patch", "delete"]
# that old per-pipeline Role: only read (is it the pipeline's?) and deleted, never created
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles"]
  verbs: ["get", "delete"]
# binding the Spark driver ClusterRole, and no other: Kubernetes lets a RoleBinding reference a
# role whose rights the creator does not hold only with bind on that role, so the operator holds
# none of the driver's pod, service and ConfigMap rights itself
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["clusterroles"]
  verbs: ["bind"]
  resourceNames: [{{ include "cryptopipe-operator.sparkDriverRole" . | quote }}]
{{- if .Values.rbac.readSinkSecrets }}
# the sink's S3 credentials (by name from spec.sink.credentialsSecretRef), to remove the lake
# prefix and checkpoints under deletionPolicy: Delete; get only, never list or watch
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}
{{- end }}

{{/*
What a Spark driver in cluster mode does with its ServiceAccount (Spark's Kubernetes scheduler
backend, through the fabric8 client): create its executor pods, watch and list them (the watch and
the polling snapshot source), get its own driver pod (the executors' owner), delete executors by
name and by label (deletecollection) on scale-down and at the end; create the executors' ConfigMap
and delete it at the end; delete its driver Service at the end (spark.kubernetes.driver.service.
deleteOnTermination; spark-operator's submission creates the Service, not the driver). No patch or
update (only for spark.kubernetes.executor.deleteOnTermination=false or a decommission label,
neither of which the operator sets), no Secrets. PersistentVolumeClaims only with
rbac.sparkDriver.persistentVolumeClaims (executor volumes claimed OnDemand); without them Spark's
look for reusable PVCs (a list, caught: "Cannot list PVC resources" at INFO) and its PVC cleanup
at stop (caught and logged) are refused, which changes nothing when no executor volume is a PVC.
*/}}
{{- define "cryptopipe-operator.sparkDriverRules" -}}
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["create", "get", "list", "watch", "delete", "deletecollection"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["create", "get", "list", "delete", "deletecollection"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "delete", "deletecollection"]
{{- if .Values.rbac.sparkDriver.persistentVolumeClaims }}
# executor volumes claimed OnDemand (spark.kubernetes.executor.volumes.persistentVolumeClaim.*):
# the driver creates them, lists them to reuse them, deletes them when it does not own them
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["create", "get", "list", "delete", "deletecollection"]
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
{{- if and (gt (int $v.replicaCount) 1) (not $v.leaderElection.enabled) }}
{{- $problems = append $problems (printf "replicaCount: %v needs leaderElection.enabled: without the Lease every replica would reconcile every CryptoPipeline" $v.replicaCount) }}
{{- end }}
{{- $le := $v.leaderElection }}
{{- if and $le.enabled (not (and (lt (float64 $le.retryPeriodSeconds) (float64 $le.renewDeadlineSeconds)) (lt (float64 $le.renewDeadlineSeconds) (float64 $le.leaseDurationSeconds)))) }}
{{- $problems = append $problems (printf "leaderElection: needs retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds (a holder must stop before another may take over), got %v / %v / %v" $le.retryPeriodSeconds $le.renewDeadlineSeconds $le.leaseDurationSeconds) }}
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

{{/* The namespace of the leader-election Lease: leaderElection.namespace, else the release's. */}}
{{- define "cryptopipe-operator.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace -}}
{{- end }}
