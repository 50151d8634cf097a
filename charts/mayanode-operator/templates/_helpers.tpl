{{/* The chart name. */}}
{{- define "mayanode-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: release-chart, or the release name when it already contains the chart name. */}}
{{- define "mayanode-operator.fullname" -}}
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

{{- define "mayanode-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "mayanode-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mayanode-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "mayanode-operator.labels" -}}
helm.sh/chart: {{ include "mayanode-operator.chart" . }}
{{ include "mayanode-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mayanode-operator
{{- end }}

{{- define "mayanode-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mayanode-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mayanode-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Fails on value combinations the schema cannot express well. */}}
{{- define "mayanode-operator.validate" -}}
{{- if and (eq .Values.operator.scope "namespaced") (empty .Values.operator.namespaces) }}
{{- fail "operator.scope=namespaced needs operator.namespaces: the namespaces to watch" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.operator.peering.enabled) }}
{{- fail "replicaCount > 1 needs operator.peering.enabled: without peering two replicas would act at once" }}
{{- end }}
{{- end }}

{{/*
The operator's own permissions, identical in both scopes (a ClusterRole in `cluster` scope, a Role
per watched namespace in `namespaced` scope). Each verb's reason: docs/rbac.md.
*/}}
{{- define "mayanode-operator.rules" -}}
- apiGroups: ["maya.nodeops.io"]
  resources: ["mayanodes"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["maya.nodeops.io"]
  resources: ["noderestores"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["maya.nodeops.io"]
  resources: ["nodebackups"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: ["maya.nodeops.io"]
  resources: ["mayanodes/status", "nodebackups/status", "noderestores/status"]
  verbs: ["patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods/exec"]
  verbs: ["create", "get"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "create", "update", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["list", "create"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update"]
- apiGroups: ["snapshot.storage.k8s.io"]
  resources: ["volumesnapshots"]
  verbs: ["get", "create", "delete"]
{{- with .Values.rbac.extraRules }}
{{ toYaml . }}
{{- end }}
{{- end }}
