package modeltest

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/protocol"
)

// Handler costs the cost check configures.
const (
	costBlock = 250 * time.Millisecond
	costWork  = 30 * time.Millisecond
)

// checkCost: the handler cost is paid and does not serialise the server.
// With Cost.Block, no reply comes back sooner than the block, pipelined
// replies still come back in order, and costClients clients blocked at
// once are served concurrently (an event loop must hand blocking requests
// off, not stall on them): the round must end well before the clients one
// after another would. With Cost.Work, no reply comes back sooner than the
// work.
//
// Streams: 16 clients must see at least 4-way concurrency. Datagrams: a
// model may serve a datagram socket with Config.Workers readers, so the
// server gets 4 workers and 8 clients must see at least 2-way concurrency.
func checkCost(e *env) {
	costClients, minConcurrency := 16, 4
	if !e.stream() {
		costClients, minConcurrency = 8, 2
	}
	s := e.start(func(c *models.Config) {
		c.Cost = protocol.Cost{Block: costBlock}
		if !c.IsStream() {
			c.Workers = 4
		}
	})
	type client struct {
		c  net.Conn
		dc *dgramClient
	}
	var retries atomic.Int64
	clients := make([]client, costClients)
	for i := range clients {
		if e.stream() {
			clients[i].c = e.mustDial(s.addr)
		} else {
			dc, err := e.dgramClient(s.addr, &retries)
			if err != nil {
				e.t.Fatalf("dial: %v", err)
			}
			dc.wait = e.d(4 * time.Second) // a reply takes a block or more: do not resend early
			clients[i].dc = dc
		}
	}
	ask := func(i int) error {
		if e.stream() {
			return e.exchange(clients[i].c, e.line(20))
		}
		return clients[i].dc.roundTrip(e.payloadAny(20))
	}
	serial := costBlock * time.Duration(costClients)
	// Warm up: every connection is accepted (and, for a model that spawns
	// a process per connection, that process is running). A warm-up that
	// took as long as the requests one after another already proves they
	// were.
	t0 := time.Now()
	e.reportErrs("warm-up requests", goAll(costClients, ask))
	if e.t.Failed() {
		return
	}
	if took := time.Since(t0); took >= serial*9/10 {
		e.t.Errorf("%d clients with a %v block each took %v to all be answered (one after another: %v): blocked requests must run concurrently",
			costClients, costBlock, took, serial)
		return
	}

	// Every client sends at the same moment.
	latencies := make([]time.Duration, costClients)
	var ready sync.WaitGroup
	ready.Add(costClients)
	start := make(chan struct{})
	errc := make(chan []error, 1)
	go func() {
		errc <- goAll(costClients, func(i int) error {
			ready.Done()
			<-start
			t0 := time.Now()
			err := ask(i)
			latencies[i] = time.Since(t0)
			return err
		})
	}()
	ready.Wait()
	close(start)
	e.reportErrs("blocked requests", <-errc)
	e.logRetries(&retries)
	bound := e.d(serial / time.Duration(minConcurrency))
	var slowest time.Duration
	for i, l := range latencies {
		if l < costBlock*9/10 {
			e.t.Errorf("client %d: reply after %v with a block cost of %v: the cost was not paid", i, l, costBlock)
		}
		slowest = max(slowest, l)
	}
	if slowest > bound {
		e.t.Errorf("%d clients with a %v block each took %v to all be answered (one after another: %v): blocked requests must run concurrently",
			costClients, costBlock, slowest, serial)
	}

	if e.stream() {
		reqs := make([][]byte, 40)
		for i := range reqs {
			reqs[i] = e.line(i)
		}
		s2 := e.start(func(c *models.Config) { c.Cost = protocol.Cost{Block: 2 * time.Millisecond} })
		c := e.mustDial(s2.addr)
		if err := e.exchange(c, reqs...); err != nil {
			e.t.Errorf("40 pipelined requests with a block cost: %v", err)
		}
	}

	s3 := e.start(func(c *models.Config) { c.Cost = protocol.Cost{Work: costWork} })
	t0 = time.Now()
	if err := e.ping(s3.addr); err != nil {
		e.t.Errorf("request with a work cost: %v", err)
	} else if took := time.Since(t0); took < costWork*9/10 {
		e.t.Errorf("reply after %v with a work cost of %v: the cost was not paid", took, costWork)
	}
}
