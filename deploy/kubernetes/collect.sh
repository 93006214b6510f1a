#!/bin/sh
# collect.sh: the final step of the Kubernetes example. Waits for the load
# Job, saves each generator's HdrHistogram log (its pod's stdout) as
# shard-<i>.hlog in DIR, and merges them with `sockbench merge`.
# Usage: collect.sh [DIR]   (needs kubectl; sockbench on PATH, or SOCKBENCH=path)
set -eu
dir=${1:-sockbench-logs}
job=sockbench-load
sockbench=${SOCKBENCH:-sockbench}
mkdir -p "$dir"
kubectl wait --for=condition=complete "job/$job" --timeout=30m
n=$(kubectl get "job/$job" -o jsonpath='{.spec.completions}')
i=0
while [ "$i" -lt "$n" ]; do
  pod=$(kubectl get pods -l "job-name=$job,batch.kubernetes.io/job-completion-index=$i" \
        --field-selector=status.phase=Succeeded -o jsonpath='{.items[0].metadata.name}')
  kubectl logs "$pod" > "$dir/shard-$i.hlog"
  i=$((i + 1))
done
"$sockbench" merge "$dir"/shard-*.hlog
