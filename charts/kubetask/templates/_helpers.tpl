{{/* Names and labels. */}}
{{- define "kubetask.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kubetask.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "kubetask.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "kubetask.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kubetask.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubetask.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubetask
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "kubetask.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetask.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kubetask.operator.name" -}}{{ include "kubetask.fullname" . | trunc 54 | trimSuffix "-" }}-operator{{- end -}}
{{- define "kubetask.api.name" -}}{{ include "kubetask.fullname" . | trunc 59 | trimSuffix "-" }}-api{{- end -}}
{{- define "kubetask.webhook.name" -}}{{ include "kubetask.fullname" . | trunc 55 | trimSuffix "-" }}-webhook{{- end -}}
{{- define "kubetask.webhook.certName" -}}{{ include "kubetask.webhook.name" . }}-cert{{- end -}}
{{- define "kubetask.callback.secretName" -}}
{{- default (printf "%s-callback" (include "kubetask.fullname" .)) .Values.callback.existingSecret -}}
{{- end -}}

{{- define "kubetask.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Pod and container security contexts meeting Pod Security "restricted". */}}
{{- define "kubetask.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kubetask.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment shared by operator and API: GPU placement (KUBETASK_GPU_*). */}}
{{- define "kubetask.gpuEnv" -}}
- name: KUBETASK_GPU_NODE_LABEL_KEY
  value: {{ .Values.gpu.nodeLabelKey | quote }}
- name: KUBETASK_GPU_NODE_LABEL_VALUE
  value: {{ .Values.gpu.nodeLabelValue | quote }}
- name: KUBETASK_GPU_PRODUCT_LABEL_KEY
  value: {{ .Values.gpu.productLabelKey | quote }}
- name: KUBETASK_GPU_RESOURCE_NAME
  value: {{ .Values.gpu.resourceName | quote }}
- name: KUBETASK_GPU_TAINT_KEY
  value: {{ .Values.gpu.taintKey | quote }}
- name: KUBETASK_GPU_CPU_TASKS_ON_GPU_NODES
  value: {{ .Values.gpu.cpuTasksOnGpuNodes | quote }}
{{- end -}}

{{/* The parts both webhook configurations share: fail closed, Tasks only. */}}
{{- define "kubetask.webhook.common" -}}
{{- $ := .ctx -}}
admissionReviewVersions: [v1]
sideEffects: None
failurePolicy: Fail
matchPolicy: Equivalent
timeoutSeconds: {{ $.Values.webhook.timeoutSeconds }}
clientConfig:
  service:
    name: {{ include "kubetask.webhook.name" $ }}
    namespace: {{ $.Release.Namespace }}
    path: {{ .path }}
    port: 443
rules:
  - apiGroups: [kubetask.io]
    apiVersions: [v1alpha1]
    operations: [CREATE, UPDATE]
    resources: [{{ .resource | default "tasks" }}]
    scope: {{ .scope | default "Namespaced" }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: [kube-system]
{{- end -}}
