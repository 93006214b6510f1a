// Package loadgen is sockbench's load generator. It speaks the wire protocol
// only (see package protocol) and knows nothing of the servers it drives.
//
// A run opens Conns connections, keeps Pipeline requests in flight on each
// (closed loop) or sends on a shared schedule of Rate requests per second
// (open loop), checks every reply byte for byte, and returns a Report with
// HdrHistogram percentiles: latency (from the due time in the open loop),
// service time (from the send) and send lag (how late the send was). The
// hot path takes no lock and allocates nothing (BenchmarkRequest: 0
// allocs/op in every case, closed and open).
//
// # Two engines, and why the fast one is shaped so
//
// The instrument must cost less per request than the servers it measures,
// and the yardstick for that is a C epoll client (refclient in
// ../shared/yardstick: single-threaded, read, check, write). Every figure
// below was taken on the 2-core development machine with the server
// (refserver tcp echo, one thread) pinned to CPU 0 and the client to CPU 1
// (so GOMAXPROCS=1), 64 connections x 64 B, 3 s runs, three interleaved
// rounds:
//
//	taskset -c 0 refserver tcp 127.0.0.1:P echo 1
//	taskset -c 1 refclient tcp 127.0.0.1:P echo 64 64 3
//	taskset -c 1 sockbench load --target tcp://127.0.0.1:P -c 64 -s 64 -d 3s --format json
//
// The goroutine engine (stream.go, dgram.go: a sender and a receiver
// goroutine per connection, two channel handoffs and a SetReadDeadline per
// request) drove 0.57 to 0.62 of refclient's requests/s at 6.1 to 6.2 µs of
// CPU a request (refclient: 3.8). perf record -e cpu-clock -g put 70% of
// it in the kernel and strace counted three system calls a request: the
// write, a read that comes back EAGAIN, and the read after the poller's
// wake-up. Prototypes of the candidates, same setting:
//
//   - one goroutine per connection, write then read: 0.79 to 0.84 of
//     refclient (4.5 to 4.9 µs a request): the EAGAIN read stays, it is how
//     Go's poller works;
//   - one epoll loop on raw non-blocking sockets (golang.org/x/sys/unix),
//     parked through Go's poller when idle, as refclient multiplexes: 0.76
//     to 0.90, with 6,000 voluntary and 6,000 involuntary context switches
//     a second (refclient: about 100). perf's sched_switch trace named the
//     sysmon thread: on the generator's only CPU it preempts the loop in
//     the middle of a system call, retakes the P the call holds, and,
//     having retaken one, keeps polling every 20 µs;
//   - the same loop with raw system calls (RawSyscall: no entersyscall, so
//     no P in a system call for sysmon to retake; every descriptor is
//     non-blocking, so none can sleep): 0.95 to 1.02 of refclient, context
//     switches down to refclient's.
//
// So on Linux the epoll engine (evloop_linux.go) runs one loop per CPU the
// process may use, each multiplexing its share of the connections with raw
// read, write and epoll_pwait; a loop parks by nesting its epoll set in Go's
// poller (an os.File on the epoll descriptor), so no P is held in a sleeping
// system call. It also sends the next closed-loop request at the time its
// reply was read, records into one dense histogram per loop (the packed
// per-connection histogram's sparseAdd was 1.2% of the profile), and
// watches streams edge-triggered (a level-triggered socket is polled again
// at the next epoll_pwait after every event: tcp_poll and ep_item_poll are
// 9% of refclient's own profile). Measured as above: 275.1k, 274.4k and
// 247.5k req/s against refclient's 276.4k, 272.3k and 271.4k (0.995, 1.008
// and 0.912 a round; medians 274.4k and 272.3k), at 3.6 to 4.0 µs of CPU a
// request (median 3.6); the goroutine engine of before drove 170k to 177k
// in the same rounds. In a later sitting: 0.959, 0.936 and 0.975 of
// refclient, at 3.7 to 3.9 µs. The goroutine engine stays as the portable fallback
// (every other platform runs it), and the tests run every behaviour test
// on both.
//
// # The pacer: a timerfd, a read deadline, then a yield-spin
//
// The open loop must send on time on one CPU without holding the only P in
// a sleeping system call (the dispatcher of before slept in nanosleep on a
// locked thread while the connections waited for the P) and without Go's
// timer floor (the poller waits in epoll_wait with a millisecond timeout).
// Late wake-ups measured with GOMAXPROCS=1 on one pinned CPU, 3,000 due
// times 0.25 to 0.75 ms apart, idle P / P kept busy by another goroutine:
//
//	time.Sleep                          p50 543 µs   / 0.5 µs
//	nanosleep, locked thread            p50 42 µs    / 557 µs (p99 4.6 ms)
//	timerfd read through the poller     p50 42 µs    / 4.9 ms (the poller is not polled while goroutines run)
//	loop parked on a timerfd in its set p50 51 µs, p99 163 µs
//	  ... woken 50 µs early, then spin  p50 0.4 µs, p99 185 µs
//	  ... woken 100 µs early, then spin p50 0.2 µs, p99 65 µs
//
// The 40 to 50 µs left is this VM's wake-up from idle, which only a spin
// removes. With due times 1 ms apart and a 100 µs spin, the timerfd alone
// left a tail (p99.9 1.9 to 2.2 ms in two runs); adding a read deadline on
// the epoll file for the same time, a Go timer which the scheduler also
// checks, gave 0.14 and 1.3 ms (at a 300 µs spin: 1.4 to 1.8 ms without,
// 79 to 93 µs with). So a loop parks with both armed for its next due time less a
// spin window, then yield-spins (runtime.Gosched between polls) to the due
// time; the window follows the wake-up lateness the loop measures (mean
// plus four mean deviations, 10 to 250 µs). Spin time is reported
// (client_spin_s) and, counting only rounds that found nothing to do, left
// out of the saturation verdict. Measured against refserver as above
// (latency p50 and send lag p99, medians of three interleaved rounds):
//
//	--rate 1000 -c 1:   p50 117.8 µs (refclient's closed-loop round trip: 75.3), lag p99 99.9 µs; before: 2.05 ms, 1.19 ms
//	--rate 10000 -c 16: p50 53.8 µs, lag p99 27.3 µs; before: 480 µs, 578 µs
//
// (The 2 ms of before at 1,000 req/s is the millisecond heartbeat: service
// time and send lag each 1.0 ms at the median, in two of the three rounds.)
//
// At 1,000 req/s both sides wake from idle for every request, which is why
// the p50 is above the closed loop's: sockperf (ul --mps 1000 --reply-every
// 1 against sr, same pinning) reports 46.7 µs one way, a 93 µs round trip,
// with a one-way p99 of 70 to 143 µs. Send lag at one connection and one
// request in flight also counts the wait for a reply that came later than
// the next due time, and on this shared machine other processes take the
// generator's CPU now and then: its p99 was 17 to 103 µs over the three
// rounds (and 73 to 818 µs in an earlier sitting).
//
// # The generator's own ceiling
//
// Calibrate drives a Sink, the cheapest server this package can write (an
// epoll loop that transforms each byte and writes it back), with the sink
// pinned to other CPUs than the generator's loops: sharing one CPU, a
// request cost the generator 2.0 µs instead of 3.7 µs (no cross-CPU
// wake-ups), which would overstate the ceiling almost twofold.
package loadgen
