#!/usr/bin/env bash
# vs-yardstick.sh: server CPU per request of the bare model next to the C
# yardstick server (../shared/yardstick's refserver, one thread), both
# driven by the yardstick's C client, server pinned to one CPU and client
# to another, the two servers interleaved in every round. Run it on a
# quiet machine (here: under `flock /tmp/sockbench-cpu.lock`).
#
#   models/bare/testdata/vs-yardstick.sh SOCKBENCH YARDSTICK_DIR [SECONDS] [ROUNDS]
#
# SOCKBENCH is a built bin/sockbench; YARDSTICK_DIR holds refserver and
# refclient (../shared/yardstick/build.sh prints it). Environment: CASES
# ("tcp:1 tcp:64 udp:1 udp:64 unix:1 unix:64"), MODE (echo), SIZE (64),
# SERVER_CPU (0), CLIENT_CPU (1), SERVERS ("ref bare"), OLD (another
# sockbench binary, say one built before a change: its OLD_MODEL model,
# bare unless set, runs as the server "old", interleaved with the others
# in every round).
#
# Server CPU is what bench reads (bench/proc_linux.go): the server
# process's user+system time, from the run time of each of its threads in
# /proc/PID/task/*/schedstat (ns), and utime+stime of /proc/PID/stat (10 ms
# ticks) beside it as a check, before and after the client's run, divided
# by the requests the client completed. Each line is one run; the summary
# gives medians over the rounds and bare's ratio to the yardstick.
set -eu
sb=$1 ys=$2 secs=${3:-3} rounds=${4:-3}
cases=${CASES:-"tcp:1 tcp:64 udp:1 udp:64 unix:1 unix:64"}
mode=${MODE:-echo} size=${SIZE:-64} scpu=${SERVER_CPU:-0} ccpu=${CLIENT_CPU:-1}
servers=${SERVERS:-"ref bare"}
old=${OLD:-}
if [ -n "$old" ]; then servers="$servers old"; fi
dir=$(mktemp -d /tmp/vsys.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

cpu_ns() { # run time of every thread of $1, ns
	local t=0 a f
	for f in /proc/"$1"/task/*/schedstat; do read -r a _ <"$f" && t=$((t + a)); done
	echo "$t"
}
cpu_ticks() { # utime+stime of $1, clock ticks
	local s
	s=$(cat /proc/"$1"/stat)
	s=${s##*) }
	set -- $s
	echo $((${12} + ${13}))
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() { # $1 server, $2 net, $3 addr; sets pid
	case $1 in
	ref)
		taskset -c "$scpu" "$ys"/refserver "$2" "$3" "$mode" 1 >/dev/null 2>&1 &
		pid=$!
		;;
	old)
		taskset -c "$scpu" "$old" serve --model "${OLD_MODEL:-bare}" --net "$2" --addr "$3" --mode "$mode" --workers 1 --log-level error >"$dir/ready" 2>"$dir/err" &
		pid=$!
		;;
	*)
		taskset -c "$scpu" "$sb" serve --model "$1" --net "$2" --addr "$3" --mode "$mode" --workers 1 --log-level error >"$dir/ready" 2>"$dir/err" &
		pid=$!
		;;
	esac
	for _ in $(seq 100); do # until it serves: a request answered
		if taskset -c "$ccpu" "$ys"/refclient "$2" "$3" "$mode" 1 "$size" 0.05 >/dev/null 2>&1; then return; fi
		sleep 0.05
	done
	echo "server $1 on $2 $3 did not come up" >&2
	cat "$dir/err" >&2 || true
	exit 1
}

stop() {
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	rm -f "$dir/s.sock"
}

echo "# $(date -u +%FT%TZ) $(uname -r) mode=$mode size=$size secs=$secs rounds=$rounds server_cpu=$scpu client_cpu=$ccpu"
printf '%-8s %-5s %-6s %5s %10s %10s %8s %8s\n' case server round conns reqs rps us_req us_req_tk
for round in $(seq "$rounds"); do
	for c in $cases; do
		net=${c%:*} conns=${c#*:}
		for srv in $servers; do
			if [ "$net" = unix ]; then addr=$dir/s.sock; else addr=127.0.0.1:$(free_port); fi
			start "$srv" "$net" "$addr"
			taskset -c "$ccpu" "$ys"/refclient "$net" "$addr" "$mode" "$conns" "$size" 0.5 >/dev/null # warm-up
			n0=$(cpu_ns "$pid") t0=$(cpu_ticks "$pid")
			out=$(taskset -c "$ccpu" "$ys"/refclient "$net" "$addr" "$mode" "$conns" "$size" "$secs")
			n1=$(cpu_ns "$pid") t1=$(cpu_ticks "$pid")
			stop
			reqs=$(echo "$out" | sed -n 's/.*reqs=\([0-9]*\).*/\1/p')
			rps=$(echo "$out" | sed -n 's/.*rps=\([0-9.]*\).*/\1/p')
			awk -v c="$net:$conns" -v s="$srv" -v r="$round" -v k="$conns" -v q="$reqs" -v p="$rps" -v n="$((n1 - n0))" -v t="$((t1 - t0))" \
				'BEGIN { printf "%-8s %-5s %-6s %5s %10d %10.0f %8.3f %8.3f\n", c, s, r, k, q, p, n/q/1000, t*10000/q }'
		done
	done
done | tee "$dir/runs"
echo "# medians: server CPU us/request (schedstat), req/s; ratio = server / ref"
awk '!/^#/ && $1 != "case" {
	k = $1 SUBSEP $2; n[k]++; us[k, n[k]] = $7; rp[k, n[k]] = $6; cs[$1] = 1; ss[$2] = 1
}
function med(a, k, m,   i, j, t, v) {
	for (i = 1; i <= m; i++) v[i] = a[k, i]
	for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
	return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
}
END {
	for (c in cs) for (s in ss) if ((c, s) in n) {
		m = n[c, s]; u = med(us, c SUBSEP s, m); r = med(rp, c SUBSEP s, m)
		ref = ((c, "ref") in n) ? med(us, c SUBSEP "ref", n[c, "ref"]) : 0
		printf "%-8s %-10s us_req=%7.3f rps=%9.0f ratio=%5.2f\n", c, s, u, r, ref ? u / ref : 0
	}
}' "$dir/runs" | sort
