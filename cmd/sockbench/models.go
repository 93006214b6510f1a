package main

// The server models `sockbench serve` can run. Each registers itself with
// models.Register in its init; add a model here to make it available.
import (
	_ "github.com/sockbench/sockbench/models/bare"
	_ "github.com/sockbench/sockbench/models/eventloop"
	_ "github.com/sockbench/sockbench/models/prefork"
	_ "github.com/sockbench/sockbench/models/threaded"
)
