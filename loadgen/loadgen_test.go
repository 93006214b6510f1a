package loadgen

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// checkLeaks fails the test if goroutines or file descriptors are left over
// once it (and its cleanups) finish.
func checkLeaks(t *testing.T) {
	t.Helper()
	g0, fd0 := runtime.NumGoroutine(), openFDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(scaled(3 * time.Second))
		for {
			g, fd := runtime.NumGoroutine(), openFDs()
			if g <= g0 && fd <= fd0 {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("leak: goroutines %d -> %d, fds %d -> %d\n%s", g0, g, fd0, fd, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0 // not Linux: fd leaks are checked there
	}
	return len(ents)
}

// engines lists the engines the behaviour tests run: the portable
// goroutine engine everywhere, the epoll engine where it exists.
func engines() []string {
	if epollAvailable {
		return []string{EngineGoroutines, EngineEpoll}
	}
	return []string{EngineGoroutines}
}

// eachEngine runs f as one subtest per engine.
func eachEngine(t *testing.T, f func(t *testing.T, engine string)) {
	t.Helper()
	for _, e := range engines() {
		t.Run(e, func(t *testing.T) { f(t, e) })
	}
}

// withEngine returns cfg set to run on engine.
func withEngine(cfg Config, engine string) Config {
	cfg.engine = engine
	return cfg
}

// mustRun runs cfg, failing the test on an error.
func mustRun(t *testing.T, cfg Config) *Report {
	t.Helper()
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func TestEchoAndUpperOverEveryTransport(t *testing.T) {
	checkLeaks(t)
	for _, mode := range protocol.Modes {
		for _, network := range []string{"tcp", "unix", "udp", "unixgram"} {
			for _, engine := range engines() {
				t.Run(engine+"/"+network+"/"+mode.String(), func(t *testing.T) {
					var target string
					if network == "unixgram" {
						// The client binds one socket file per connection in a
						// temporary directory: it must be gone afterwards.
						tmp, err := os.MkdirTemp("", "sbt")
						if err != nil {
							t.Fatal(err)
						}
						t.Setenv("TMPDIR", tmp)
						t.Cleanup(func() {
							if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
								t.Errorf("left behind in TMPDIR: %v", ents)
							}
							os.RemoveAll(tmp)
						})
					}
					if network == "udp" || network == "unixgram" {
						target = startDgram(t, network, &udpServer{mode: mode})
					} else {
						target = startStream(t, network, &streamServer{mode: mode})
					}
					rep := mustRun(t, Config{engine: engine, Target: target, Mode: mode, Conns: 3, Pipeline: 4,
						SizeMin: 16, SizeMax: 300, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond})
					if rep.Requests < 100 || rep.Errors != 0 || rep.Mismatches != 0 || rep.Lost != 0 {
						t.Fatalf("requests %d errors %d mismatches %d lost %d (%v) %v",
							rep.Requests, rep.Errors, rep.Mismatches, rep.Lost, rep.ErrorsByKind, rep.Examples)
					}
					if rep.Latency.Count != rep.Requests || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
						t.Fatalf("latency summary inconsistent: %+v for %d requests", rep.Latency, rep.Requests)
					}
					if rep.Connect.Count != 3 || rep.ConnsOK != 3 {
						t.Fatalf("connect count %d, conns ok %d, want 3", rep.Connect.Count, rep.ConnsOK)
					}
					if rep.RPS <= 0 || rep.MBps <= 0 || rep.DurationS < 0.19 || rep.DurationS > 0.5 {
						t.Fatalf("rps %v mbps %v duration %v", rep.RPS, rep.MBps, rep.DurationS)
					}
					// Each reply was counted once, and only the window's.
					if rep.Sent < rep.Requests {
						t.Fatalf("sent %d < requests %d", rep.Sent, rep.Requests)
					}
					if rep.Engine != engine {
						t.Fatalf("engine %q, want %q", rep.Engine, engine)
					}
				})
			}
		}
	}
}

// TestEchoAgainstUpperServerIsCaught: the checker really compares, and
// the generated contents really contain lower-case letters.
func TestEchoAgainstUpperServerIsCaught(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		target := startStream(t, "tcp", &streamServer{mode: protocol.Upper})
		rep, err := Run(context.Background(), Config{engine: engine, Target: target, Mode: protocol.Echo, Conns: 1, Requests: 50, SizeMin: 8, SizeMax: 64})
		if err == nil || !errors.Is(err, ErrFailed) {
			t.Fatalf("err = %v, want ErrFailed (no valid reply)", err)
		}
		if rep.Mismatches != 50 || rep.ErrorsByKind["mismatch"] != 50 || rep.Requests != 0 {
			t.Fatalf("mismatches %d, by kind %v, requests %d", rep.Mismatches, rep.ErrorsByKind, rep.Requests)
		}
		if w := behaviourWarnings(rep); len(w) != 1 || !strings.Contains(w[0], "running --mode upper?") {
			t.Fatalf("warnings %q, want a hint at the server's mode", rep.Warnings)
		}
	})
}

// TestAccuracy: against a server that holds each reply 2 ms, p50 is within
// 10% of 2 ms.
func TestAccuracy(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		const delay = 2 * time.Millisecond
		target := startStream(t, "tcp", &streamServer{mode: protocol.Echo, delay: delay})
		// A busy machine (-race, other tests) can delay any single run; the
		// generator is accurate if one of three runs is.
		// Natively the bound: within 10%. Under qemu-user (make
		// test-emulated) the test server is emulated too: it adds about 0.2 ms
		// of its own work to every round trip when the machine is idle (armv6:
		// p50 2.21 to 2.25 ms) and up to 1 ms when other emulated work shares
		// the CPUs (2.4 to 3.0 ms seen). That is the emulator's cost, not the
		// generator's error, so there the test only checks the figure is of
		// the right size (never below the delay, at most twice it): a unit or
		// timestamp mistake still fails it.
		slack := delay / 10
		if os.Getenv("SOCKBENCH_EMULATED") != "" {
			slack = delay
		}
		var p50 time.Duration
		var requests int64
		for attempt := 1; attempt <= 3; attempt++ {
			rep := mustRun(t, Config{engine: engine, Target: target, Conns: 2, Duration: 600 * time.Millisecond, Warmup: 100 * time.Millisecond})
			p50, requests = time.Duration(rep.Latency.P50*1e3), rep.Requests
			t.Logf("attempt %d: p50 %v p99 %v mean %v over %d requests", attempt, p50,
				time.Duration(rep.Latency.P99*1e3), time.Duration(rep.Latency.Mean*1e3), rep.Requests)
			// 2 conns at 2 ms a round trip make 600 requests in 0.6 s; far
			// fewer means the run was disturbed (a stalled machine), which
			// the next attempt may not be.
			if requests >= 150 && p50 >= delay && p50 <= delay+slack {
				return
			}
		}
		if requests < 150 {
			t.Fatalf("only %d requests in 0.6 s with 2 conns and 2 ms replies", requests)
		}
		t.Fatalf("p50 = %v, want within %v of %v", p50, slack, delay)
	})
}

// TestCoordinatedOmission: open loop against a server process paused for
// 300 ms. A closed loop (or an open loop timing from the actual send) would
// record only the few requests stuck in flight; timing from the due time
// records every request that should have gone out during the pause.
func TestCoordinatedOmission(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		addr, proc := startSubprocess(t)
		// The pause is timed from the run's own clock, not the test's: the
		// progress line's first tick comes 1 s after every connection is up,
		// 0.5 s into the measurement, and the pause starts 0.2 s later. (Timed
		// from the test's start, a slow connect under -race once moved most of
		// the pause into the warmup, where nothing is counted.)
		done := make(chan struct{})
		var paused time.Duration
		tick := &onFirstWrite{f: func() {
			go func() {
				defer close(done)
				time.Sleep(200 * time.Millisecond)
				proc.Signal(syscall.SIGSTOP)
				start := time.Now()
				time.Sleep(300 * time.Millisecond)
				proc.Signal(syscall.SIGCONT)
				paused = time.Since(start)
			}()
		}}
		rep := mustRun(t, Config{engine: engine, Target: "tcp://" + addr, Conns: 4, Pipeline: 8, Rate: 2000,
			Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Timeout: 5 * time.Second, Progress: tick})
		select {
		case <-done:
		default:
			t.Fatal("the run ended before the server was paused and resumed")
		}
		t.Logf("server paused for %v", paused)
		p999 := time.Duration(rep.Latency.P999 * 1e3)
		svc := time.Duration(rep.Service.P50 * 1e3)
		t.Logf("p50 %v p99 %v p99.9 %v max %v; service p50 %v; requests %d; warnings %q",
			time.Duration(rep.Latency.P50*1e3), time.Duration(rep.Latency.P99*1e3), p999,
			time.Duration(rep.Latency.Max*1e3), svc, rep.Requests, rep.Warnings)
		if p999 < 200*time.Millisecond {
			t.Fatalf("p99.9 = %v, want >= 200ms after a 300 ms pause", p999)
		}
		// p99.9 alone does not tell a corrected generator from one that times
		// from the actual send: the 32 requests in flight during the pause are
		// 0.8% of the 4,000 and see it either way. What only the correction
		// shows is every request that fell due during the pause: some 600 of
		// them, 400 of which waited 100 ms or more, so p95 is well past 100 ms
		// from the due time, while from the send (service time), where at most
		// the 32 in flight waited, p95 is not.
		p95 := time.Duration(rep.LatencyHist.ValueAtPercentile(95))
		svc95 := time.Duration(rep.ServiceHist.ValueAtPercentile(95))
		t.Logf("p95 %v, service p95 %v", p95, svc95)
		if p95 < 100*time.Millisecond {
			t.Fatalf("p95 = %v, want >= 100ms: the requests due during the pause were not timed from their due time", p95)
		}
		if svc95 >= 100*time.Millisecond {
			t.Fatalf("service p95 = %v, want < 100ms: service time counts from the send, after the pause", svc95)
		}
		if rep.RateHeld {
			t.Fatalf("rate_held = true although the server was paused for 300 ms")
		}
		if rep.Requests < 3000 || rep.Errors != 0 {
			t.Fatalf("requests %d errors %d (%v): the schedule should have caught up", rep.Requests, rep.Errors, rep.ErrorsByKind)
		}
	})
}

// onFirstWrite is an io.Writer that calls f on its first Write.
type onFirstWrite struct {
	once sync.Once
	f    func()
}

func (o *onFirstWrite) Write(p []byte) (int, error) {
	o.once.Do(o.f)
	return len(p), nil
}

// TestValidationCatchesCorruption: a server that alters one reply in seven.
func TestValidationCatchesCorruption(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		srv := &streamServer{mode: protocol.Upper, corrupt: func(n int, reply []byte) {
			if n%7 == 3 && len(reply) > 1 {
				reply[len(reply)/2] ^= 0x20 // flip a letter's case, or some other bit
			}
		}}
		target := startStream(t, "tcp", srv)
		rep, err := Run(context.Background(), Config{engine: engine, Target: target, Mode: protocol.Upper, Conns: 2, Pipeline: 2,
			Requests: 700, SizeMin: 4, SizeMax: 100})
		if err != nil {
			t.Fatalf("Run: %v (mismatches are counted, not fatal)", err)
		}
		total := rep.Requests + rep.Mismatches
		if total != 700 {
			t.Fatalf("requests %d + mismatches %d != 700", rep.Requests, rep.Mismatches)
		}
		if rep.Mismatches < 80 || rep.Mismatches > 120 {
			t.Fatalf("mismatches %d, want about 100 (1 in 7 of 700)", rep.Mismatches)
		}
		if rep.Errors != rep.Mismatches || rep.ErrorsByKind["mismatch"] != rep.Mismatches {
			t.Fatalf("errors %d by kind %v, want %d mismatches", rep.Errors, rep.ErrorsByKind, rep.Mismatches)
		}
		if len(rep.Examples) != 5 || !strings.Contains(rep.Examples[0], "first difference at byte") {
			t.Fatalf("examples %q", rep.Examples)
		}
		if w := behaviourWarnings(rep); len(w) != 0 {
			t.Fatalf("warnings %q", w)
		}
	})
}

// behaviourWarnings is rep.Warnings without the client-saturated one,
// which depends on how busy the machine is (the test server shares the
// client's CPUs, and under qemu-user it always saturates them), not on
// what a test checks. TestSaturationVerdict covers that warning.
func behaviourWarnings(rep *Report) []string {
	var w []string
	for _, s := range rep.Warnings {
		if !strings.HasPrefix(s, "client saturated:") {
			w = append(w, s)
		}
	}
	return w
}

// TestUDPLoss: a server that drops every 10th datagram is reported as
// about 10% lost, and no connection hangs on a lost datagram.
func TestUDPLoss(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		target := startUDP(t, &udpServer{mode: protocol.Upper, dropEvery: 10})
		start := time.Now()
		rep := mustRun(t, Config{engine: engine, Target: target, Mode: protocol.Upper, Conns: 2, Pipeline: 8,
			SizeMin: 16, SizeMax: 200, Requests: 3000, Timeout: 100 * time.Millisecond})
		lost := float64(rep.Lost) / float64(rep.Sent)
		t.Logf("sent %d requests %d lost %d (%.1f%%) dup %d reordered %d late %d in %v",
			rep.Sent, rep.Requests, rep.Lost, 100*lost, rep.Duplicated, rep.Reordered, rep.Late, time.Since(start))
		if lost < 0.07 || lost > 0.13 {
			t.Fatalf("lost %.1f%%, want about 10%%", 100*lost)
		}
		if rep.Requests+rep.Lost != rep.Sent || rep.Sent != 3000 {
			t.Fatalf("requests %d + lost %d != sent %d (want 3000)", rep.Requests, rep.Lost, rep.Sent)
		}
		if rep.Errors != 0 || rep.Mismatches != 0 || rep.Duplicated != 0 {
			t.Fatalf("errors %d mismatches %d duplicated %d", rep.Errors, rep.Mismatches, rep.Duplicated)
		}
	})
}

// TestUDPDuplicates: every reply sent twice is counted as a duplicate.
func TestUDPDuplicates(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		target := startUDP(t, &udpServer{mode: protocol.Echo, dup: true})
		rep := mustRun(t, Config{engine: engine, Target: target, Conns: 1, Pipeline: 1, SizeMin: 32, Duration: 300 * time.Millisecond, Warmup: time.Nanosecond})
		// The duplicate of the last reply may still be in flight at the end.
		if rep.Duplicated < rep.Requests-2 || rep.Duplicated > rep.Requests || rep.Requests < 50 {
			t.Fatalf("requests %d duplicated %d", rep.Requests, rep.Duplicated)
		}
	})
}

// TestUDPReordered: a server that swaps every pair of replies.
func TestUDPReordered(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		target := startUDP(t, &udpServer{mode: protocol.Echo, swap: true})
		rep := mustRun(t, Config{engine: engine, Target: target, Conns: 1, Pipeline: 2, SizeMin: 32, Requests: 1000, Timeout: 200 * time.Millisecond})
		frac := float64(rep.Reordered) / float64(rep.Requests)
		t.Logf("requests %d reordered %d lost %d", rep.Requests, rep.Reordered, rep.Lost)
		if frac < 0.3 || frac > 0.55 || rep.Lost > 1 || rep.Duplicated != 0 || rep.Mismatches != 0 {
			t.Fatalf("requests %d reordered %d lost %d duplicated %d mismatches %d; want about half reordered",
				rep.Requests, rep.Reordered, rep.Lost, rep.Duplicated, rep.Mismatches)
		}
	})
}

// TestUnreachable: nothing listens, and Run says so at once.
func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := ln.Addr().String()
	ln.Close()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr := pc.LocalAddr().String()
	pc.Close()
	for _, target := range []string{"tcp://" + tcpAddr, "udp://" + udpAddr, "unix:///nonexistent/sb.sock", "unixgram:///nonexistent/sb.sock"} {
		start := time.Now()
		rep, err := Run(context.Background(), Config{Target: target, Conns: 4, Timeout: time.Second})
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s: err = %v, want ErrUnreachable", target, err)
		}
		if took := time.Since(start); took > scaled(2*time.Second) {
			t.Fatalf("%s: took %v, want within --timeout", target, took)
		}
		if rep == nil || rep.ErrorsByKind["connect"] != 1 || rep.ConnsOK != 0 {
			t.Fatalf("%s: report %+v", target, rep)
		}
		t.Logf("%s: %v", target, err)
	}
}

// TestServerDiesMidRun: partial results, an error, and no hang.
func TestServerDiesMidRun(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		checkLeaks(t)
		srv := &streamServer{mode: protocol.Echo}
		target := startStream(t, "tcp", srv)
		time.AfterFunc(400*time.Millisecond, srv.dropAll)
		start := time.Now()
		rep, err := Run(context.Background(), Config{engine: engine, Target: target, Conns: 4, Pipeline: 4, Duration: scaled(10 * time.Second), Warmup: 100 * time.Millisecond})
		took := time.Since(start)
		if !errors.Is(err, ErrFailed) {
			t.Fatalf("err = %v, want ErrFailed", err)
		}
		if took > scaled(3*time.Second) {
			t.Fatalf("took %v after the server died", took)
		}
		if rep.Requests == 0 || rep.DurationS > scaled(time.Second).Seconds() || rep.Failure == "" {
			t.Fatalf("partial report: requests %d duration %v failure %q", rep.Requests, rep.DurationS, rep.Failure)
		}
		if rep.ErrorsByKind["closed"]+rep.ErrorsByKind["reset"] == 0 {
			t.Fatalf("errors by kind %v, want closed or reset", rep.ErrorsByKind)
		}
		t.Logf("%v; %d requests; errors %v", err, rep.Requests, rep.ErrorsByKind)
	})
}

// TestUDPServerDiesMidRun: the port closes, replies turn into ICMP port
// unreachable, and the run ends early with partial results.
func TestUDPServerDiesMidRun(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		checkLeaks(t)
		srv := &udpServer{mode: protocol.Echo}
		target := startUDP(t, srv)
		time.AfterFunc(400*time.Millisecond, func() { srv.pc.Close() })
		start := time.Now()
		rep, err := Run(context.Background(), Config{engine: engine, Target: target, Conns: 2, Pipeline: 2, SizeMin: 32, Duration: scaled(10 * time.Second),
			Warmup: 100 * time.Millisecond, Timeout: 500 * time.Millisecond})
		if !errors.Is(err, ErrFailed) || time.Since(start) > scaled(3*time.Second) {
			t.Fatalf("err = %v after %v, want ErrFailed at once", err, time.Since(start))
		}
		if rep.Requests == 0 || rep.ErrorsByKind["refused"] == 0 {
			t.Fatalf("requests %d, errors %v", rep.Requests, rep.ErrorsByKind)
		}
	})
}

// TestServerStopsAnswering: a paused server trips --timeout on every
// connection; the run ends without hanging.
func TestServerStopsAnswering(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		addr, proc := startSubprocess(t)
		time.AfterFunc(300*time.Millisecond, func() { proc.Signal(syscall.SIGSTOP) })
		start := time.Now()
		rep, err := Run(context.Background(), Config{engine: engine, Target: "tcp://" + addr, Conns: 2, Duration: scaled(10 * time.Second),
			Warmup: 100 * time.Millisecond, Timeout: 300 * time.Millisecond})
		if !errors.Is(err, ErrFailed) || rep.Timeouts != 2 || rep.ErrorsByKind["timeout"] != 2 {
			t.Fatalf("err %v, timeouts %d, by kind %v", err, rep.Timeouts, rep.ErrorsByKind)
		}
		if took := time.Since(start); took > scaled(2*time.Second) {
			t.Fatalf("took %v", took)
		}
	})
}

// TestCancel: cancelling the context stops the run promptly with partial
// results marked as interrupted, and counts nothing as an error.
func TestCancel(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		checkLeaks(t)
		target := startStream(t, "unix", &streamServer{mode: protocol.Echo})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		rep, err := Run(ctx, Config{engine: engine, Target: target, Conns: 2, Pipeline: 2, Rate: 1000, Duration: 10 * time.Second, Warmup: time.Nanosecond})
		if err != nil || !rep.Interrupted || rep.Errors != 0 || rep.Requests == 0 {
			t.Fatalf("err %v interrupted %v errors %d requests %d", err, rep.Interrupted, rep.Errors, rep.Requests)
		}
	})
}

// TestRequestsMode: -n measures exactly that many requests.
func TestRequestsMode(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		for _, rate := range []float64{0, 5000} {
			target := startStream(t, "tcp", &streamServer{mode: protocol.Echo})
			rep := mustRun(t, Config{engine: engine, Target: target, Conns: 3, Pipeline: 3, Requests: 1000, Rate: rate, Warmup: 50 * time.Millisecond})
			if rep.Requests != 1000 || rep.Sent != 1000 || rep.DurationS <= 0 {
				t.Fatalf("rate %v: requests %d sent %d duration %v", rate, rep.Requests, rep.Sent, rep.DurationS)
			}
		}
	})
}

// TestOpenLoopWindow: with -d, the window is the one asked for even when
// the schedule's last request falls due well before its end (a low rate),
// so req/s is the rate, not inflated by a window cut at the last reply.
func TestOpenLoopWindow(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		target := startStream(t, "tcp", &streamServer{mode: protocol.Echo})
		// No warmup: the first request is due when the window opens, the
		// fifth 0.4 s in, the window closes at 0.5 s.
		rep := mustRun(t, Config{engine: engine, Target: target, Conns: 2, Rate: 10, Duration: 500 * time.Millisecond})
		if rep.Requests != 5 || rep.DurationS < 0.5 || rep.DurationS > scaled(600*time.Millisecond).Seconds() || rep.RPS > 10 {
			t.Fatalf("requests %d in %vs = %v req/s; want 5 in 0.5 s, 10 req/s", rep.Requests, rep.DurationS, rep.RPS)
		}
		if !rep.RateHeld || len(behaviourWarnings(rep)) != 0 {
			t.Fatalf("rate held %v, warnings %q", rep.RateHeld, rep.Warnings)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Target: "127.0.0.1:7000"},
		{Target: "http://127.0.0.1:7000"},
		{Target: "tcp://127.0.0.1"},
		{Target: "tcp://:7000"},
		{Target: "tcp://127.0.0.1:99999"},
		{Target: "unix://relative.sock"},
		{Target: "udp://127.0.0.1:7000", SizeMin: 8},
		{Target: "udp://127.0.0.1:7000", SizeMin: 70000},
		{Target: "tcp://127.0.0.1:7000", SizeMin: 100, MaxLine: 64},
		{Target: "tcp://127.0.0.1:7000", SizeMin: 10, SizeMax: 5},
		{Target: "tcp://127.0.0.1:7000", Duration: time.Second, Requests: 5},
		{Target: "tcp://127.0.0.1:7000", Conns: -1},
		{Target: "tcp://127.0.0.1:7000", Rate: -1},
		{Target: "tcp://127.0.0.1:7000", Rate: math.NaN()},
		{Target: "tcp://127.0.0.1:7000", Rate: math.Inf(1)},
		{Target: "tcp://127.0.0.1:7000", Warmup: -time.Second},
		{Target: "tcp://127.0.0.1:7000", Conns: 10000, Pipeline: 1000},
	} {
		if err := c.Normalize(); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", c, err)
		}
	}
}

func TestFileLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RLIMIT_NOFILE check is exercised on Linux")
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	if lim.Max > 1<<30 {
		t.Skip("hard limit is unlimited")
	}
	_, err := Run(context.Background(), Config{Target: "tcp://127.0.0.1:9", Conns: int(lim.Max) + 1})
	if !errors.Is(err, ErrFileLimit) {
		t.Fatalf("err = %v, want ErrFileLimit", err)
	}
}

// TestDeepPipelineOfLargeRequests: far more bytes in flight than the
// socket buffers hold (256 requests of up to 60 KiB on each of two
// connections, to a server that takes 100 µs a request), so writes go out
// in parts and wait for the socket while replies must be read meanwhile,
// and replies arrive split across reads. Nothing deadlocks and every
// reply checks.
func TestDeepPipelineOfLargeRequests(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		target := startStream(t, "tcp", &streamServer{mode: protocol.Upper, delay: 100 * time.Microsecond})
		rep := mustRun(t, withEngine(Config{Target: target, Mode: protocol.Upper, Conns: 2, Pipeline: 256,
			SizeMin: 16 << 10, SizeMax: 60 << 10, Requests: 1000, Timeout: scaled(10 * time.Second)}, engine))
		if rep.Requests != 1000 || rep.Errors != 0 || rep.Bytes < 1000*16<<10 {
			t.Fatalf("requests %d errors %d (%v) bytes %d", rep.Requests, rep.Errors, rep.ErrorsByKind, rep.Bytes)
		}
	})
}

// TestManyConnections: a thousand connections over the engine's loops.
func TestManyConnections(t *testing.T) {
	checkLeaks(t)
	eachEngine(t, func(t *testing.T, engine string) {
		s, err := StartSink("tcp", protocol.Echo, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		rep := mustRun(t, withEngine(Config{Target: s.Target, Conns: 1000, Requests: 20000, Timeout: scaled(10 * time.Second)}, engine))
		if rep.Requests != 20000 || rep.ConnsOK != 1000 || rep.Errors != 0 {
			t.Fatalf("requests %d conns %d errors %d (%v)", rep.Requests, rep.ConnsOK, rep.Errors, rep.ErrorsByKind)
		}
	})
}
