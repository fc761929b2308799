{{- define "network-mapper.fullname" -}}
{{- .Values.fullnameOverride | default "network-mapper" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "network-mapper.labels" -}}
app.kubernetes.io/name: network-mapper
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "network-mapper.selector" -}}
app.kubernetes.io/name: network-mapper
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "network-mapper.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
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
