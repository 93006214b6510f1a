package bench

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// benchUnits are the metrics written per run in Go benchmark format, in
// order, with which way is better. Latencies are written in ns so that
// benchstat's unit tidying shows them as time; the iteration count of each
// line is the number of requests measured.
var benchUnits = []struct {
	unit, better string
	val          func(r *Row) float64
}{
	{"req/s", "higher", func(r *Row) float64 { return r.RPS }},
	{"MB/s", "higher", func(r *Row) float64 { return r.MBps }},
	{"p50-ns", "lower", func(r *Row) float64 { return r.P50US * 1e3 }},
	{"p90-ns", "lower", func(r *Row) float64 { return r.P90US * 1e3 }},
	{"p99-ns", "lower", func(r *Row) float64 { return r.P99US * 1e3 }},
	{"p99.9-ns", "lower", func(r *Row) float64 { return r.P999US * 1e3 }},
	{"max-ns", "lower", func(r *Row) float64 { return r.MaxUS * 1e3 }},
	{"server-cpu-ns/req", "lower", func(r *Row) float64 { return r.CPUUSPerReq * 1e3 }},
	{"server-peak-rss-B", "lower", func(r *Row) float64 { return float64(r.ServerRSSKB) * 1024 }},
	{"errors", "lower", func(r *Row) float64 { return float64(r.Errors) }},
}

// WriteBenchfmt writes the measured rows in Go benchmark format
// (golang.org/x/perf/benchfmt), so `benchstat old.txt new.txt` compares
// two result sets. Config lines that describe the machine and the setup
// (goos, goarch, cpu, host, cores, pinning) are written before the first
// row and again whenever they change; extra holds further config
// (profile) written once at the top. What identifies the build (commit,
// suite_version, go_version) and extra server flags (server_args) are
// what two compared files differ in, so they are written as comment lines
// ("# commit: ..."): benchstat splits its tables by every config key that
// differs, and would print two versions side by side in separate tables
// instead of comparing them. ReadBenchfmt reads them back. Rows that were
// skipped or failed have no measurement and are left out.
func WriteBenchfmt(w io.Writer, rows []Row, extra map[string]string) error {
	bw := bufio.NewWriter(w)
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(bw, "%s: %s\n", configKey(k), configValue(extra[k]))
	}
	for _, u := range benchUnits {
		fmt.Fprintf(bw, "Unit %s better=%s\n", u.unit, u.better)
	}
	fmt.Fprintln(bw, "Unit errors assume=exact")
	var last []string
	for i := range rows {
		r := &rows[i]
		if r.Status == StatusPartial {
			// benchfmt ignores it; ReadBenchfmt reads the set as partial.
			fmt.Fprintf(bw, "%s%s\n", partialPrefix, configValue(r.Note))
			continue
		}
		if !r.OK() {
			continue
		}
		cfg := []string{
			"goos", r.OS, "goarch", r.Arch, "cpu", r.CPUModel, "host", r.Host, "cores", strconv.Itoa(r.Cores),
			// The pinning keeps its config keys from before the CSV's
			// columns became server_cpu_list and client_cpu_list:
			// benchstat puts files whose config keys differ in separate
			// tables, and would stop comparing new files with old ones.
			"server_cpus", r.ServerCPUList, "client_cpus", r.ClientCPUList,
			buildKeyPrefix + "go_version", r.GoVersion, buildKeyPrefix + "suite_version", r.SuiteVersion,
			buildKeyPrefix + "commit", r.Commit, buildKeyPrefix + "server_args", r.ServerArgs,
		}
		for j := 0; j < len(cfg); j += 2 {
			if last == nil || last[j+1] != cfg[j+1] {
				fmt.Fprintf(bw, "%s: %s\n", cfg[j], configValue(cfg[j+1]))
			}
		}
		last = cfg
		iters := r.Requests
		if iters < 1 {
			iters = 1
		}
		fmt.Fprintf(bw, "Benchmark%s %d", r.Key.String(), iters)
		for _, u := range benchUnits {
			v := u.val(r)
			if math.IsNaN(v) || math.IsInf(v, 0) {
				continue
			}
			// 10 significant digits: more than any measurement carries,
			// and no 32238.999999999996 from unit scaling.
			fmt.Fprintf(bw, " %s %s", strconv.FormatFloat(v, 'g', 10, 64), u.unit)
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

// partialPrefix starts the comment line that marks a partial set.
const partialPrefix = "# partial: "

// buildKeyPrefix starts the comment lines that carry a build's identity:
// benchfmt ignores them (a config key must start with a lower-case
// letter), ReadBenchfmt strips the prefix and reads them as config.
const buildKeyPrefix = "# "

// configKey makes a config key benchfmt accepts: no spaces, no upper case
// first letter.
func configKey(k string) string {
	k = strings.Map(func(r rune) rune {
		if r == ' ' || r == ':' || r == '\t' {
			return '_'
		}
		return r
	}, k)
	return strings.ToLower(k[:1]) + k[1:]
}

// configValue keeps a value on one line.
func configValue(v string) string {
	return strings.Join(strings.Fields(v), " ")
}
