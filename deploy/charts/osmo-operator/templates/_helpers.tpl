{{- define "osmo-operator.name" -}}
{{- printf "%s-osmo-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "osmo-operator.labels" -}}
app.kubernetes.io/name: osmo-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "osmo-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "osmo-operator.tokenSecret" -}}
{{- default (printf "%s-token" (include "osmo-operator.name" .)) .Values.token.existingSecret -}}
{{- end -}}
