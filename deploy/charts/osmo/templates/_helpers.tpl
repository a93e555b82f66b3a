{{- define "osmo.name" -}}
{{- printf "%s-osmo" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "osmo.labels" -}}
app.kubernetes.io/name: osmo
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "osmo.selector" -}}
app.kubernetes.io/name: osmo
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
