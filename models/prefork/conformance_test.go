package prefork

import (
	"os"
	"testing"

	"github.com/sockbench/sockbench/models/modeltest"
)

func TestConformance(t *testing.T) {
	// The pool serves unixgram too (a worker is the threaded model on the
	// inherited socket), so the suite covers it beside the default three.
	modeltest.Run(t, "prefork", modeltest.Nets("tcp", "udp", "unix", "unixgram"))
}

func TestConformancePerConn(t *testing.T) {
	opts := []modeltest.Option{modeltest.Extra("spawn", SpawnPerConn), modeltest.Nets("tcp", "unix"),
		modeltest.Skip(modeltest.CheckMaxBuffered, "per-conn: a connection is a process of its own; --max-buffered does not apply (New refuses it)")}
	if raceEnabled {
		// Each connection with something to serve is a new process, and
		// a -race test binary takes 15-30ms of CPU to start (the race
		// runtime maps its shadow memory), against 3ms without -race.
		// So under -race (where both transports together take about 70s
		// on two loaded cores):
		//  - every timeout and wait of the suite is three times as long,
		//    since this server is slow to accept by design;
		//  - the leaks check runs 200 cycles, not 2000: 2000 would queue
		//    about 500 process starts ahead of each request it times,
		//    past even the scaled timeouts.
		opts = append(opts, modeltest.Scale(3), modeltest.LeakCycles(200))
	}
	if os.Getenv("SOCKBENCH_EMULATED") != "" {
		// Under qemu-user (make test-emulated) every process start runs
		// the emulator's own start-up, about 15ms of CPU. The fd-exhaustion
		// check counts the server's CPU, children included, to catch a
		// spin on EMFILE: here the 200 connections it opens cost 3s of
		// process starts and read as a spin. The leaks check's connection
		// cycles time out for the same reason. Both run natively.
		opts = append(opts, modeltest.Nets("tcp"), modeltest.Scale(3),
			modeltest.Skip(modeltest.CheckFDExhaustion, "per-conn under qemu-user: process starts cost emulator CPU that reads as a spin; runs natively"),
			modeltest.Skip(modeltest.CheckLeaks, "per-conn under qemu-user: each cycle is an emulated process start, past the timeouts; runs natively"),
			// The cost check times 16 blocked clients arriving at once:
			// under qemu-user their 16 process starts alone took 3.8 s,
			// which reads as blocked requests served one after another.
			modeltest.Skip(modeltest.CheckCost, "per-conn under qemu-user: 16 emulated process starts outlast the 16 x 250ms it allows; runs natively"))
	}
	modeltest.Run(t, "prefork", opts...)
}
