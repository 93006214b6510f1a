package modeltest

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/sockbench/sockbench/models"
)

// Leak check bounds: a few goroutines and fds may come and go (runtime
// workers, a timer); a leak per connection shows up as thousands.
const (
	goroutineSlack = 10
	fdSlack        = 3
)

// resources is a count of what the test process holds.
type resources struct {
	goroutines int
	fds        int // -1 where fds cannot be counted
}

func measure() resources {
	r := resources{goroutines: runtime.NumGoroutine(), fds: -1}
	if n, err := OpenFDs(); err == nil {
		r.fds = n
	}
	return r
}

func (r resources) String() string {
	if r.fds < 0 {
		return fmt.Sprintf("%d goroutines", r.goroutines)
	}
	return fmt.Sprintf("%d goroutines, %d fds", r.goroutines, r.fds)
}

// settle waits until the process is back within slack of base, and returns
// the last count and whether it got there.
func (e *env) settle(base resources) (resources, bool) {
	deadline := time.Now().Add(e.d(5 * time.Second))
	for {
		now := measure()
		if now.goroutines <= base.goroutines+goroutineSlack && (base.fds < 0 || now.fds <= base.fds+fdSlack) {
			return now, true
		}
		if time.Now().After(deadline) {
			return now, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkLeaks: 2000 (LeakCycles) connect/disconnect cycles of every kind (clean, with a
// request, mid-line, with an unread reply; datagram sockets for udp) leave
// no goroutine and no fd behind, while the server runs and after
// Shutdown, and no socket file is left.
func checkLeaks(e *env) {
	before := measure()
	s := e.start(nil)
	if err := e.ping(s.addr); err != nil {
		e.t.Fatalf("server does not answer: %v", err)
	}
	time.Sleep(20 * time.Millisecond)
	running := measure()

	var retries atomic.Int64
	cycles := e.o.cycles
	errs := goAll(8, func(w int) error {
		for i := w; i < cycles; i += 8 {
			if err := e.leakCycle(s.addr, i, &retries); err != nil {
				return fmt.Errorf("cycle %d: %w", i, err)
			}
		}
		return nil
	})
	e.reportErrs("connect/disconnect cycles", errs)
	e.logRetries(&retries)
	if e.stream() {
		s.waitStats("active=0 after every client left", func(st models.Stats) bool { return st.Active == 0 })
	}
	if now, ok := e.settle(running); !ok {
		e.t.Errorf("after %d connect/disconnect cycles the server holds %s, %s when it started: a leak per connection\n%s",
			cycles, now, running, goroutineSummary())
	}

	if _, err := s.shutdown(); err != nil {
		e.t.Errorf("Shutdown: %v", err)
	}
	if now, ok := e.settle(before); !ok {
		e.t.Errorf("after Shutdown the process holds %s, %s before the server started\n%s", now, before, goroutineSummary())
	}
	if transport(e.net).IsUnix() {
		dir := strings.TrimSuffix(s.cfg.Addr, "/s.sock")
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			e.t.Errorf("files left in the socket directory after Shutdown: %v", ents)
		}
	}
}

// leakCycle connects, does one of four things, and disconnects.
func (e *env) leakCycle(addr string, i int, retries *atomic.Int64) error {
	if !e.stream() {
		dc, err := e.openDgram(addr, retries)
		if err != nil {
			return err
		}
		defer dc.close()
		return dc.roundTrip(e.payloadAny(1 + i%100))
	}
	c, err := e.dial(addr)
	if err != nil {
		return err
	}
	switch i % 4 {
	case 0: // connect and leave
	case 1:
		err = e.exchange(c, e.line(i%50))
	case 2:
		err = e.writeAll(c, e.payload(10))
	case 3: // a request whose reply is never read, then a reset
		err = e.writeAll(c, e.line(100))
		abort(c)
		return err
	}
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}

// goroutineSummary groups live goroutines by the function on top of their
// stack, the biggest groups first, to show what leaked.
func goroutineSummary() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		lines := strings.Split(g, "\n")
		// lines[0] is "goroutine N [state]:"; find the first frame not
		// in the runtime.
		key := "?"
		for j := 1; j+1 < len(lines); j += 2 {
			fn := lines[j]
			if !strings.HasPrefix(fn, "runtime.") && !strings.HasPrefix(fn, "internal/") {
				key = strings.TrimSpace(fn) + " " + strings.TrimSpace(lines[j+1])
				break
			}
		}
		counts[key]++
	}
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range counts {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(a, b int) bool { return all[a].n > all[b].n })
	var sb strings.Builder
	sb.WriteString("goroutines by first non-runtime frame:\n")
	for i, x := range all {
		if i == 8 {
			break
		}
		fmt.Fprintf(&sb, "  %5d  %s\n", x.n, x.k)
	}
	return sb.String()
}
