package prefork

import (
	"fmt"
	"testing"

	"github.com/sockbench/sockbench/models/modeltest"
	"github.com/sockbench/sockbench/protocol"
)

// BenchmarkPrefork measures the pool (tcp, udp, unix) and fork-per-conn
// (tcp, unix) over loopback. The servers run in worker processes, so
// allocs/op counts only this process (the clients and the parent, which
// does nothing per request): the workers' allocations are not in it.
func BenchmarkPrefork(b *testing.B) {
	for _, spawn := range []string{SpawnPool, SpawnPerConn} {
		for _, network := range []string{"tcp", "udp", "unix"} {
			if spawn == SpawnPerConn && network == "udp" {
				continue
			}
			for _, mode := range protocol.Modes {
				for _, c := range []struct{ conns, size int }{{1, 64}, {64, 64}, {64, 4096}} {
					name := fmt.Sprintf("spawn=%s/net=%s/mode=%s/conns=%d/size=%d", spawn, network, mode, c.conns, c.size)
					b.Run(name, func(b *testing.B) {
						modeltest.Benchmark(b, "prefork", network, mode, c.conns, c.size, modeltest.Extra("spawn", spawn))
					})
				}
			}
		}
	}
}
