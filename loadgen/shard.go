package loadgen

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Several load generators, one result. A run shared by N generators (on
// several machines, or the pods of a Kubernetes Indexed Job) gives each
// its Shard of the connections, of -n and of the open-loop rate; all
// start measuring at the same wall-clock time (Config.StartAt), write
// their latencies as HdrHistogram interval logs (Config.Interval), and
// `sockbench merge` adds the logs up (MergeLogs), refusing logs whose
// windows do not overlap. Percentiles come from the merged histograms,
// never from averaging the shards' percentiles.

// Shard is this generator's part of a run shared by Count generators:
// index Index in 0..Count-1 (a Job's JOB_COMPLETION_INDEX).
type Shard struct {
	Index, Count int
}

// ParseShard reads "i/N" (0 <= i < N).
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(strings.TrimSpace(a))
	n, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n || n > 100000 {
		return Shard{}, errorf(ErrConfig, "--shard %q: want i/N with 0 <= i < N, e.g. 0/4 for the first of four generators", s)
	}
	return Shard{Index: i, Count: n}, nil
}

// String is "i/N", or "" for the zero Shard (a generator alone).
func (s Shard) String() string {
	if s.Count == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%d", s.Index, s.Count)
}

// share is shard i's part of total split N ways: the first total%N
// shards get one more, so the parts add up to total exactly.
func share(total int64, i, n int) int64 {
	part := total / int64(n)
	if int64(i) < total%int64(n) {
		part++
	}
	return part
}

// Apply turns c, which describes the whole run (all generators
// together), into this shard's part: its share of the connections and of
// -n, and of the open-loop rate in proportion to its connections (so every
// connection of the run carries the same rate). The pipeline, sizes,
// duration and warmup are every shard's. Call it once, before Normalize.
func (s Shard) Apply(c *Config) error {
	if s.Count <= 1 {
		c.Shard = s
		return nil
	}
	conns := c.Conns
	if conns == 0 {
		conns = DefaultConns
	}
	if conns < s.Count {
		return errorf(ErrConfig, "-c %d is fewer connections than the %d shards (-c counts the whole run's connections)", conns, s.Count)
	}
	if c.Requests > 0 && c.Requests < int64(s.Count) {
		return errorf(ErrConfig, "-n %d is fewer requests than the %d shards (-n counts the whole run's requests)", c.Requests, s.Count)
	}
	mine := int(share(int64(conns), s.Index, s.Count))
	c.Rate = c.Rate * float64(mine) / float64(conns)
	c.Conns = mine
	if c.Requests > 0 {
		c.Requests = share(c.Requests, s.Index, s.Count)
	}
	c.Shard = s
	return nil
}

// begin waits, once every connection is up, for the time the load should
// start, and returns it and the start of the measurement on the run's
// clock. Without StartAt that is now, and the measurement starts after the
// warmup. With StartAt the measurement starts at StartAt exactly, the
// warmup just before it (shorter if connecting took into it); a StartAt
// already past is an error, since this generator's window would no longer
// be the others'.
func (r *run) begin(ctx context.Context) (t0, measureStart int64, err error) {
	cfg := r.cfg
	if cfg.StartAt.IsZero() {
		t0 = r.now()
		measureStart = t0 + int64(cfg.Warmup)
	} else {
		measureStart = int64(cfg.StartAt.Sub(r.base))
		t0 = max(measureStart-int64(cfg.Warmup), r.now())
		if late := r.now() - measureStart; late >= 0 {
			return 0, 0, fmt.Errorf("--start-at %s passed %v before the load could start (connections were up at %s)",
				cfg.StartAt.UTC().Format(time.RFC3339Nano), time.Duration(late).Round(time.Millisecond), time.Now().UTC().Format(time.RFC3339Nano))
		}
		if wait := time.Duration(t0 - r.now()); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return 0, 0, fmt.Errorf("interrupted while waiting for --start-at %s", cfg.StartAt.UTC().Format(time.RFC3339))
			}
		}
	}
	if cfg.Interval > 0 {
		r.ivl = newIntervals(cfg.Conns, cfg.Interval, measureStart)
	}
	return t0, measureStart, nil
}

// abort ends a run that connected but could not start.
func (r *run) abort(ctx context.Context, rep *Report, err error) (*Report, error) {
	for _, w := range r.workers {
		if w.conn != nil { // the epoll engine has taken its sockets over
			w.conn.Close()
		}
	}
	rep.Failure = err.Error()
	rep.Interrupted = ctx.Err() != nil
	rep.Start = ""
	return rep, errorf(ErrFailed, "%v", err)
}

// intervals records latencies into one histogram per interval of the
// measurement, for the HdrHistogram interval log. Each connection fills
// its own histogram for the interval its replies fall in and hands it
// over, under a lock, only when a reply falls in the next interval: one
// lock a second per connection, none per request.
type intervals struct {
	every int64 // ns
	start int64 // run clock of the measurement's start
	cur   []ivlCur
	mu    sync.Mutex
	done  map[int64]*hdrhistogram.Histogram
}

type ivlCur struct {
	idx int64
	h   *hdrhistogram.PackedHistogram
	_   [48]byte // one connection's slot per cache line
}

func newIntervals(conns int, every time.Duration, start int64) *intervals {
	return &intervals{every: int64(every), start: start, cur: make([]ivlCur, conns), done: map[int64]*hdrhistogram.Histogram{}}
}

// record adds latency v of a reply that arrived at now to connection id's
// interval. Only connection id's receiving goroutine calls it for id.
func (iv *intervals) record(id int, now, v int64) {
	c := &iv.cur[id]
	k := max(now-iv.start, 0) / iv.every
	if c.h == nil {
		c.h = hdrhistogram.NewPacked(histLowest, histHighest, histDigits)
		c.idx = k
	} else if k != c.idx {
		iv.flush(c)
		c.idx = k
	}
	_ = c.h.RecordValue(v)
}

func (iv *intervals) flush(c *ivlCur) {
	if c.h == nil || c.h.TotalCount() == 0 {
		return
	}
	iv.mu.Lock()
	dst := iv.done[c.idx]
	if dst == nil {
		dst = newHist()
		iv.done[c.idx] = dst
	}
	c.h.MergeInto(dst)
	iv.mu.Unlock()
	c.h.Reset()
}

// fillShard records the shard and the interval histograms in rep once
// the run is over.
func (r *run) fillShard(rep *Report) {
	rep.Shard = r.cfg.Shard.String()
	r.ivl.fill(rep, r)
}

// fill hands the intervals to rep once every connection has finished:
// rep.Intervals, in time order, each stamped with its wall-clock start and
// end (the last one ends with the window; replies that came in after it
// are in an interval of their own).
func (iv *intervals) fill(rep *Report, r *run) {
	if iv == nil {
		return
	}
	for i := range iv.cur {
		iv.flush(&iv.cur[i])
	}
	keys := make([]int64, 0, len(iv.done))
	for k := range iv.done {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	winEnd := r.at(r.measureStart).Add(time.Duration(rep.DurationS * 1e9)).UnixMilli()
	for _, k := range keys {
		h := iv.done[k]
		from := r.at(iv.start + k*iv.every).UnixMilli()
		to := r.at(iv.start + (k+1)*iv.every).UnixMilli()
		if winEnd > from && winEnd < to {
			to = winEnd
		}
		h.SetStartTimeMs(from)
		h.SetEndTimeMs(to)
		rep.Intervals = append(rep.Intervals, h)
	}
}

// window is one log's measurement window, in ms since the epoch.
type window struct {
	name       string
	start, end int64
}

func (w window) String() string {
	return fmt.Sprintf("%s %s..%s", w.name, time.UnixMilli(w.start).UTC().Format("15:04:05.000"), time.UnixMilli(w.end).UTC().Format("15:04:05.000"))
}

// checkWindows refuses logs whose measurement windows have no time in
// common: their sum would describe no moment of the server's life (one
// generator ran after another finished). Windows that overlap only in
// part are merged with a warning saying how much they share.
func checkWindows(ws []window) (warnings []string, err error) {
	if len(ws) < 2 {
		return nil, nil
	}
	from, to := ws[0].start, ws[0].end
	for _, w := range ws[1:] {
		from, to = max(from, w.start), min(to, w.end)
	}
	if to <= from {
		parts := make([]string, len(ws))
		for i, w := range ws {
			parts[i] = w.String()
		}
		return nil, fmt.Errorf("loadgen: the logs' measurement windows do not overlap (%s UTC): they measured different times, so they cannot be added up; run the generators together with the same --start-at",
			strings.Join(parts, ", "))
	}
	for _, w := range ws {
		if span := w.end - w.start; span > 0 && float64(to-from) < 0.9*float64(span) {
			warnings = append(warnings, fmt.Sprintf("the logs share only %.1fs of their windows (%s is %.1fs long): start them together with --start-at",
				float64(to-from)/1e3, w.name, float64(span)/1e3))
			break
		}
	}
	return warnings, nil
}

// checkShards warns when the logs' --shard values do not make one whole
// run: a shard missing or given twice.
func checkShards(shards []string) []string {
	seen := map[int]int{}
	count := 0
	for _, s := range shards {
		if s == "" {
			continue
		}
		sh, err := ParseShard(s)
		if err != nil {
			continue
		}
		if count != 0 && sh.Count != count {
			return []string{fmt.Sprintf("the logs come from runs split different ways (%s): they are not the shards of one run", strings.Join(shards, ", "))}
		}
		count = sh.Count
		seen[sh.Index]++
	}
	if count == 0 {
		return nil
	}
	var missing, twice []string
	for i := 0; i < count; i++ {
		switch n := seen[i]; {
		case n == 0:
			missing = append(missing, strconv.Itoa(i))
		case n > 1:
			twice = append(twice, strconv.Itoa(i))
		}
	}
	var w []string
	if len(missing) > 0 {
		w = append(w, fmt.Sprintf("shards %s of %d are missing: the merged report covers only part of the run", strings.Join(missing, ", "), count))
	}
	if len(twice) > 0 {
		w = append(w, fmt.Sprintf("shards %s of %d appear more than once", strings.Join(twice, ", "), count))
	}
	return w
}
