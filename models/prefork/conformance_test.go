package prefork

import (
	"testing"

	"github.com/sockbench/sockbench/models/modeltest"
)

func TestConformance(t *testing.T) {
	modeltest.Run(t, "prefork")
}

func TestConformancePerConn(t *testing.T) {
	opts := []modeltest.Option{modeltest.Extra("spawn", SpawnPerConn), modeltest.Nets("tcp", "unix")}
	if raceEnabled {
		// Each connection with something to serve is a new process, and
		// a -race test binary takes 15-30ms of CPU to start (the race
		// runtime maps its shadow memory), against 3ms without -race.
		// So under -race:
		//  - the suite runs on tcp only: unix adds about 25s of process
		//    starts to the package's 60s budget, for code that differs
		//    from tcp only in the handoff, which TestPerConn,
		//    TestNoLeaks and TestShutdownForwardsSIGTERM cover on unix;
		//  - every timeout and wait of the suite is three times as long,
		//    since this server is slow to accept by design;
		//  - the leaks check is skipped: its 2000 cycles queue about 500
		//    process starts ahead of each request it times, past even
		//    the scaled timeouts. It runs without -race (about 5s per
		//    transport), and TestNoLeaks covers per-conn leaks here.
		opts = append(opts, modeltest.Nets("tcp"), modeltest.Scale(3),
			modeltest.Skip(modeltest.CheckLeaks, "per-conn under -race: a race-enabled process per connection is too slow for 2000 cycles; the check runs without -race, and TestNoLeaks covers per-conn leaks here"))
	}
	modeltest.Run(t, "prefork", opts...)
}
