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
		// runtime maps its shadow memory). The check's 2000 cycles queue
		// about 500 such connections ahead of each request it times, far
		// past its 10s per-operation timeout on a 2-core machine. It
		// passes without -race (about 5s per transport); under -race,
		// TestNoLeaks covers per-conn leaks with 100 cycles.
		opts = append(opts, modeltest.Skip(modeltest.CheckLeaks,
			"per-conn under -race: 2000 process starts of a race-enabled binary exceed the suite's timeouts; run without -race (TestNoLeaks covers it here)"))
	}
	modeltest.Run(t, "prefork", opts...)
}
