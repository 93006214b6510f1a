//go:build !linux

package loadgen

import (
	"errors"
	"net"
	"sync"

	"github.com/sockbench/sockbench/protocol"
)

// serveSink serves ln or pc with a goroutine per connection (or one for
// the datagram socket) and returns the function that stops it.
func serveSink(ln net.Listener, pc net.PacketConn, mode protocol.Mode, cpus []int) (func(), error) {
	if len(cpus) > 0 {
		if ln != nil {
			ln.Close()
		} else {
			pc.Close()
		}
		return nil, errors.New("pinning the sink's threads needs Linux")
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	if pc != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, protocol.MaxDatagram)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				mode.Apply(buf[:n])
				pc.WriteTo(buf[:n], from)
			}
		}()
		return func() { pc.Close(); wg.Wait() }, nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if conns == nil {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					mode.Apply(buf[:n])
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		conns = nil
		mu.Unlock()
		wg.Wait()
	}, nil
}
