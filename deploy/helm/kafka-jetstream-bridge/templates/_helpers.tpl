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

{{/*
The config as a map (values' config, or its text parsed).
*/}}
{{- define "bridge.configMap" -}}
{{- if kindIs "string" .Values.config -}}
{{- fromYaml .Values.config | toJson -}}
{{- else -}}
{{- .Values.config | toJson -}}
{{- end -}}
{{- end -}}

{{/*
A Go duration ("30s", "1m30s", "500ms") in seconds, as text.
*/}}
{{- define "bridge.seconds" -}}
{{- $total := 0.0 -}}
{{- range (regexFindAll "[0-9.]+(ms|h|m|s)" (toString .) -1) -}}
{{- $n := float64 (regexFind "^[0-9.]+" .) -}}
{{- $unit := trimPrefix (regexFind "^[0-9.]+" .) . -}}
{{- $scale := dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0 -}}
{{- $total = addf $total (mulf $n (get $scale $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
The consumer group of the config's Kafka input (kafka_franz, redpanda or kafka), "" if none.
*/}}
{{- define "bridge.consumerGroup" -}}
{{- $cfg := include "bridge.configMap" . | fromJson -}}
{{- $input := default (dict) $cfg.input -}}
{{- $group := "" -}}
{{- range $kind := list "kafka_franz" "redpanda" "kafka" -}}
{{- if hasKey $input $kind -}}
{{- $group = default "" (get (get $input $kind) "consumer_group") -}}
{{- end -}}
{{- end -}}
{{- $group -}}
{{- end -}}

{{/*
What cannot work, refused at render time: a grace period the shutdown does not fit in, no worker, a
KEDA group other than the config's, a KEDA minimum of 0 (a continuous copy would stop).
*/}}
{{- define "bridge.checks" -}}
{{- $cfg := include "bridge.configMap" . | fromJson -}}
{{- $shutdown := include "bridge.seconds" (default "20s" $cfg.shutdown_timeout) | float64 -}}
{{- if le (float64 .Values.terminationGracePeriodSeconds) $shutdown -}}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above config.shutdown_timeout (%vs): the pod would be killed before its last commit" .Values.terminationGracePeriodSeconds $shutdown) -}}
{{- end -}}
{{- if not (regexMatch "^[1-9][0-9]*$" (toString .Values.workers)) -}}
{{- fail (printf "workers must be a whole number of at least 1, not %v" .Values.workers) -}}
{{- end -}}
{{- if .Values.keda.enabled -}}
{{- if lt (int .Values.keda.minReplicaCount) 1 -}}
{{- fail "keda.minReplicaCount must be at least 1: at 0 the continuous copy stops when the lag is small" -}}
{{- end -}}
{{- $group := include "bridge.consumerGroup" . -}}
{{- if not $group -}}
{{- fail "keda needs the config's input consumer_group: the Kafka scaler reads that group's lag" -}}
{{- end -}}
{{- $asked := default "" .Values.keda.kafka.consumerGroup -}}
{{- if and $asked (ne $asked $group) -}}
{{- fail (printf "keda.kafka.consumerGroup (%s) is not the config's consumer_group (%s): KEDA would scale on a group nobody commits to (leave it empty to take the config's)" $asked $group) -}}
{{- end -}}
{{- end -}}
{{- end -}}
