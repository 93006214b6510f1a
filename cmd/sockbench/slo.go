package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sockbench/sockbench/internal/human"
	"github.com/sockbench/sockbench/loadgen"
)

// exitSLO is load's exit status when the run completed but an --slo
// threshold failed (k6 uses 99 for the same; 3 keeps to the small
// numbers: 1 failed run, 2 bad input).
const exitSLO = 3

// sloMetricNames lists the metrics --slo knows, for its errors.
const sloMetricNames = "p50, p90, p95, p99, p99.9, p99.99, max, mean, p(N), rps, mbps, errors, lost, error_rate, loss_rate"

// threshold is one parsed --slo condition, as k6 thresholds are: a
// metric, a comparison and a value.
type threshold struct {
	text   string // as given, trimmed
	metric string // canonical name: p99, rps, error_rate...
	pct    float64
	op     string
	value  float64 // µs for latency, a fraction for rates
}

// sloMetric is how a metric's value is read and shown.
type sloMetric struct {
	kind string // "latency", "number", "count" or "rate"
	get  func(r *loadgen.Report) float64
}

var sloMetrics = map[string]sloMetric{
	"rps":        {"number", func(r *loadgen.Report) float64 { return r.RPS }},
	"mbps":       {"number", func(r *loadgen.Report) float64 { return r.MBps }},
	"errors":     {"count", func(r *loadgen.Report) float64 { return float64(r.Errors) }},
	"lost":       {"count", func(r *loadgen.Report) float64 { return float64(r.Lost) }},
	"error_rate": {"rate", func(r *loadgen.Report) float64 { return ratio(r.Errors, r.Requests+r.Errors) }},
	"loss_rate":  {"rate", func(r *loadgen.Report) float64 { return ratio(r.Lost, r.Sent) }},
	"mean":       {"latency", func(r *loadgen.Report) float64 { return r.Latency.Mean }},
	"max":        {"latency", func(r *loadgen.Report) float64 { return r.Latency.Max }},
}

// latencyAliases are the percentile names accepted besides p(N).
var latencyAliases = map[string]float64{"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p99.9": 99.9, "p999": 99.9, "p99.99": 99.99, "p9999": 99.99}

func ratio(a, b int64) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// parseSLO parses an --slo expression; the error names the part that is
// wrong and what is wanted.
func parseSLO(s string) ([]threshold, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--slo is empty: want thresholds such as 'p99<1ms,errors=0,rps>=50000'")
	}
	var out []threshold
	for _, part := range strings.Split(s, ",") {
		t, err := parseThreshold(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("--slo %q: %v (each threshold is METRIC OP VALUE, e.g. p99<1ms; see 'sockbench load --help')", strings.TrimSpace(part), err)
		}
		out = append(out, t)
	}
	return out, nil
}

func parseThreshold(s string) (threshold, error) {
	t := threshold{text: s}
	i := strings.IndexAny(s, "<>=!")
	if i <= 0 {
		if s == "" {
			return t, fmt.Errorf("an empty threshold")
		}
		return t, fmt.Errorf("no comparison (<, <=, >, >=, == or !=)")
	}
	name := strings.ToLower(strings.TrimSpace(s[:i]))
	rest := s[i:]
	for _, op := range []string{"<=", ">=", "==", "!=", "<", ">", "="} {
		if strings.HasPrefix(rest, op) {
			t.op, rest = op, strings.TrimSpace(rest[len(op):])
			break
		}
	}
	if t.op == "=" {
		t.op = "=="
	}
	if t.op == "" || strings.ContainsAny(rest[:min(1, len(rest))], "<>=!") {
		return t, fmt.Errorf("bad comparison in %q", s[i:])
	}
	if rest == "" {
		return t, fmt.Errorf("no value after %s", t.op)
	}
	kind := ""
	switch p, ok := latencyAliases[name]; {
	case ok:
		t.metric, t.pct, kind = name, p, "latency"
	case strings.HasPrefix(name, "p(") && strings.HasSuffix(name, ")"):
		p, err := strconv.ParseFloat(name[2:len(name)-1], 64)
		if err != nil || p <= 0 || p > 100 {
			return t, fmt.Errorf("percentile %q: want p(N) with 0 < N <= 100", name)
		}
		t.metric, t.pct, kind = name, p, "latency"
	default:
		m, ok := sloMetrics[name]
		if !ok {
			return t, fmt.Errorf("unknown metric %q (want one of %s)", name, sloMetricNames)
		}
		t.metric, kind = name, m.kind
	}
	v, err := parseSLOValue(kind, rest)
	if err != nil {
		return t, err
	}
	t.value = v
	return t, nil
}

// parseSLOValue reads a threshold's value: a duration in µs for latency,
// a fraction for a rate, a number (k, M) or a whole count.
func parseSLOValue(kind, s string) (float64, error) {
	switch kind {
	case "latency":
		d, err := time.ParseDuration(strings.ReplaceAll(s, "µ", "u"))
		if err != nil {
			if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
				return 0, fmt.Errorf("latency %q has no unit: give one, such as %sms or %sus", s, s, s)
			}
			return 0, fmt.Errorf("latency %q: want a duration such as 500us, 1ms or 1.5s", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("latency %q is negative", s)
		}
		return float64(d) / 1e3, nil
	case "rate":
		pct := strings.HasSuffix(s, "%")
		f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || f < 0 || math.IsNaN(f) {
			return 0, fmt.Errorf("rate %q: want a fraction such as 0.001 or a percentage such as 0.1%%", s)
		}
		if pct {
			f /= 100
		}
		if f > 1 {
			return 0, fmt.Errorf("rate %q is more than 100%%", s)
		}
		return f, nil
	case "count":
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("count %q: want a whole number such as 0", s)
		}
		return float64(n), nil
	}
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("value %q: want a number such as 50000 or 50k", s)
	}
	return f * mult, nil
}

// sloResult is one threshold judged on a run.
type sloResult struct {
	t      threshold
	actual float64
	ok     bool
}

// judge evaluates every threshold on rep.
func judge(ts []threshold, rep *loadgen.Report) []sloResult {
	var out []sloResult
	for _, t := range ts {
		var v float64
		if t.pct > 0 {
			switch {
			case rep.LatencyHist != nil && rep.LatencyHist.TotalCount() > 0:
				v = float64(rep.LatencyHist.ValueAtPercentile(t.pct)) / 1e3
				if t.pct == 100 {
					v = float64(rep.LatencyHist.Max()) / 1e3
				}
			default:
				v = math.NaN() // nothing measured: no threshold on latency holds
			}
		} else {
			v = sloMetrics[t.metric].get(rep)
		}
		ok := false
		switch t.op {
		case "<":
			ok = v < t.value
		case "<=":
			ok = v <= t.value
		case ">":
			ok = v > t.value
		case ">=":
			ok = v >= t.value
		case "==":
			ok = v == t.value
		case "!=":
			ok = v != t.value
		}
		out = append(out, sloResult{t, v, ok && !math.IsNaN(v)})
	}
	return out
}

// String says a result in one line: "p99<1ms: ok (p99 412µs)".
func (r sloResult) String() string {
	state := "ok"
	if !r.ok {
		state = "FAILED"
	}
	return fmt.Sprintf("slo %s: %s (%s %s)", r.t.text, state, r.t.metric, r.t.show(r.actual))
}

// show formats a measured value of the threshold's metric.
func (t threshold) show(v float64) string {
	switch {
	case math.IsNaN(v):
		return "not measured"
	case t.pct > 0 || t.metric == "mean" || t.metric == "max":
		return human.Micros(v)
	case t.metric == "error_rate" || t.metric == "loss_rate":
		return strconv.FormatFloat(v*100, 'g', 3, 64) + "%"
	case t.metric == "errors" || t.metric == "lost":
		return human.Count(v)
	}
	return human.Number(v)
}

// namesErrors reports whether the thresholds judge request errors
// themselves (then an error is a failure only if a threshold says so).
func namesErrors(ts []threshold) bool {
	for _, t := range ts {
		if t.metric == "errors" || t.metric == "error_rate" {
			return true
		}
	}
	return false
}
