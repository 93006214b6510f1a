// Package bare is the machine's limit: the cheapest server this operating
// system allows, so that every other model reads as a fraction of it. One
// goroutine runs one readiness loop (epoll on Linux, kqueue on macOS and
// the BSDs, through golang.org/x/sys/unix) over raw non-blocking sockets:
// no framework, no goroutine per connection, no netpoller. It speaks the
// same protocol and passes the same conformance suite (tcp, udp, unix and
// unixgram) as the other models, so what it costs is what the kernel
// costs, plus the least Go adds.
//
// It registers itself as "bare". Config.Workers is ignored: one loop on
// one thread is the point. Config.Extra["pool"] sizes the --block pool.
// On systems with neither epoll nor kqueue, Start returns
// models.ErrUnsupportedNet.
//
// # The common path
//
// Level-triggered readiness, as in the C yardstick: one read per event
// (the next wait reports a connection again if more is waiting), so the
// interest set changes only when a connection's replies back up. A read
// goes into one buffer the whole loop shares; the complete lines in it
// are transformed in place and go back with one write of the same bytes.
// The start of a line that has not fully arrived is kept per connection
// and copied in front of the next read, so the line it completes and the
// ones after it are still one run and one write. A request costs a read,
// a write and a share of one wait; it allocates nothing (TestNoAllocsPerRequest)
// and touches no atomic (counts are added once per batch of events).
// Sockets being non-blocking, reads, writes, accepts and datagram calls
// go to the kernel with RawSyscall, skipping the scheduler's bookkeeping
// for a call that might block; only the wait is a blocking syscall.
//
// Two things keep the Go runtime out of the way of that wait. With a
// single P (GOMAXPROCS=1, as on a server pinned to one CPU) the runtime
// monitor takes the P of a goroutine more than 20 µs in a syscall, so
// that the rest of the process can run, and the loop must win it back
// when its wait returns; Start therefore raises GOMAXPROCS to 2 when it
// is 1 (it never lowers it): with an idle P the runtime leaves the waiting
// one alone, and the pool, signals and timers run on the other. And a
// goroutine that never yields is preempted by that monitor after 10 ms,
// which then polls every 20 µs for a while; the loop yields every 2 ms
// instead (see loop.run). Measured at one TCP connection (per-thread run
// time from /proc/PID/task/*/schedstat over a 3 s run of the yardstick's
// client): the monitor's thread used 12% of the server's CPU before the
// yield, 0.4% after. And before the yield, without the second P, server
// CPU per request at one connection was 1.11 to 1.19 times the C
// server's (tcp, udp, unix), with it 0.98 to 1.06 (3 rounds of 3 s).
//
// # Against the C yardstick
//
// Server CPU per request (user+system time of the server process over the
// run, divided by the requests), bare against ../shared/yardstick's
// refserver with one thread, both driven by its refclient, 64-byte
// requests, server pinned to CPU 0 and client to CPU 1, on a 2-core VM
// (Intel Xeon, Linux 6.18, go1.26.8); medians of 3 rounds of 5 s, the two
// servers interleaved in every round, all in one hold of the machine:
//
//	                   echo µs/request           upper µs/request
//	                 refserver  bare  ratio    refserver  bare  ratio
//	tcp,  1 conn       29.9     29.4   0.98      29.9     28.7   0.96
//	tcp,  64 conns      3.56     3.60  1.01       3.57     3.60  1.01
//	udp,  1 conn       28.6     27.0   0.95      28.3     26.1   0.92
//	udp,  64 conns      2.34     2.43  1.04       2.31     2.37  1.03
//	unix, 1 conn       26.3     26.8   1.02      26.3     26.6   1.01
//	unix, 64 conns      2.05     2.14  1.05       2.06     2.18  1.06
//
//	flock /tmp/sockbench-cpu.lock sh -c 'go build -o bin/sockbench ./cmd/sockbench &&
//	  MODE=echo models/bare/testdata/vs-yardstick.sh bin/sockbench "$(../shared/yardstick/build.sh)" 5 3'
//
// (MODE=upper for the right half; the script prints every run and the
// medians.) Measured again once bare enforced --line-timeout and
// --max-buffered and rate-limited its logs (3 rounds of 3 s, echo), the
// ratios were 0.82, 0.99, 0.87, 0.99, 0.95 and 0.98 in the order of the
// table: the bookkeeping lives off the fast path (a list touched when a
// line starts or ends, counters per batch). At one connection a request is a round trip of wake-ups, and
// most of its 27 to 30 µs is the kernel's and the hypervisor's; at 64 the
// cost is the socket calls. In `make bench` on the same machine (the
// quick profile, sockbench load as the client) bare used 25 µs of server
// CPU per request at one TCP connection, threaded 42, eventloop 48 and
// prefork 42.
//
// # Bounds
//
// A connection holds at most its partial line (less than max-line) and
// the replies its socket did not take. Replies back up only when the
// client does not read; the connection is then not read either until
// they are written (backpressure), so they stay within one read, 64 KiB
// (TestReaderThatDoesNotRead). A connection whose output makes no
// progress for Config.WriteTimeout is closed and counted in
// WriteTimeouts: such connections wait on a list in order of their
// output's last progress, swept with the idle and line lists.
// Connections past Config.MaxConns are closed at once and counted. An
// accept that fails for want of descriptors
// (EMFILE) turns the listener off for a backoff from 5 ms to 1 s, so the
// loop neither spins nor stops serving the connections it has.
//
// Idle timeouts, line timeouts and lingering closes need no timer per
// connection: open connections are kept in order of their last read,
// those holding a partial line in order of when that line began
// (keepPartial knows: a read without a '\n' continues the line, one with a
// '\n' leaves a new one), lingering ones in order of deadline; a sweep at
// most every 50 ms (a quarter of the idle or line timeout, if shorter)
// looks only at the expired head of each list. A line not complete within
// --line-timeout closes its connection, after the replies to the lines
// before it, and counts in LineTimeouts. --max-buffered is a
// models.Buffers account: each connection reports what it holds (its
// partial line, replies its socket has not taken, lines its job has not
// answered) once a read, a write or a reply from the pool has settled it,
// and past the bound the connections holding the most are closed at once
// and counted in OverBuffered (models.Shed). Without the bound, and with
// reads that end on a line's end, the common path pays a nil check and a
// flag test for both. Every log line a client can cause (a line over
// max-line or too slow, a failed read, a datagram that cannot be
// answered, a failed accept) goes through the server's models.RateLog,
// whose summaries Shutdown flushes.
//
// # Handler cost
//
// --work burns CPU on the loop: the honest cost of a single loop. --block
// must never run on it: the complete lines of a read (or a datagram) go
// to a bounded goroutine pool as one job (pool.go); the pool posts each
// reply back as its handler returns and wakes the loop through the
// poller (an eventfd, or a pipe with kqueue), and the loop writes it, in
// order, so every socket keeps a single writer. A connection takes no new
// lines while its job runs. Datagrams past the pool's size are dropped
// and counted (BadDatagrams). Without a handler cost none of this runs.
//
// # Datagrams
//
// A datagram is read into a buffer one byte larger than the largest
// request (a truncated one is dropped and counted, never answered with a
// wrong length), transformed in place and sent back without waiting
// (MSG_DONTWAIT) from the same buffer to the address the kernel gave. A
// reply the peer's queue cannot take is dropped and counted in
// WriteErrors; the loop never blocks on one peer. On Linux a unixgram
// reply is charged to the server socket's send buffer until its receiver
// reads it, and for a connected client the kernel skips the queue-length
// check, so a connected client that never reads fills that buffer: then
// replies to everyone are dropped (and counted) until it reads or leaves,
// which no server on one socket can prevent; an unconnected one only
// loses its own (TestDatagramPeerThatDoesNotRead).
//
// # Shutdown
//
// Shutdown closes the listener (or stops reading the datagram socket);
// every connection answers the lines it has read, its job's included,
// writes what is backed up, then closes without a reset: FIN, then what
// the client still sends is read and dropped until it closes, 1 MiB or
// 1.5 s. When the grace runs out everything is closed at once, handler
// waits are cut short, and Shutdown returns the context's error.
package bare

import "github.com/sockbench/sockbench/models"

// Name is the model's registry name.
const Name = "bare"

func init() { models.Register(Name, New) }
