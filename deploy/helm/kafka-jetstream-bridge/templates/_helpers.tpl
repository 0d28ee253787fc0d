{{- define "bridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: replicator
{{- end -}}

{{- define "bridge.labels" -}}
{{ include "bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bridge.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else if .Values.secretEnv -}}
{{- printf "%s-credentials" (include "bridge.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
The config. A map (values' config) is written with toYaml, http.address set to 0.0.0.0:<httpPort> (the
probes use it). A string (a config file's text, quotes and comments kept) is written as is, and must
listen on httpPort itself. Either way the HTTP server must be on.
*/}}
{{- define "bridge.config" -}}
{{- if kindIs "string" .Values.config -}}
{{- $parsed := fromYaml .Values.config -}}
{{- if hasKey $parsed "Error" -}}
{{- fail (printf "config is not YAML: %s" $parsed.Error) -}}
{{- end -}}
{{- $http := default (dict) $parsed.http -}}
{{- if and (hasKey $http "enabled") (not $http.enabled) -}}
{{- fail "config: http.enabled: false leaves the probes and /metrics nothing to reach; the chart needs the HTTP server" -}}
{{- end -}}
{{- if not (hasSuffix (printf ":%d" (int .Values.httpPort)) (default "0.0.0.0:4195" $http.address)) -}}
{{- fail (printf "config: http.address must listen on httpPort (%d), the port of the probes" (int .Values.httpPort)) -}}
{{- end -}}
{{- .Values.config -}}
{{- else -}}
{{- $config := deepCopy .Values.config -}}
{{- $http := default (dict) $config.http -}}
{{- if and (hasKey $http "enabled") (not $http.enabled) -}}
{{- fail "config: http.enabled: false leaves the probes and /metrics nothing to reach; the chart needs the HTTP server" -}}
{{- end -}}
{{- $_ := set $http "address" (printf "0.0.0.0:%d" (int .Values.httpPort)) -}}
{{- $_ := set $config "http" $http -}}
{{- toYaml $config -}}
{{- end -}}
{{- end -}}
