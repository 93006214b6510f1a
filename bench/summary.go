package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/montanaflynn/stats"

	"github.com/sockbench/sockbench/internal/human"
)

// CellStats summarises the clean runs of one cell.
type CellStats struct {
	Key     Key
	Runs    int // clean runs
	Bad     int // failed or unclean runs
	Skipped string
	RPS     float64 // median
	RPSMin  float64
	RPSMax  float64
	// Latency percentiles: each the median over the runs, in µs.
	P50, P90, P99, P999, P9999, Max float64
	CPUPerReq                       float64 // median µs
	RSSKB                           float64 // median
	Saturated                       int     // runs where the load generator was saturated
	ClientRuns                      int     // runs labelled client-bound
	Unlabeled                       int     // runs with no bound label (no calibration, or an older CSV)
	Ceiling                         float64 // median calibrated ceiling of the load generator, req/s; NaN when unknown
	Errors                          int64
	Lost                            int64
}

// Bound is the cell's label: server-bound only when every clean run was,
// client-bound when any was (its throughput is then the load generator's,
// a lower bound of the server's), unknown otherwise.
func (c *CellStats) Bound() string {
	switch {
	case c.ClientRuns > 0:
		return BoundClient
	case c.Unlabeled > 0 || c.Runs == 0:
		return BoundUnknown
	}
	return BoundServer
}

// BoundShort is Bound as a table shows it: "server", "client" (or
// "client 2/6" when only some runs were), or "unknown".
func (c *CellStats) BoundShort() string {
	switch c.Bound() {
	case BoundClient:
		if c.ClientRuns < c.Runs {
			return fmt.Sprintf("client %d/%d", c.ClientRuns, c.Runs)
		}
		return "client"
	case BoundServer:
		return "server"
	}
	return BoundUnknown
}

// RPSText is the cell's median throughput as text, ">=" before it when
// the cell was client-bound: the server did at least that much.
func (c *CellStats) RPSText() string {
	if c.Bound() == BoundClient {
		return ">=" + human.Number(c.RPS)
	}
	return human.Number(c.RPS)
}

// Summarise groups rows by cell in a stable order and takes medians
// (github.com/montanaflynn/stats) across the clean runs.
func Summarise(rows []Row) []CellStats {
	idx := map[Key]int{}
	var out []CellStats
	vals := map[Key]map[string][]float64{}
	for i := range rows {
		r := &rows[i]
		if r.Status == StatusPartial {
			continue // the set's marker, not a cell
		}
		j, ok := idx[r.Key]
		if !ok {
			j = len(out)
			idx[r.Key] = j
			out = append(out, CellStats{Key: r.Key})
			vals[r.Key] = map[string][]float64{}
		}
		cs := &out[j]
		switch {
		case r.Status == StatusSkipped:
			cs.Skipped = r.Note
			continue
		case !r.OK():
			cs.Bad++
			continue
		}
		cs.Runs++
		if r.ClientSaturated {
			cs.Saturated++
		}
		switch r.Bound {
		case BoundClient:
			cs.ClientRuns++
		case BoundServer:
		default:
			cs.Unlabeled++
		}
		cs.Errors += r.Errors
		cs.Lost += r.Lost
		v := vals[r.Key]
		for name, x := range map[string]float64{"rps": r.RPS, "p50": r.P50US, "p90": r.P90US, "p99": r.P99US,
			"p999": r.P999US, "p9999": r.P9999US, "max": r.MaxUS, "cpu": r.CPUUSPerReq, "rss": float64(r.ServerRSSKB),
			"ceiling": r.ClientCeilingRPS} {
			if !math.IsNaN(x) && !math.IsInf(x, 0) {
				v[name] = append(v[name], x)
			}
		}
	}
	for i := range out {
		cs := &out[i]
		v := vals[cs.Key]
		med := func(name string) float64 {
			if len(v[name]) == 0 {
				return math.NaN()
			}
			m, err := stats.Median(v[name])
			if err != nil {
				return math.NaN()
			}
			return m
		}
		cs.RPS, cs.P50, cs.P90, cs.P99 = med("rps"), med("p50"), med("p90"), med("p99")
		cs.P999, cs.P9999, cs.Max = med("p999"), med("p9999"), med("max")
		cs.CPUPerReq, cs.RSSKB, cs.Ceiling = med("cpu"), med("rss"), med("ceiling")
		cs.RPSMin, cs.RPSMax = math.NaN(), math.NaN()
		if len(v["rps"]) > 0 {
			cs.RPSMin, _ = stats.Min(v["rps"])
			cs.RPSMax, _ = stats.Max(v["rps"])
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key.Less(out[j].Key) })
	return out
}

// WriteSummary prints what a run found: first, when the set is partial,
// how far it got; then the verdicts in plain words (ComputeVerdicts);
// then the table of every cell, skipped cells, failures and, loudly, any
// run where the load generator was the bottleneck.
func WriteSummary(w io.Writer, rows []Row) {
	if p, ok := PartialOf(rows); ok {
		fmt.Fprintf(w, "PARTIAL RESULTS (%s): the cells below are those measured before it stopped.\n\n", p)
	}
	v := ComputeVerdicts(rows, 0)
	v.WriteText(w)
	limit := map[Key]Shift{}
	for _, c := range v.Cells {
		for m, s := range c.Limit {
			k := c.Key
			k.Model = m
			limit[k] = s
		}
		k := c.Key
		k.Model = LimitModel
		if len(c.Limit) > 0 {
			limit[k] = Shift{1, 1, 1}
		}
	}
	if len(v.Cells) > 0 {
		fmt.Fprintln(w)
	}
	cells := Summarise(rows)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "model\tnet\tmode\tconns\tsize\trate\twork\tblock\truns\treq/s (median)\trange\tp50\tp99\tCPU µs/req\tof limit\tRSS MiB\tbound\t")
	var skipped, bad, saturated, errs, clientBound []string
	clientCPUs := 0
	satRuns, runs := 0, 0
	for _, c := range cells {
		k := c.Key
		if c.Skipped != "" && c.Runs == 0 {
			skipped = append(skipped, fmt.Sprintf("  %s: %s", k, c.Skipped))
			continue
		}
		if c.Bad > 0 {
			bad = append(bad, fmt.Sprintf("  %s: %d run(s) failed or left the server unclean (see the note column)", k, c.Bad))
		}
		if c.Runs == 0 {
			continue
		}
		if c.Errors > 0 {
			errs = append(errs, fmt.Sprintf("  %s: %d failed requests over %d runs (see the note column)", k, c.Errors, c.Runs))
		}
		runs += c.Runs
		satRuns += c.Saturated
		if c.Saturated > 0 {
			saturated = append(saturated, fmt.Sprintf("  %s (%d of %d runs)", k, c.Saturated, c.Runs))
		}
		rate := "closed"
		if k.Rate > 0 {
			rate = human.Number(k.Rate) + "/s"
		}
		rng := "-"
		if !math.IsNaN(c.RPSMin) && c.RPS > 0 && c.Runs > 1 {
			rng = fmt.Sprintf("-%.0f%% +%.0f%%", 100*(1-c.RPSMin/c.RPS), 100*(c.RPSMax/c.RPS-1))
		}
		// A client-bound cell's throughput is the load generator's: the
		// server did at least that much, so it reads as a lower bound.
		rps, bound := c.RPSText(), c.BoundShort()
		if c.Bound() == BoundClient {
			ceil := ""
			if !math.IsNaN(c.Ceiling) {
				ceil = fmt.Sprintf(", the generator's ceiling %s req/s", human.Number(c.Ceiling))
			}
			clientBound = append(clientBound, fmt.Sprintf("  %s (%d of %d runs; %s req/s%s)", k, c.ClientRuns, c.Runs, human.Number(c.RPS), ceil))
		}
		ofLimit := "-"
		if s, ok := limit[k]; ok && !math.IsNaN(s.Est) {
			ofLimit = fmt.Sprintf("%.2f", s.Est)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%dµs\t%dµs\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			k.Model, k.Net, k.Mode, k.Conns, k.Size, rate, k.WorkUS, k.BlockUS, c.Runs, rps, rng,
			human.Micros(c.P50), human.Micros(c.P99), human.Number(c.CPUPerReq), ofLimit, human.Number(c.RSSKB/1024), bound)
	}
	for i := range rows {
		if n := cpuCount(rows[i].ClientCPUList); n > 0 {
			clientCPUs = n
		}
	}
	tw.Flush()
	if len(skipped) > 0 {
		fmt.Fprintf(w, "\nSkipped %d cell(s) that would not fit this machine:\n%s\n", len(skipped), strings.Join(skipped, "\n"))
	}
	if len(bad) > 0 {
		fmt.Fprintf(w, "\nFAILURES:\n%s\n", strings.Join(bad, "\n"))
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nREQUEST ERRORS (wrong, missing or refused replies; UDP loss is counted apart):\n%s\n", strings.Join(errs, "\n"))
	}
	if len(clientBound) > 0 {
		on := ""
		if clientCPUs > 0 {
			on = fmt.Sprintf(" with %s for the load generator", plural(clientCPUs, "CPU"))
		}
		fmt.Fprintf(w, "\nCLIENT-BOUND: %d of %d cells could not be server-bound%s: the generator was saturated or came\n"+
			"within 10%% of its own ceiling (calibrated against a cost-free sink), so their req/s (shown >=) is the\n"+
			"generator's, a lower bound of the server's, not the server's:\n%s\n", len(clientBound), cellCount(cells), on, strings.Join(clientBound, "\n"))
	}
	if len(limit) > 0 {
		fmt.Fprintf(w, "\nof limit: %s's CPU per request over the model's (Hodges-Lehmann over the runs): the share of the\n"+
			"machine's limit the model reaches, what its framework, goroutines or processes cost on top of the kernel.\n", LimitModel)
	}
	if len(saturated) > 0 {
		fmt.Fprintf(w, "\n!!! THE LOAD GENERATOR WAS THE BOTTLENECK in %d of %d runs: it used >= 90%% of its CPUs, so\n"+
			"!!! these cells measure the client as much as the server. Give it more CPUs (--client-cpus)\n"+
			"!!! or read their throughput as a lower bound:\n%s\n", satRuns, runs, strings.Join(saturated, "\n"))
	}
}

// cpuCount counts the CPUs of a list such as "1" or "0-3,6"; 0 for "".
func cpuCount(list string) int {
	cpus, err := ParseCPUs(list)
	if list == "" || err != nil {
		return 0
	}
	return len(cpus)
}

// cellCount counts the cells that ran.
func cellCount(cells []CellStats) int {
	n := 0
	for _, c := range cells {
		if c.Runs > 0 {
			n++
		}
	}
	return n
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
