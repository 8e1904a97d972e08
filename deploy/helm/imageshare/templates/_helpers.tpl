{{/* Names and labels shared by the templates. */}}

{{/* Full name: the release name, with the chart name added unless it already contains it. */}}
{{- define "imageshare.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "imageshare.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "imageshare.labels" -}}
{{ include "imageshare.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "imageshare.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "imageshare.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Leader election is on with more than one replica, or when asked for. */}}
{{- define "imageshare.leaderElection" -}}
{{- if or .Values.leaderElection (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}
