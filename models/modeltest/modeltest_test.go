package modeltest

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// TestReference runs the whole suite against the reference server: the
// suite can be passed.
func TestReference(t *testing.T) {
	Run(t, "modeltest-reference")
}

// fakeTB records failures instead of failing the real test, so a check can
// be run against a broken server and be expected to fail.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	msgs     []string
	failed   bool
	skipped  bool
	cleanups []func()
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}
func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Fail() {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
}
func (f *fakeTB) FailNow() { f.Fail(); runtime.Goexit() }
func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}
func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	f.skipped = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Skipf(format string, args ...any) { f.Skip() }
func (f *fakeTB) SkipNow()                         { f.Skip() }
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	f.cleanups = append(f.cleanups, fn)
	f.mu.Unlock()
}

// runFake runs one check of model on a fakeTB and returns it.
func runFake(t *testing.T, model, network string, mode protocol.Mode, name string, opts ...Option) *fakeTB {
	t.Helper()
	c := findCheck(name)
	if c == nil {
		t.Fatalf("no check %q", name)
	}
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runCheck(f, model, network, mode, c, newOptions(opts))
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		cdone := make(chan struct{})
		go func() { defer close(cdone); f.cleanups[i]() }()
		<-cdone
	}
	return f
}

// TestChecksFailOnBrokenServers runs checks against deliberately broken
// variants of the reference server and expects each to report failure.
func TestChecksFailOnBrokenServers(t *testing.T) {
	cases := []struct {
		model, net string
		mode       protocol.Mode
		check      string
		want       string  // a fragment of one failure message
		scale      float64 // shorter timeouts where failing means waiting one out
	}{
		{"modeltest-broken-upper-in-echo", "tcp", protocol.Echo, CheckSingle, "reply differs", 1},
		{"modeltest-broken-upper-in-echo", "unix", protocol.Echo, CheckPipelined, "reply differs", 1},
		{"modeltest-broken-upper-in-echo", "udp", protocol.Echo, CheckDatagramSizes, "differs", 1},
		{"modeltest-broken-max-line-off-by-one", "tcp", protocol.Upper, CheckLineSizes, "max-line", 0.2},
		{"modeltest-broken-small-dgram-buf", "udp", protocol.Echo, CheckDatagramSizes, "bytes", 0.2},
		{"modeltest-broken-no-max-line", "tcp", protocol.Echo, CheckOverLimit, "still open", 0.1},
		{"modeltest-broken-half-close", "tcp", protocol.Echo, CheckHalfClose, "read reply", 0.2},
		{"modeltest-broken-half-close", "unix", protocol.Echo, CheckHalfClose, "read reply", 0.2},
		{"modeltest-broken-active-on-reset", "tcp", protocol.Echo, CheckReset, "active=0", 0.2},
		{"modeltest-broken-no-idle-timeout", "tcp", protocol.Echo, CheckIdleTimeout, "still open", 0.2},
		{"modeltest-broken-no-max-conns", "unix", protocol.Echo, CheckMaxConns, "unexpected bytes", 0.1},
		{"modeltest-broken-drop-on-shutdown", "tcp", protocol.Echo, CheckShutdown, "the server counted", 1},
		{"modeltest-broken-ignore-cost", "udp", protocol.Echo, CheckCost, "not paid", 1},
		{"modeltest-broken-serial-cost", "unix", protocol.Echo, CheckCost, "concurrently", 1},
		{"modeltest-broken-reuse-port", "tcp", protocol.Echo, CheckAddrInUse, "second server started", 1},
		{"modeltest-broken-reuse-port", "udp", protocol.Echo, CheckAddrInUse, "second server started", 1},
		{"modeltest-broken-orphan", "tcp", protocol.Echo, CheckShutdown, "processes it started were still running", 0.5},
		{"modeltest-broken-no-linger", "tcp", protocol.Echo, CheckShutdown, "reset", 1},
		{"modeltest-broken-forget-on-shutdown", "tcp", protocol.Echo, CheckShutdown, "never answered", 1},
		{"modeltest-broken-slow-idle-shutdown", "tcp", protocol.Echo, CheckShutdown, "deadline exceeded", 0.3},
		{"modeltest-broken-spin-on-emfile", "tcp", protocol.Echo, CheckFDExhaustion, "backing off", 1},
		{"modeltest-broken-keep-socket-file", "unix", protocol.Echo, CheckSocketFile, "still there", 1},
		{"modeltest-broken-steal-socket", "unix", protocol.Echo, CheckSocketFile, "live socket", 1},
		{"modeltest-broken-unicode-upper", "tcp", protocol.Upper, CheckBinary, "reply differs", 1},
		{"modeltest-broken-unicode-upper", "udp", protocol.Upper, CheckBinary, "reply differs", 0.2},
		{"modeltest-broken-read-is-line", "unix", protocol.Echo, CheckBytewise, "reply differs", 0.2},
		{"modeltest-broken-read-is-line", "tcp", protocol.Upper, CheckBytewise, "reply differs", 0.2},
		{"modeltest-broken-read-is-line", "tcp", protocol.Echo, CheckPipelined, "reply differs", 0.2},
		{"modeltest-broken-idle-from-accept", "unix", protocol.Echo, CheckIdleTimeout, "was cut off", 1},
		{"modeltest-broken-serial", "tcp", protocol.Echo, CheckConcurrent, "until all have a first reply", 0.1},
		{"modeltest-broken-close-all-on-long", "tcp", protocol.Echo, CheckOverLimit, "good connection after others", 0.2},
		{"modeltest-broken-reply-first-peer", "udp", protocol.Echo, CheckDatagramSizes, "no reply", 0.2},
		{"modeltest-broken-reply-first-peer", "udp", protocol.Upper, CheckConcurrent, "no reply", 0.2},
		{"modeltest-broken-stop-on-accept-err", "tcp", protocol.Echo, CheckFDExhaustion, "no new connection was served", 0.5},
		{"modeltest-broken-no-line-timeout", "tcp", protocol.Echo, CheckLineTimeout, "still open", 0.2},
		{"modeltest-broken-line-timer-once", "unix", protocol.Echo, CheckLineTimeout, "was cut off", 1},
		{"modeltest-broken-blocking-reply", "unixgram", protocol.Echo, CheckSlowPeer, "stopped reading", 0.3},
		{"modeltest-broken-exit-zero-forced", "tcp", protocol.Echo, CheckShortGrace, "exited 0", 1},
		{"modeltest-broken-exit-zero-forced", "udp", protocol.Echo, CheckShortGrace, "exited 0", 1},
		{"modeltest-broken-log-every-event", "tcp", protocol.Echo, CheckLogFlood, "must be rate-limited", 1},
		{"modeltest-broken-log-every-event", "unixgram", protocol.Echo, CheckLogFlood, "must be rate-limited", 1},
		{"modeltest-broken-no-max-buffered", "unix", protocol.Echo, CheckMaxBuffered, "over_buffered", 0.2},
		{"modeltest-broken-no-write-timeout", "tcp", protocol.Echo, CheckWriteTimeout, "still open", 0.3},
	}
	for _, tc := range cases {
		t.Run(tc.model+"/"+tc.net+"/"+tc.check, func(t *testing.T) {
			t.Parallel()
			f := runFake(t, tc.model, tc.net, tc.mode, tc.check, Scale(tc.scale))
			if f.skipped {
				t.Fatalf("check skipped")
			}
			if !f.Failed() {
				t.Fatalf("check %s passed against %s", tc.check, tc.model)
			}
			all := strings.Join(f.msgs, "\n")
			if !strings.Contains(all, tc.want) {
				t.Errorf("failures do not mention %q:\n%s", tc.want, all)
			}
			t.Logf("failed as it should:\n%s", all)
		})
	}
}

// TestSerialChecksFailOnBrokenServers is apart from the table too: its
// check sets the process's umask and must run alone.
func TestSerialChecksFailOnBrokenServers(t *testing.T) {
	for _, network := range []string{"unix", "unixgram"} {
		t.Run(network, func(t *testing.T) {
			f := runFake(t, "modeltest-broken-chmod-after-bind", network, protocol.Echo, CheckSocketUmask)
			if !f.Failed() {
				t.Fatalf("the umask check passed against a server that chmods its socket after binding it")
			}
			if all := strings.Join(f.msgs, "\n"); !strings.Contains(all, "wider than") {
				t.Errorf("failures do not say the mode was too wide:\n%s", all)
			} else {
				t.Logf("failed as it should:\n%s", all)
			}
		})
	}
}

// TestLeaksFailOnLeakyServer is apart from the table: the leak check
// counts the whole process and must run alone (its cases in turn).
func TestLeaksFailOnLeakyServer(t *testing.T) {
	for _, tc := range []struct{ model, net, leak string }{
		{"modeltest-broken-leak-per-conn", "tcp", "a goroutine"},
		{"modeltest-broken-leak-fd-per-conn", "unix", "an fd"},
	} {
		t.Run(tc.model+"/"+tc.net, func(t *testing.T) {
			f := runFake(t, tc.model, tc.net, protocol.Echo, CheckLeaks, LeakCycles(300), Scale(0.3))
			if !f.Failed() {
				t.Fatalf("the leak check passed against a server that leaks %s per connection", tc.leak)
			}
			if all := strings.Join(f.msgs, "\n"); !strings.Contains(all, "leak per connection") {
				t.Errorf("failures do not name the leak:\n%s", all)
			} else {
				t.Logf("failed as it should:\n%s", all)
			}
		})
	}
}

// BenchmarkReference measures the reference server, and shows the
// benchmark's own client allocates nothing per request over streams.
func BenchmarkReference(b *testing.B) {
	for _, nw := range []string{"tcp", "udp", "unix"} {
		for _, conns := range []int{1, 16} {
			b.Run(fmt.Sprintf("net=%s/conns=%d", nw, conns), func(b *testing.B) {
				Benchmark(b, "modeltest-reference", nw, protocol.Echo, conns, 64)
			})
		}
	}
}

// TestBenchmarkClientAllocatesNothing: the benchmark's client loops
// allocate nothing per request, so Benchmark's allocs/op is the server's.
// The servers here allocate nothing per request either: a raw UDP echo
// using netip addresses, and the reference server over TCP.
func TestBenchmarkClientAllocatesNothing(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, protocol.MaxDatagram)
		for {
			n, a, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buf[:n], a)
		}
	}()
	uc, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	req := []byte("hello\n")
	buf := make([]byte, protocol.MaxDatagram+1)
	var resent atomic.Int64
	perCall := 200
	a := testing.AllocsPerRun(10, func() {
		if err := benchDgram(uc, req, req, buf, perCall, time.Second, &resent); err != nil {
			t.Fatal(err)
		}
	})
	if a/float64(perCall) > 0.02 {
		t.Errorf("datagram client: %.2f allocations per request", a/float64(perCall))
	}

	e := newEnv(t, "modeltest-reference", "tcp", protocol.Echo, newOptions(nil))
	s := e.start(nil)
	c := e.mustDial(s.addr)
	a = testing.AllocsPerRun(10, func() {
		if err := benchStream(c, req, req, buf, perCall, time.Minute); err != nil {
			t.Fatal(err)
		}
	})
	if a/float64(perCall) > 0.02 {
		t.Errorf("stream client (and reference server): %.2f allocations per request", a/float64(perCall))
	}
}

// TestReferenceUnixgram covers the optional unixgram transport (in echo
// mode: the modes are covered above).
func TestReferenceUnixgram(t *testing.T) {
	Run(t, "modeltest-reference", Nets("unixgram"), func(o *options) { o.modes = []protocol.Mode{protocol.Echo} })
}
