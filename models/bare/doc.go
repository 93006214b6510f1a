// Package bare is the machine's limit: the cheapest server this operating
// system allows, against which every other model reads as a fraction.
// One goroutine runs one readiness loop (epoll on Linux, kqueue on macOS
// and the BSDs, through golang.org/x/sys/unix) over raw non-blocking
// sockets; no framework, no goroutine per connection, no netpoller. It
// speaks the same protocol as the other models and passes the same
// conformance suite, so what it costs is what the kernel costs, plus the
// least Go adds.
//
// It registers itself as "bare". Config.Workers is ignored: one loop on
// one thread is the point. On systems with neither epoll nor kqueue Start
// returns models.ErrUnsupportedNet.
package bare

import "github.com/sockbench/sockbench/models"

// Name is the model's registry name.
const Name = "bare"

func init() { models.Register(Name, New) }
