{{- define "network-mapper.fullname" -}}
{{- .Values.fullnameOverride | default "network-mapper" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: the standard ones, then global.commonLabels. */}}
{{- define "network-mapper.labels" -}}
app.kubernetes.io/name: network-mapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with omit .Values.global.commonLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "helm.sh/chart" "app.kubernetes.io/component" }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "network-mapper.selector" -}}
app.kubernetes.io/name: network-mapper
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* An object's metadata lines after `name`: namespace and labels with the component.
Called with (dict "root" $ "component" "mapper"). */}}
{{- define "network-mapper.metadata" -}}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "network-mapper.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* A pod template's metadata: the selector labels, the component, global.podLabels and
global.podAnnotations. Called with (dict "root" $ "component" "mapper"). */}}
{{- define "network-mapper.podMetadata" -}}
labels:
  {{- with omit .root.Values.global.podLabels "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/component" }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- include "network-mapper.selector" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
{{- with .root.Values.global.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "network-mapper.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* image.pullSecrets, else the deprecated imagePullSecrets; plain names become {name: ...}. */}}
{{- define "network-mapper.pullSecrets" -}}
{{- $secrets := .Values.image.pullSecrets | default .Values.imagePullSecrets | default list -}}
{{- if $secrets }}
imagePullSecrets:
{{- range $secrets }}
  - name: {{ if kindIs "string" . }}{{ . | quote }}{{ else }}{{ .name | quote }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* "true" when the sniffer runs: neither sniffer.enable nor the deprecated sniffer.enabled is false. */}}
{{- define "network-mapper.snifferEnabled" -}}
{{- $old := .Values.sniffer.enabled -}}
{{- if and .Values.sniffer.enable (or (kindIs "invalid" $old) $old) -}}true{{- end -}}
{{- end -}}

{{/* The cloud's URL: cloud.url, else Otterize's global.otterizeCloud.apiAddress. */}}
{{- define "network-mapper.cloudUrl" -}}
{{- .Values.cloud.url | default .Values.global.otterizeCloud.apiAddress | default "" -}}
{{- end -}}

{{/* The cloud token: cloud.token, else Otterize's global.otterizeCloud.credentials.clientSecret. */}}
{{- define "network-mapper.cloudToken" -}}
{{- .Values.cloud.token | default .Values.global.otterizeCloud.credentials.clientSecret | default "" -}}
{{- end -}}

{{/* The secretKeyRef of the cloud token, as YAML (empty: no token). A Secret of the user's
(cloud.existingSecret, else Otterize's clientSecretKeyRef) wins over the chart's own. */}}
{{- define "network-mapper.cloudTokenRef" -}}
{{- $ref := .Values.global.otterizeCloud.credentials.clientSecretKeyRef -}}
{{- if .Values.cloud.existingSecret.name -}}
name: {{ .Values.cloud.existingSecret.name | quote }}
key: {{ .Values.cloud.existingSecret.key | default "token" | quote }}
{{- else if $ref.secretName -}}
name: {{ $ref.secretName | quote }}
key: {{ $ref.secretKey | default "token" | quote }}
{{- else if include "network-mapper.cloudToken" . -}}
name: {{ include "network-mapper.fullname" . }}
key: cloud-token
{{- end -}}
{{- end -}}

{{/* The deprecated names in use, one line each (for NOTES.txt). */}}
{{- define "network-mapper.deprecations" -}}
{{- if not (kindIs "invalid" .Values.sniffer.enabled) }}
DEPRECATED: sniffer.enabled is set; use sniffer.enable (the old name goes in the next release).
{{- end }}
{{- if .Values.imagePullSecrets }}
DEPRECATED: imagePullSecrets is set; use image.pullSecrets (the old name goes in the next release).
{{- end }}
{{- end -}}

{{/* The producers' mapper endpoint. */}}
{{- define "network-mapper.mapperUrl" -}}
{{- printf "http://%s.%s.svc.%s:%v/query" (include "network-mapper.fullname" .) .Release.Namespace .Values.clusterDomain .Values.mapper.port -}}
{{- end -}}

{{/* The telemetry opt-out, on every container. */}}
{{- define "network-mapper.telemetryEnv" -}}
- name: OTTERIZE_TELEMETRY_ENABLED
  value: {{ ternary "true" "false" (ne (toString .Values.global.telemetry.enabled) "false") | quote }}
{{- end -}}

{{- define "network-mapper.agentTokenEnv" -}}
- name: NETWORK_MAPPER_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "network-mapper.fullname" . }}
      key: agent-token
{{- end -}}

{{/* A component's scheduling: priorityClassName, nodeSelector, tolerations, affinity (its values). */}}
{{- define "network-mapper.scheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pod securityContext of every component but the sniffer. */}}
{{- define "network-mapper.podSecurityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 1000
  runAsGroup: 1000
  # Mounted Secrets and volumes are group-readable by this group only.
  fsGroup: 1000
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* The container securityContext of every component but the sniffer. */}}
{{- define "network-mapper.securityContext" -}}
securityContext:
  runAsNonRoot: true
  runAsUser: 1000
  runAsGroup: 1000
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  capabilities:
    drop: ["ALL"]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{/* httpGet readiness and liveness probes on a port (name) and path. Called with
(dict "port" "health" "path" "/healthz" "scheme" "HTTP"). */}}
{{- define "network-mapper.probes" -}}
readinessProbe:
  httpGet:
    path: {{ .path | default "/healthz" }}
    port: {{ .port }}
    {{- if eq (.scheme | default "HTTP") "HTTPS" }}
    scheme: HTTPS
    {{- end }}
  periodSeconds: 10
  timeoutSeconds: 3
livenessProbe:
  httpGet:
    path: {{ .path | default "/healthz" }}
    port: {{ .port }}
    {{- if eq (.scheme | default "HTTP") "HTTPS" }}
    scheme: HTTPS
    {{- end }}
  periodSeconds: 20
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* The component's resources (omitted when empty). */}}
{{- define "network-mapper.resources" -}}
{{- with . }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* checkov skips, as checkov reads them: `checkov.io/skip<N>: CKV_K8S_<id>=<reason>`. Called with a
list of "CKV_K8S_<id>=<reason>" strings. */}}
{{- define "network-mapper.checkovSkips" -}}
{{- range $i, $skip := . }}
{{- if not (regexMatch "^CKV2?_K8S_[0-9]+=[^=]+$" $skip) }}
{{- fail (printf "a checkov skip is CKV_K8S_<id>=<reason>, the reason without '=': %s" $skip) }}
{{- end }}
checkov.io/skip{{ add1 $i }}: {{ $skip | quote }}
{{- end }}
{{- end -}}
