package loadgen

import (
	"encoding/json"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of one load run: what was asked, what was measured,
// and what went wrong. Its JSON form (`sockbench load --format json`) is the
// contract with the bench orchestrator; the keys are stable, new ones are
// only ever added.
//
// Counting rules, so the numbers add up:
//   - A request belongs to the measurement when it was due (open loop) or
//     sent (closed loop) after the warmup and before the end of the run;
//     requests of the warmup are counted apart, in Warmup, never in the
//     figures of the measurement.
//   - Requests counts replies that arrived and matched the expected bytes.
//   - Errors counts failed requests (and failed connection attempts), by
//     kind in ErrorsByKind; Mismatches and stream Timeouts are included in it.
//   - UDP loss is a property of the transport, not an error: a datagram
//     whose reply did not come within --timeout counts in Lost and Timeouts,
//     not in Errors. A reply to a datagram that differs from the request's
//     expected reply (even one whose sequence tag is unreadable) is a
//     mismatch, not a loss.
type Report struct {
	Target    string  `json:"target"`     // as given, e.g. tcp://127.0.0.1:7000
	Net       string  `json:"net"`        // tcp, udp or unix
	Mode      string  `json:"mode"`       // echo or upper
	Loop      string  `json:"loop"`       // closed, or open when Rate > 0
	Conns     int     `json:"conns"`      // connections asked for
	ConnsOK   int     `json:"conns_ok"`   // connections that were established
	Pipeline  int     `json:"pipeline"`   // requests in flight per connection
	Size      int     `json:"size"`       // request size in bytes ('\n' included); for MIN:MAX the rounded mean
	SizeMin   int     `json:"size_min"`   // smallest request size
	SizeMax   int     `json:"size_max"`   // largest request size
	Seed      uint64  `json:"seed"`       // seed of the request contents and sizes
	Rate      float64 `json:"rate"`       // target req/s of the open loop; 0 for closed loop
	WarmupS   float64 `json:"warmup_s"`   // warmup before measuring, seconds
	DurationS float64 `json:"duration_s"` // length of the measurement window, seconds
	Engine    string  `json:"engine"`     // the client that ran: "epoll" (event loops on raw sockets, Linux) or "goroutines" (portable)

	Counts // what the measurement counted; its keys sit at the top level

	// Warmup counts what happened during the warmup. None of it is part of
	// the figures above; it is there so that a run which fails before its
	// measurement begins says what went wrong.
	Warmup Counts `json:"warmup"`

	RPS  float64 `json:"rps"`  // Requests / DurationS
	MBps float64 `json:"mbps"` // Bytes / DurationS / 1e6 (one direction)

	Latency Summary  `json:"latency_us"`  // from due time in open loop, from send in closed loop
	Service *Summary `json:"service_us"`  // open loop only: from actual send to reply; null otherwise
	SendLag *Summary `json:"send_lag_us"` // open loop only: how late the generator sent (part of Latency); null otherwise
	Connect Summary  `json:"connect_us"`  // connection set-up time (UDP: round trip of a first probe datagram)

	ClientCPUSeconds float64  `json:"client_cpu_s"`     // user+system CPU seconds of this process in the window
	ClientCPUCount   int      `json:"client_cpu_count"` // CPUs this process could use
	ClientSpinS      float64  `json:"client_spin_s"`    // of ClientCPUSeconds, time the open loop spent yield-spinning just before due times
	ClientSaturated  bool     `json:"client_saturated"` // busy (CPU less spin) >= 90% of ClientCPUCount: the generator may be the bottleneck
	RateHeld         bool     `json:"rate_held"`        // open loop kept its schedule (always true for closed loop)
	Interrupted      bool     `json:"interrupted"`      // stopped early by a signal or cancellation
	Failure          string   `json:"failure"`          // why the run failed, "" when it did not
	Warnings         []string `json:"warnings"`         // things a reader must know; never null

	// Calibration is set by Calibrate only: the generator's own ceiling.
	Calibration *Calibration `json:"calibration,omitempty"`

	Start   string `json:"start"`   // UTC time the measurement began, RFC 3339
	Sources int    `json:"sources"` // number of runs merged into this report (1 for a single run)

	Shard string `json:"shard,omitempty"` // i/N: this generator's part of a run shared by N (--shard)

	// Label names the server under test (load --label): `sockbench report`
	// and `compare` read it as the model of the run. Host is the machine
	// the generator ran on, so compare can tell runs of two machines apart.
	Label string `json:"label,omitempty"`
	Host  string `json:"host,omitempty"`

	// Histograms in nanoseconds, for --hdr-out and merging; not in JSON.
	LatencyHist *hdrhistogram.Histogram `json:"-"`
	ServiceHist *hdrhistogram.Histogram `json:"-"`
	ConnectHist *hdrhistogram.Histogram `json:"-"`
	SendLagHist *hdrhistogram.Histogram `json:"-"`
	// Intervals are the latency histogram cut into Config.Interval
	// pieces, in time order (nil when no interval was asked).
	Intervals []*hdrhistogram.Histogram `json:"-"`

	early int64 // open-loop requests sent before they were due: never (the tests check)
}

// Counts are the additive counters of a run. A run sums them over its
// connections and `sockbench merge` over its runs, both with Add.
type Counts struct {
	Requests     int64            `json:"requests"`       // validated replies
	Bytes        int64            `json:"bytes"`          // bytes of validated replies
	Errors       int64            `json:"errors"`         // failed requests and connections
	ErrorsByKind map[string]int64 `json:"errors_by_kind"` // kind -> count; empty when none
	Mismatches   int64            `json:"mismatches"`     // replies that differed from the expected bytes
	Examples     []string         `json:"mismatch_examples"`
	Lost         int64            `json:"lost"`       // UDP: datagrams never answered within --timeout
	Duplicated   int64            `json:"duplicated"` // UDP: replies received twice
	Reordered    int64            `json:"reordered"`  // UDP: replies that arrived after a later one
	Late         int64            `json:"late"`       // UDP: replies that arrived after being counted lost
	Timeouts     int64            `json:"timeouts"`   // requests that hit --timeout
	Sent         int64            `json:"sent"`       // requests sent
}

// newCounts returns Counts with an empty, non-nil map and list, as the
// JSON contract wants them.
func newCounts() Counts {
	return Counts{ErrorsByKind: map[string]int64{}, Examples: []string{}}
}

// Add adds o into c, keeping at most maxExamples mismatch examples.
func (c *Counts) Add(o *Counts, maxExamples int) {
	c.Requests += o.Requests
	c.Bytes += o.Bytes
	c.Errors += o.Errors
	if c.ErrorsByKind == nil {
		c.ErrorsByKind = map[string]int64{}
	}
	for k, n := range o.ErrorsByKind {
		c.ErrorsByKind[k] += n
	}
	c.Mismatches += o.Mismatches
	for _, e := range o.Examples {
		if len(c.Examples) < maxExamples {
			c.Examples = append(c.Examples, e)
		}
	}
	c.Lost += o.Lost
	c.Duplicated += o.Duplicated
	c.Reordered += o.Reordered
	c.Late += o.Late
	c.Timeouts += o.Timeouts
	c.Sent += o.Sent
}

// UnmarshalJSON reads a Report, also from the JSON of earlier versions,
// whose CPU count was "client_cpus".
func (r *Report) UnmarshalJSON(b []byte) error {
	type plain Report // no methods: no recursion
	aux := struct {
		*plain
		OldCPUs *int `json:"client_cpus"`
	}{plain: (*plain)(r)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if r.ClientCPUCount == 0 && aux.OldCPUs != nil {
		r.ClientCPUCount = *aux.OldCPUs
	}
	return nil
}

// Summary describes one latency distribution in microseconds.
type Summary struct {
	Count  int64   `json:"count"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	P999   float64 `json:"p999"`
	P9999  float64 `json:"p9999"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"`
}

// Histogram geometry shared by every recorder: nanoseconds from 1 ns to one
// hour with three significant digits (0.1% resolution at any magnitude).
const (
	histLowest  = 1
	histHighest = int64(3600e9)
	histDigits  = 3
)

// newHist returns an empty dense histogram with the shared geometry.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// Summarize turns a nanosecond histogram into a microsecond Summary.
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return Summary{
		Count:  h.TotalCount(),
		P50:    us(h.ValueAtPercentile(50)),
		P90:    us(h.ValueAtPercentile(90)),
		P99:    us(h.ValueAtPercentile(99)),
		P999:   us(h.ValueAtPercentile(99.9)),
		P9999:  us(h.ValueAtPercentile(99.99)),
		Max:    us(h.Max()),
		Mean:   h.Mean() / 1e3,
		Stddev: h.StdDev() / 1e3,
	}
}
