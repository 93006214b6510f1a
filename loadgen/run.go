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
	tokens       chan slot // goroutine engine, open loop: due requests from dispatch
	spinNs       int64     // goroutine engine: the dispatcher's yield-spin in the measurement
	tickets      atomic.Int64

	// cpu0 is the process CPU time at the start of the measurement, taken
	// once (cpuSampled) by whoever sees measureStart pass first: Run's
	// timer, or an epoll loop (which, busy on the only P, may keep the
	// timer from firing on time).
	cpu0       atomic.Int64
	cpuSampled atomic.Bool

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

// sampleStartCPU takes the CPU sample of the measurement's start, once.
func (r *run) sampleStartCPU() {
	if r.cpuSampled.CompareAndSwap(false, true) {
		r.cpu0.Store(int64(cpuTime()))
	}
}

// claimClosed decides whether a closed-loop connection may send another
// request now, and whether that request is measured.
func (r *run) claimClosed() (t int64, counted, ok bool) {
	t = r.now()
	counted, ok = r.claimClosedAt(t)
	return t, counted, ok
}

// claimClosedAt is claimClosed at time t, already read.
func (r *run) claimClosedAt(t int64) (counted, ok bool) {
	if t >= r.end || r.stopping.Load() {
		return false, false
	}
	if t < r.measureStart {
		return false, true
	}
	if r.cfg.Requests > 0 && r.tickets.Add(1) > r.cfg.Requests {
		return false, false
	}
	return true, true
}

// engine drives the connections of a run: the epoll engine (event loops on
// raw non-blocking sockets, Linux) or the goroutine engine (two goroutines
// per connection on Go's net package, everywhere). The package doc says
// why there are two and how they compare.
type engine interface {
	// start launches the load and returns a channel closed once every
	// connection has finished.
	start() <-chan struct{}
	// interrupt makes every connection stop promptly (cancellation).
	interrupt()
	// stop ends the engine's clock after every connection finished.
	stop()
	// close releases the sockets.
	close()
	// spin returns how long the engine yield-spun for due times.
	spin() time.Duration
	// cpu returns the CPU time of the engine's own threads over the
	// measurement, when it measures them apart from the process's.
	cpu() (time.Duration, bool)
	name() string
}

// Engine names, as Report.Engine gives them.
const (
	EngineEpoll      = "epoll"
	EngineGoroutines = "goroutines"
)

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
			return nil, errorf(ErrFailed, "client socket directory: %v", err)
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
			return rep, errorf(ErrFailed, "interrupted while connecting")
		}
		return rep, errorf(ErrUnreachable, "%s: %v", cfg.Target, firstErr)
	}
	eng, err := r.newEngine()
	if err != nil {
		for _, w := range r.workers {
			if w.conn != nil {
				w.conn.Close()
			}
		}
		rep.Failure = err.Error()
		return rep, errorf(ErrFailed, "%v", err)
	}
	rep.Engine = eng.name()

	// The clock of the load starts now that every connection is up, or at
	// --start-at less the warmup (shard.go).
	t0, measureStart, err := r.begin(ctx)
	if err != nil {
		eng.close()
		return r.abort(ctx, rep, err)
	}
	r.measureStart = measureStart
	r.end = math.MaxInt64
	if cfg.Duration > 0 {
		r.end = r.measureStart + int64(cfg.Duration)
	}
	if cfg.Rate > 0 {
		r.pacer = newConstantPacer(cfg.Rate, t0, r.measureStart, r.end, cfg.Requests)
	}
	finished := eng.start()

	// Watch the clock: sample CPU at the start of the measurement, show
	// progress, and stop everything on cancellation.
	var tickC <-chan time.Time
	if cfg.Progress != nil {
		tick := time.NewTicker(time.Second)
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
			r.sampleStartCPU()
		case <-tickC:
			prog.print(cfg.Progress)
		case <-ctxDone:
			ctxDone = nil
			rep.Interrupted = true
			r.stopping.Store(true)
			close(r.stop)
			eng.interrupt()
		}
	}
	stopAt := r.now()
	eng.stop()
	r.sampleStartCPU()                // the run ended before the warmup did
	startWall := r.at(r.measureStart) // wall clock of the measurement's start
	cpu := cpuTime() - time.Duration(r.cpu0.Load())
	if cfg.Progress != nil {
		prog.clear(cfg.Progress)
	}
	eng.close()
	if c, ok := eng.cpu(); ok {
		cpu = c
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
	r.fill(rep, window, cpu, eng.spin(), startWall)
	r.fillShard(rep) // --shard and the interval histograms for --hdr-out (shard.go)
	return rep, r.verdict(rep)
}

// newEngine picks the engine: the epoll engine where it exists, unless the
// configuration asks for the goroutine engine.
func (r *run) newEngine() (engine, error) {
	if r.cfg.engine != EngineGoroutines && epollAvailable {
		return newEpollEngine(r)
	}
	if r.cfg.engine == EngineEpoll {
		return nil, errors.New("the epoll engine exists on Linux only")
	}
	return &goEngine{r: r}, nil
}

// goEngine is the goroutine engine: per connection a sender and a receiver
// goroutine, and in the open loop one dispatcher goroutine for the clock.
type goEngine struct {
	r                *run
	quit, dispatched chan struct{}
}

func (e *goEngine) name() string        { return EngineGoroutines }
func (e *goEngine) spin() time.Duration { return time.Duration(e.r.spinNs) }

func (e *goEngine) cpu() (time.Duration, bool) { return 0, false }

func (e *goEngine) start() <-chan struct{} {
	r := e.r
	for _, w := range r.workers {
		w.rec = newRecorder(r.cfg.Rate > 0, false)
	}
	e.quit, e.dispatched = make(chan struct{}), make(chan struct{})
	if r.cfg.Rate > 0 {
		r.tokens = make(chan slot, min(len(r.workers)*r.cfg.Pipeline, 1<<16))
		go func() { r.dispatch(r.tokens, e.quit); close(e.dispatched) }()
	} else {
		close(e.dispatched)
	}
	var wg sync.WaitGroup
	for _, w := range r.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.cfg.datagram() {
				w.runDatagram()
			} else {
				w.runStream()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	return finished
}

func (e *goEngine) interrupt() {
	past := time.Unix(1, 0)
	for _, w := range e.r.workers {
		w.conn.SetDeadline(past)
	}
}

func (e *goEngine) stop() {
	close(e.quit)
	<-e.dispatched
}

func (e *goEngine) close() {
	for _, w := range e.r.workers {
		w.conn.Close()
	}
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
// giving up after Timeout. Any reply proves the target answers: one that is
// not the probe's own (garbage, another mode's) is left for the run to
// count as a mismatch, which says more than "no reply".
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
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				lastErr = fmt.Errorf("no reply to a UDP datagram within %v", r.cfg.Timeout)
				continue
			}
			return err
		}
		c.SetReadDeadline(time.Time{})
		return nil
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
		Target:         c.Target,
		Net:            c.network,
		Mode:           c.Mode.String(),
		Loop:           "closed",
		Conns:          c.Conns,
		ConnsOK:        len(r.workers),
		Pipeline:       c.Pipeline,
		Size:           (c.SizeMin + c.SizeMax + 1) / 2,
		SizeMin:        c.SizeMin,
		SizeMax:        c.SizeMax,
		Seed:           c.Seed,
		Rate:           c.Rate,
		WarmupS:        c.Warmup.Seconds(),
		Counts:         newCounts(),
		Warmup:         newCounts(),
		Warnings:       []string{},
		RateHeld:       true,
		ClientCPUCount: usableCPUs(),
		Sources:        1,
		LatencyHist:    newHist(),
	}
	if n := len(c.loopCPUs); n > 0 {
		rep.ClientCPUCount = n
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

// fill merges every worker's measurements into rep. cpu is the process's
// CPU time over the window, spin the part of it the engine spent
// yield-spinning for due times.
func (r *run) fill(rep *Report, window, cpu, spin time.Duration, startWall time.Time) {
	var lateSends, maxLag, otherMode int64
	var failures []string
	merged := map[*recorder]bool{}
	inWarmup := true
	for _, w := range r.workers {
		mc := w.m.counts(w.examples)
		rep.Add(&mc, r.cfg.MaxExamples)
		wc := w.warm.counts(nil)
		rep.Warmup.Add(&wc, 0)
		if !merged[w.rec] {
			merged[w.rec] = true
			w.rec.mergeInto(rep)
		}
		otherMode += w.m.otherMode
		lateSends += w.lateSends
		rep.early += w.early
		maxLag = max(maxLag, w.maxLag)
		if w.failure != nil {
			failures = append(failures, fmt.Sprintf("conn %d: %v", w.id, w.failure))
			inWarmup = inWarmup && w.failedAt < r.measureStart
		}
	}
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
	for _, h := range []*hdrhistogram.Histogram{rep.LatencyHist, rep.ServiceHist, rep.ConnectHist, rep.SendLagHist} {
		if h != nil {
			h.SetStartTimeMs(startMs)
			h.SetEndTimeMs(endMs)
		}
	}

	rep.ClientCPUSeconds = cpu.Seconds()
	rep.ClientSpinS = min(spin, cpu).Seconds()
	// The verdict needs a window long enough for the kernel's CPU
	// accounting (it advances in ticks of up to 10 ms) to mean something.
	// Time spent yield-spinning for a due time is idle time the pacer
	// chose to burn for precision (anything that arrives meanwhile is
	// served at once), so it does not count as busy.
	if window >= minCPUWindow && rep.ClientCPUCount > 0 {
		used := (rep.ClientCPUSeconds - rep.ClientSpinS) / window.Seconds() / float64(rep.ClientCPUCount)
		rep.ClientSaturated = used >= 0.9
		if rep.ClientSaturated {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf(
				"client saturated: the load generator used %.0f%% of its %s, so it, not the server, may be the bottleneck", used*100, cpusNoun(rep.ClientCPUCount)))
		}
	}

	if p, ok := r.pacer.(*constantPacer); ok && !rep.Interrupted {
		// Due slots of the window that were never sent count against the
		// schedule just as late ones do.
		due := p.slotsBetween(r.measureStart, r.measureStart+int64(window))
		if r.cfg.Requests > 0 {
			due = r.cfg.Requests
		}
		unsent := max(due-rep.Sent, 0)
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
		when := ""
		if inWarmup && r.cfg.Warmup > 0 {
			when = " during the warmup"
		}
		rep.Failure = fmt.Sprintf("%d of %d connections ended early%s (first: %s)", len(failures), len(r.workers), when, failures[0])
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
		return errorf(ErrFailed, "%s", strings.TrimSpace(rep.Failure))
	}
	return nil
}
