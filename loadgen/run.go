package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sockbench/sockbench/protocol"
)

// fdReserve is how many descriptors beyond one per connection a run needs
// (stdio, the runtime's poller, output files).
const fdReserve = 64

// dialParallel bounds concurrent connection attempts, so a run with 10,000
// connections does not overflow the server's accept backlog all at once.
const dialParallel = 128

// lateSend is how far past its due time an open-loop request may go out
// before it counts as late for the rate_held verdict. It is well above the
// jitter of Go's timers on a busy machine (up to a few milliseconds), so
// only real falling behind counts; the send lag summary shows the rest.
const lateSend = 10 * time.Millisecond

// minCPUWindow is the shortest measurement whose CPU use is judged for
// client_saturated: rusage advances in scheduler ticks of up to 10 ms, so a
// shorter window gives figures like 6700% of the CPUs.
const minCPUWindow = 100 * time.Millisecond

// run is the shared state of one load run.
type run struct {
	cfg  *Config
	gen  *content
	base time.Time // the run's clock: nanoseconds since base

	measureStart int64     // end of warmup
	end          int64     // end of the measurement window; MaxInt64 with -n
	pacer        pacer     // open loop only
	tokens       chan slot // open loop: due requests from dispatch
	tickets      atomic.Int64

	stop     chan struct{} // closed on cancellation
	stopping atomic.Bool
	live     *liveHist // measured latencies for the progress line; nil unless it is shown
	warm     *liveHist // the same for the warmup

	ivl *intervals // measured latencies per interval for --hdr-out; nil unless asked (shard.go)

	tmpDir          string // unixgram: where the client sockets live
	workers         []*worker
	connectFailed   int
	firstConnectErr error
}

// now returns nanoseconds on the run's clock (monotonic).
func (r *run) now() int64 { return int64(time.Since(r.base)) }

// at converts a time on the run's clock back to a time.Time (for deadlines).
func (r *run) at(t int64) time.Time { return r.base.Add(time.Duration(t)) }

// claimClosed decides whether a closed-loop connection may send another
// request now, and whether that request is measured.
func (r *run) claimClosed() (t int64, counted, ok bool) {
	t = r.now()
	if t >= r.end || r.stopping.Load() {
		return t, false, false
	}
	if t < r.measureStart {
		return t, false, true
	}
	if r.cfg.Requests > 0 && r.tickets.Add(1) > r.cfg.Requests {
		return t, false, false
	}
	return t, true, true
}

// worker is one connection and everything it measures. Its fields are
// written only by the connection's own goroutines and read by Run once they
// have finished (wg.Wait orders the two); the atomics are for the progress
// line.
type worker struct {
	id   int
	r    *run
	conn net.Conn

	connectNs int64
	lat, svc  *hdrhistogram.PackedHistogram
	lag       *hdrhistogram.PackedHistogram // open loop: send time minus due time

	done atomic.Int64 // measured replies so far, for the progress line

	// Owned by the receiving side.
	requests, bytes     int64
	mismatches          int64
	timeouts, lost      int64
	duplicated, reorder int64
	late                int64
	otherMode           int64 // mismatches that match the other mode exactly
	errs                [numKinds]int64
	examples            []string
	lastDone            int64 // run clock of the last measured reply
	failure             error // why this connection ended early, nil if it did not

	// Owned by the sending side.
	sent      int64
	lateSends int64
	maxLag    int64

	mu    sync.Mutex // guards cause, set once on the error path only
	cause error
	dead  chan struct{}
	once  sync.Once
	_     [64]byte // keep hot counters of neighbouring workers off one cache line
}

// kill ends the connection once, remembering the first cause.
func (w *worker) kill(cause error) {
	w.once.Do(func() {
		w.mu.Lock()
		w.cause = cause
		w.mu.Unlock()
		close(w.dead)
		w.conn.Close()
	})
}

// firstCause returns the error that killed the connection, if any.
func (w *worker) firstCause() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cause
}

// record stores one measured, validated reply.
func (w *worker) record(now, intended, sent int64, size int) {
	w.requests++
	w.bytes += int64(size)
	w.lastDone = now
	lat := now - intended
	if lat < histLowest {
		lat = histLowest
	}
	_ = w.lat.RecordValue(min(lat, histHighest))
	if w.r.ivl != nil { // interval log (shard.go)
		w.r.ivl.record(w.id, now, min(lat, histHighest))
	}
	if w.svc != nil {
		s := now - sent
		if s < histLowest {
			s = histLowest
		}
		_ = w.svc.RecordValue(min(s, histHighest))
		_ = w.lag.RecordValue(min(max(sent-intended, histLowest), histHighest))
	}
	if w.r.live != nil {
		w.r.live.record(lat)
	}
	w.done.Add(1)
}

// mismatch counts a wrong reply and keeps the first few as examples.
// datagram says which kind of request seq was, to recognise a server
// running in the other mode.
func (w *worker) mismatch(seq uint64, want, got []byte, datagram bool) {
	w.mismatches++
	if want != nil && w.r.gen.otherMode(got, w.id, seq, datagram) {
		w.otherMode++
	}
	w.errs[kindMismatch]++
	if len(w.examples) < w.r.cfg.MaxExamples {
		w.examples = append(w.examples, describeMismatch(w.id, seq, want, got))
	}
}

// describeMismatch shows where a reply first differs from the expected one.
func describeMismatch(conn int, seq uint64, want, got []byte) string {
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	from := max(0, i-8)
	excerpt := func(b []byte) string {
		if from >= len(b) {
			return `""`
		}
		to := min(len(b), from+24)
		s := fmt.Sprintf("%q", b[from:to])
		if to < len(b) {
			s += "..."
		}
		return s
	}
	return fmt.Sprintf("conn %d request %d: %d bytes back for %d sent, first difference at byte %d: want %s, got %s",
		conn, seq, len(got), len(want), i, excerpt(want), excerpt(got))
}

// Run connects to the target, runs the load and returns what it measured.
//
// Errors: ErrConfig for a bad Config, ErrFileLimit when the descriptor limit
// is too low, ErrUnreachable when no connection could be made (within
// Timeout), ErrFailed when connections were lost during the run or no valid
// reply came back. The Report is not nil whenever load was sent, even with
// an error: partial results are still results.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	if err := raiseFileLimit(cfg.Conns + fdReserve); err != nil {
		return nil, err
	}
	r := &run{
		cfg:  &cfg,
		gen:  newContent(cfg.Seed, cfg.Mode, cfg.SizeMin, cfg.SizeMax),
		base: time.Now(),
		stop: make(chan struct{}),
	}
	if cfg.Progress != nil {
		r.live, r.warm = &liveHist{}, &liveHist{}
	}
	if cfg.network == "unixgram" {
		dir, err := os.MkdirTemp("", "sbload")
		if err != nil {
			return nil, fmt.Errorf("%w: client socket directory: %v", ErrFailed, err)
		}
		r.tmpDir = dir
		defer os.RemoveAll(dir)
	}

	connectHist, firstErr := r.connectAll(ctx)
	rep := r.newReport()
	rep.ConnectHist = connectHist
	if len(r.workers) == 0 {
		rep.Failure = fmt.Sprintf("cannot connect to %s: %v", cfg.Target, firstErr)
		if ctx.Err() != nil {
			rep.Interrupted = true
			return rep, fmt.Errorf("%w: interrupted while connecting", ErrFailed)
		}
		return rep, fmt.Errorf("%w: %s: %v", ErrUnreachable, cfg.Target, firstErr)
	}

	// The clock of the load starts now that every connection is up, or at
	// --start-at less the warmup (shard.go).
	t0, measureStart, err := r.begin(ctx)
	if err != nil {
		return r.abort(ctx, rep, err)
	}
	r.measureStart = measureStart
	r.end = math.MaxInt64
	if cfg.Duration > 0 {
		r.end = r.measureStart + int64(cfg.Duration)
	}
	quit, dispatched := make(chan struct{}), make(chan struct{})
	if cfg.Rate > 0 {
		r.pacer = newConstantPacer(cfg.Rate, t0, r.measureStart, r.end, cfg.Requests)
		r.tokens = make(chan slot, min(len(r.workers)*cfg.Pipeline, 1<<16))
		go func() { r.dispatch(r.tokens, quit); close(dispatched) }()
	} else {
		close(dispatched)
	}

	var wg sync.WaitGroup
	finished := make(chan struct{})
	for _, w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if cfg.datagram() {
				w.runDatagram()
			} else {
				w.runStream()
			}
		}()
	}
	go func() { wg.Wait(); close(finished) }()

	// Watch the clock: sample CPU at the start of the measurement, show
	// progress, and stop everything on cancellation.
	var cpu0, cpu1 time.Duration
	cpuSampled := false
	var tick *time.Ticker
	var tickC <-chan time.Time
	if cfg.Progress != nil {
		tick = time.NewTicker(time.Second)
		defer tick.Stop()
		tickC = tick.C
	}
	measure := time.NewTimer(time.Duration(r.measureStart - r.now()))
	defer measure.Stop()
	prog := progress{r: r}
	ctxDone := ctx.Done()
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-measure.C:
			cpu0, cpuSampled = cpuTime(), true
		case <-tickC:
			prog.print(cfg.Progress)
		case <-ctxDone:
			ctxDone = nil
			rep.Interrupted = true
			r.stopping.Store(true)
			close(r.stop)
			past := time.Unix(1, 0)
			for _, w := range r.workers {
				w.conn.SetDeadline(past)
			}
		}
	}
	stopAt := r.now()
	close(quit)
	<-dispatched
	if !cpuSampled { // the run ended before the warmup did
		cpu0 = cpuTime()
	}
	startWall := r.at(r.measureStart) // wall clock of the measurement's start
	cpu1 = cpuTime()
	if cfg.Progress != nil {
		prog.clear(cfg.Progress)
	}
	for _, w := range r.workers {
		w.conn.Close()
	}

	// The window: the planned one, cut short when the run ended early; with
	// -n, up to the last measured reply.
	windowEnd := min(r.end, stopAt)
	if cfg.Requests > 0 {
		windowEnd = r.measureStart
		for _, w := range r.workers {
			windowEnd = max(windowEnd, w.lastDone)
		}
	}
	window := time.Duration(max(windowEnd-r.measureStart, 0))
	r.fill(rep, window, cpu1-cpu0, startWall)
	r.fillShard(rep) // --shard and the interval histograms for --hdr-out (shard.go)
	return rep, r.verdict(rep)
}

// connectAll dials every connection (at most dialParallel at a time) and
// returns the connect-time histogram and the first error seen.
func (r *run) connectAll(ctx context.Context) (*hdrhistogram.Histogram, error) {
	cfg := r.cfg
	hist := newHist()
	var (
		mu       sync.Mutex
		firstErr error
		failed   int
		wg       sync.WaitGroup
		sem      = make(chan struct{}, dialParallel)
	)
	conns := make([]*worker, cfg.Conns)
	d := net.Dialer{Timeout: cfg.Timeout}
	for i := range cfg.Conns {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if i == 1 {
			// The first connection goes alone: if the target is
			// unreachable, say so within Timeout instead of after
			// Conns/dialParallel rounds of timeouts.
			wg.Wait()
			if conns[0] == nil {
				<-sem
				break
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			c, err := r.dial(ctx, &d, i)
			if err == nil && cfg.datagram() {
				err = r.probe(ctx, c, i)
			}
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if c != nil {
					c.Close()
				}
				failed++
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			_ = hist.RecordValue(max(int64(took), histLowest))
			conns[i] = &worker{id: i, r: r, conn: c, connectNs: int64(took), dead: make(chan struct{})}
		}()
	}
	wg.Wait()
	for _, w := range conns {
		if w != nil {
			w.lat = hdrhistogram.NewPacked(histLowest, histHighest, histDigits)
			if cfg.Rate > 0 {
				w.svc = hdrhistogram.NewPacked(histLowest, histHighest, histDigits)
				w.lag = hdrhistogram.NewPacked(histLowest, histHighest, histDigits)
			}
			r.workers = append(r.workers, w)
		}
	}
	r.connectFailed = failed
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	r.firstConnectErr = firstErr
	return hist, firstErr
}

// dial opens connection i. A unixgram client must bind a path of its own
// for the server to answer to: one per connection, in a private temporary
// directory that Run removes at the end.
func (r *run) dial(ctx context.Context, d *net.Dialer, i int) (net.Conn, error) {
	if r.cfg.network != "unixgram" {
		return d.DialContext(ctx, r.cfg.network, r.cfg.address)
	}
	laddr := &net.UnixAddr{Name: filepath.Join(r.tmpDir, "c"+strconv.Itoa(i)), Net: "unixgram"}
	c, err := net.DialUnix("unixgram", laddr, &net.UnixAddr{Name: r.cfg.address, Net: "unixgram"})
	if err != nil {
		return nil, err // not a typed nil in a non-nil net.Conn
	}
	return c, nil
}

// probeSeq marks the datagrams of the UDP reachability probe; replies with
// such tags are never counted.
const probeSeq = uint64(1) << 63

// probe checks that a UDP target answers at all, the datagram analogue of a
// TCP handshake: it sends a small valid request until one reply comes back,
// giving up after Timeout.
func (r *run) probe(ctx context.Context, c net.Conn, conn int) error {
	deadline := time.Now().Add(r.cfg.Timeout)
	buf := make([]byte, r.cfg.SizeMax+1)
	msg := r.gen.datagram(nil, conn, probeSeq)
	retry := max(r.cfg.Timeout/8, 20*time.Millisecond)
	var lastErr error
	for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		c.SetReadDeadline(minTime(deadline, time.Now().Add(retry)))
		for {
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					lastErr = fmt.Errorf("no reply to a UDP datagram within %v", r.cfg.Timeout)
					break
				}
				return err
			}
			if seq, ok := parseTag(buf[:n]); ok && seq == probeSeq {
				c.SetReadDeadline(time.Time{})
				return nil
			}
		}
	}
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return lastErr
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// newReport fills in what was asked.
func (r *run) newReport() *Report {
	c := r.cfg
	rep := &Report{
		Target:       c.Target,
		Net:          c.network,
		Mode:         c.Mode.String(),
		Loop:         "closed",
		Conns:        c.Conns,
		ConnsOK:      len(r.workers),
		Pipeline:     c.Pipeline,
		Size:         (c.SizeMin + c.SizeMax + 1) / 2,
		SizeMin:      c.SizeMin,
		SizeMax:      c.SizeMax,
		Seed:         c.Seed,
		Rate:         c.Rate,
		WarmupS:      c.Warmup.Seconds(),
		ErrorsByKind: map[string]int64{},
		Examples:     []string{},
		Warnings:     []string{},
		RateHeld:     true,
		ClientCPUs:   usableCPUs(),
		Sources:      1,
		LatencyHist:  newHist(),
	}
	if c.Rate > 0 {
		rep.Loop = "open"
		rep.ServiceHist = newHist()
		rep.SendLagHist = newHist()
	}
	if r.connectFailed > 0 {
		rep.Errors += int64(r.connectFailed)
		rep.ErrorsByKind[kindConnect.String()] += int64(r.connectFailed)
	}
	return rep
}

// fill merges every worker's measurements into rep.
func (r *run) fill(rep *Report, window, cpu time.Duration, startWall time.Time) {
	var sent, lateSends, maxLag, otherMode int64
	var failures []string
	for _, w := range r.workers {
		rep.Requests += w.requests
		rep.Bytes += w.bytes
		rep.Mismatches += w.mismatches
		rep.Timeouts += w.timeouts
		rep.Lost += w.lost
		rep.Duplicated += w.duplicated
		rep.Reordered += w.reorder
		rep.Late += w.late
		for k, n := range w.errs {
			if n > 0 {
				rep.ErrorsByKind[errKind(k).String()] += n
				rep.Errors += n
			}
		}
		for _, e := range w.examples {
			if len(rep.Examples) < r.cfg.MaxExamples {
				rep.Examples = append(rep.Examples, e)
			}
		}
		w.lat.MergeInto(rep.LatencyHist)
		if w.svc != nil {
			w.svc.MergeInto(rep.ServiceHist)
			w.lag.MergeInto(rep.SendLagHist)
		}
		sent += w.sent
		otherMode += w.otherMode
		lateSends += w.lateSends
		maxLag = max(maxLag, w.maxLag)
		if w.failure != nil {
			failures = append(failures, fmt.Sprintf("conn %d: %v", w.id, w.failure))
		}
	}
	rep.Sent = sent
	rep.DurationS = window.Seconds()
	rep.Start = startWall.UTC().Format(time.RFC3339Nano)
	if rep.DurationS > 0 {
		rep.RPS = float64(rep.Requests) / rep.DurationS
		rep.MBps = float64(rep.Bytes) / rep.DurationS / 1e6
	}
	rep.Latency = Summarize(rep.LatencyHist)
	rep.Connect = Summarize(rep.ConnectHist)
	if rep.ServiceHist != nil {
		s, l := Summarize(rep.ServiceHist), Summarize(rep.SendLagHist)
		rep.Service, rep.SendLag = &s, &l
	}
	startMs := startWall.UnixMilli()
	endMs := startMs + window.Milliseconds()
	for _, h := range []*hdrhistogram.Histogram{rep.LatencyHist, rep.ServiceHist, rep.ConnectHist} {
		if h != nil {
			h.SetStartTimeMs(startMs)
			h.SetEndTimeMs(endMs)
		}
	}

	rep.ClientCPUS = cpu.Seconds()
	// The verdict needs a window long enough for the kernel's CPU
	// accounting (it advances in ticks of up to 10 ms) to mean something.
	if window >= minCPUWindow && rep.ClientCPUs > 0 {
		used := cpu.Seconds() / window.Seconds() / float64(rep.ClientCPUs)
		rep.ClientSaturated = used >= 0.9
		if rep.ClientSaturated {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf(
				"client saturated: the load generator used %.0f%% of its %s, so it, not the server, may be the bottleneck", used*100, cpusNoun(rep.ClientCPUs)))
		}
	}

	if p, ok := r.pacer.(*constantPacer); ok && !rep.Interrupted {
		// Due slots of the window that were never sent count against the
		// schedule just as late ones do.
		due := p.slotsBetween(r.measureStart, r.measureStart+int64(window))
		if r.cfg.Requests > 0 {
			due = r.cfg.Requests
		}
		unsent := max(due-sent, 0)
		// Held: at most 1% of the window's requests never went out (and
		// one more: the last may fall due a hair before the end and find
		// the window closed when its connection picks it up) and at most
		// 5% went out late.
		if due > 0 && (float64(unsent) > 0.01*float64(due)+1 || float64(lateSends) > 0.05*float64(due)) {
			rep.RateHeld = false
			rep.Warnings = append(rep.Warnings, fmt.Sprintf(
				"rate not held: of %s requests due at %s req/s, %s went out more than %v late (worst %v) and %s never went out; at most %s can be in flight (-c x -p)",
				fmtCount(float64(due)), fmtRate(r.cfg.Rate), fmtCount(float64(lateSends)), lateSend, time.Duration(maxLag).Round(time.Microsecond),
				fmtCount(float64(unsent)), fmtCount(float64(len(r.workers)*r.cfg.Pipeline))))
		}
	}
	if otherMode > 0 && otherMode == rep.Mismatches {
		other := "upper"
		if r.cfg.Mode == protocol.Upper {
			other = "echo"
		}
		rep.Warnings = append(rep.Warnings, fmt.Sprintf(
			"every wrong reply is what --mode %s would send: is the server running --mode %s? (this run used --mode %s)", other, other, r.cfg.Mode))
	}
	if r.connectFailed > 0 {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d of %d connections could not be made (first: %v)",
			r.connectFailed, r.cfg.Conns, r.firstConnectErr))
	}
	if len(failures) > 0 {
		sort.Strings(failures)
		rep.Failure = fmt.Sprintf("%d of %d connections ended early (first: %s)", len(failures), len(r.workers), failures[0])
	}
	if rep.Requests == 0 && rep.Failure == "" && !rep.Interrupted {
		rep.Failure = "no valid reply was received"
	}
	if rep.Interrupted {
		rep.Warnings = append(rep.Warnings, "interrupted: the results cover only part of the run")
	}
}

// verdict turns the report's failure into Run's error.
func (r *run) verdict(rep *Report) error {
	if rep.Failure != "" {
		return fmt.Errorf("%w: %s", ErrFailed, strings.TrimSpace(rep.Failure))
	}
	return nil
}
